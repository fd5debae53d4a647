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
import re
import secrets
from pathlib import Path
from typing import Any, Optional

import structlog

from agent.config import PrivacyConfig
from agent.extract.record import PHI

log = structlog.get_logger("agent.uplink")

REDACTED = "[removed]"
_SECRET_BYTES = 32


class SiteSecret:
    """The per-site HMAC key, read from a file (created with mode 0600 if missing)."""

    def __init__(self, key: bytes):
        if len(key) < 16:
            raise ValueError("the site secret must hold at least 16 bytes")
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
        text = path.read_text(encoding="ascii").strip()
        try:
            key = bytes.fromhex(text)
        except ValueError:
            key = text.encode()
        return cls(key)

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

    def scrub(self, body: dict[str, Any], phi: PHI) -> list[str]:
        """Replace free-text values that contain the patient's name, birth date or (unless sent on
        purpose) id with ``[removed]``; returns the dotted keys changed (never the values)."""
        needles = _needles(phi, include_id=self.mode == "include")
        if not needles:
            return []
        changed: list[str] = []
        _scrub(body, needles, "", changed)
        if changed:
            log.warning("report_phi_redacted", keys=changed)
        return changed


def _needles(phi: PHI, include_id: bool) -> Optional[re.Pattern[str]]:
    words: set[str] = set()
    if phi.patient_name:
        name = phi.patient_name.strip()
        words.add(re.sub(r"[\^=]+", " ", name).strip())
        words.update(part for part in re.split(r"[\^ =,]+", name) if len(part) >= 3)
    if phi.birth_date:
        digits = re.sub(r"\D", "", phi.birth_date)
        if len(digits) == 8:
            words.update({digits, f"{digits[:4]}-{digits[4:6]}-{digits[6:]}"})
    if phi.patient_id and not include_id and len(phi.patient_id.strip()) >= 4:
        words.add(phi.patient_id.strip())
    words.discard("")
    if not words:
        return None
    alternatives = "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True))
    return re.compile(rf"(?<![A-Za-z0-9])(?:{alternatives})(?![A-Za-z0-9])", re.IGNORECASE)


def _scrub(node: Any, needles: re.Pattern[str], path: str, changed: list[str]) -> Any:
    """Walk dicts and lists; identifiers (``*_uid``) and our own pseudonym fields are left alone."""
    if isinstance(node, dict):
        entries = [(k, v) for k, v in node.items() if not (k.endswith("_uid") or k in ("pseudonym", "pseudonym_key"))]
    elif isinstance(node, list):
        entries = list(enumerate(node))
    else:
        return node
    for key, value in entries:
        if isinstance(value, str):
            if needles.search(value):
                node[key] = REDACTED
                changed.append(f"{path}{key}")
        else:
            _scrub(value, needles, f"{path}{key}.", changed)
    return node
