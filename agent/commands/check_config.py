"""``alara-edge check-config CONFIG``: validate a configuration file (or a serial device profile)."""
from __future__ import annotations

import argparse
import sys

from agent import config

HELP = ("validate a TOML configuration (or a serial device profile, docs/drivers.md); "
        "prints every problem with its key and line")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", metavar="CONFIG")


def run(args: argparse.Namespace) -> int:
    from drivers.generic import check_profile_file, is_profile_file

    profile = is_profile_file(args.config)
    problems = check_profile_file(args.config) if profile else config.check_file(args.config)
    if not problems and not profile:
        problems = _files(config.load(args.config), config.read_text(args.config))
    for problem in problems:
        print(f"{args.config}: {problem}", file=sys.stderr)
    if problems:
        return 1
    print(f"{args.config}: ok")
    return 0


# files the agent reads at start (a missing one stopped `run`, or made the uplink retry for ever)
READ_AT_START = [("dicom", "tls_cert_file"), ("dicom", "tls_key_file"), ("dicom", "tls_ca_file"), ("mqtt", "ca_file"),
                 ("mqtt", "cert_file"), ("mqtt", "key_file"), ("mqtt", "password_file"), ("console", "token_file")]


def _files(cfg: config.Config, text: str) -> list[str]:
    """What a valid configuration names on disk and the agent would refuse at start."""
    from agent.console.access import TokenError, load_token
    from agent.uplink.connection import CredentialsError, read_password
    from agent.uplink.privacy import SiteSecret, SiteSecretError, secret_path

    # what the agent makes of a file's text at start: a password not in UTF-8 passed here and the uplink then
    # retried for ever; an empty or too short token stopped `run` after check-config said ok
    read_text = {("mqtt", "password_file"): lambda: read_password(cfg.mqtt),
                 ("console", "token_file"): lambda: load_token(cfg.console)}
    problems = []
    for section, key in READ_AT_START:
        path = getattr(getattr(cfg, section), key)
        if path is None or (section == "mqtt" and not cfg.mqtt.enabled) or (section == "console" and not cfg.console.enabled):
            continue
        try:
            with open(path, "rb"):
                pass
            read_text.get((section, key), lambda: None)()
        except OSError as exc:
            problems.append(config.problem_at(text, (section, key), f"cannot read {path}: {exc.strerror}"))
        except CredentialsError as exc:
            problems.append(config.problem_at(text, (section, key), str(exc)))
        except TokenError as exc:
            problems.append(config.problem_at(text, (section, key), exc.reason))
    secret = secret_path(cfg)  # made at the first start if missing
    if cfg.mqtt.enabled and cfg.privacy.patient_id == "pseudonymise" and secret.exists():
        try:
            SiteSecret.read(secret)
        except SiteSecretError as exc:
            problems.append(f"privacy.secret_file: {exc}")
    return problems
