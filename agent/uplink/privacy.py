"""What of a patient's identity leaves the box: decided here, before anything is queued.

The patient id is pseudonymised by default: HMAC-SHA256 keyed with a per-site secret, so
every station of a site (sharing the secret file) gives the same patient the same pseudonym
and the central site can link a patient's exams without being able to reverse it.  Patient
name and birth date are never sent; :func:`scrub` also removes them (and, unless the id is
configured to be sent, the id) from free-text fields where a modality may have copied them.
"""
from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path
from typing import Any

import structlog

from agent.config import Config, PrivacyConfig
from agent.extract.record import PHI
from agent.phi import pattern, scrub_tree

log = structlog.get_logger("agent.uplink")

_SECRET_BYTES = 32


def secret_path(config: Config) -> Path:
    """The site secret's file: ``[privacy] secret_file``, else ``site-secret`` beside the store database."""
    return config.privacy.secret_file or Path(config.store.path).parent / "site-secret"


class SiteSecretError(ValueError):
    """The site secret's file exists but cannot be used (unreadable, or too short)."""


class SiteSecret:
    """The per-site HMAC key, read from a file (created with mode 0600 if missing)."""

    def __init__(self, key: bytes):
        if len(key) < 16:
            raise ValueError("it must hold at least 16 bytes")
        self._key = key
        self.key_id = hashlib.sha256(b"alara-edge key id\x00" + key).hexdigest()[:12]
        """Names the key without revealing it: pseudonyms are comparable only under the same key id."""

    @classmethod
    def load(cls, path: Path) -> "SiteSecret":
        """Read the secret (hex text); generate one on first use."""
        path = Path(path)
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:  # another process created it meanwhile
                pass
            else:
                with os.fdopen(fd, "w") as f:
                    f.write(secrets.token_hex(_SECRET_BYTES) + "\n")
                    f.flush()
                    os.fsync(f.fileno())
                log.warning("site_secret_created", path=str(path),
                            hint="copy this file to every station of the site so that pseudonyms match")
        return cls.read(path)

    @classmethod
    def read(cls, path: Path) -> "SiteSecret":
        """Read an existing secret file; :class:`SiteSecretError` names the file and what is wrong with it."""
        try:
            text = Path(path).read_text(encoding="ascii").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise SiteSecretError(f"site secret {path}: {getattr(exc, 'strerror', None) or exc}") from None
        try:
            key = bytes.fromhex(text)
        except ValueError:
            key = text.encode()
        try:
            return cls(key)
        except ValueError as exc:
            raise SiteSecretError(f"site secret {path}: {exc} (remove the file and a new one is made at the next "
                                  "start; then copy it to the site's other stations)") from None

    def pseudonym(self, patient_id: str) -> str:
        return hmac.new(self._key, patient_id.strip().encode("utf-8"), hashlib.sha256).hexdigest()


class Privacy:
    """Applies ``[privacy]`` to outgoing report bodies.

    Fails (raises) at construction if pseudonymisation is configured and the secret cannot be
    read or created: better an agent that does not start than one that sends real ids.
    """

    def __init__(self, config: PrivacyConfig, default_secret: Path = Path("var/site-secret")):
        self.mode = config.patient_id
        path = config.secret_file or default_secret
        self.secret = SiteSecret.load(path) if self.mode == "pseudonymise" else None

    def identity(self, phi: PHI) -> dict[str, str]:
        """The patient-identity fields a report body carries (may be empty)."""
        pid = (phi.patient_id or "").strip()
        if not pid or self.mode == "omit":
            return {}
        if self.mode == "include":
            return {"id": pid}
        assert self.secret is not None
        return {"pseudonym": self.secret.pseudonym(pid), "pseudonym_key": self.secret.key_id}

    def accession(self, study: dict[str, Any]) -> None:
        """The accession number finds the patient in the RIS, so it is treated like the id: as it is
        only with ``include``; by default ``accession_pseudonym`` (the same keyed HMAC, in a domain of
        its own); with ``omit``, nothing."""
        number = str(study.pop("accession_number", None) or "").strip()
        if not number or self.mode == "omit":
            return
        if self.mode == "include":
            study["accession_number"] = number
            return
        assert self.secret is not None
        study["accession_pseudonym"] = self.secret.pseudonym("accession\x00" + number)

    def scrub(self, body: dict[str, Any], phi: PHI) -> list[str]:
        """Replace free-text values that contain the patient's name, birth date or (unless sent on
        purpose) id with ``[removed]`` (:mod:`agent.phi`); returns the dotted keys changed (never the values)."""
        found = pattern(phi, include_id=self.mode == "include")
        if found is None:
            return []
        changed = scrub_tree(body, found)
        if changed:
            log.warning("report_phi_redacted", keys=changed)
        return changed
