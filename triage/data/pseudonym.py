"""Patient pseudonyms: `patient_key` is a keyed hash (HMAC-SHA256) of the PatientID.

The key is a secret the site keeps in a file of its own. Without it a patient_key cannot be
traced back to a PatientID by hashing candidate IDs, and with it the same patient gets the
same key on every build, so manifests built months apart keep a patient in one split. The
file must stay out of the export, out of the manifest folder that is shared, and out of
MLflow: whoever holds it and a list of PatientIDs can re-identify the manifest.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
from pathlib import Path

from triage.errors import ConfigError

log = logging.getLogger(__name__)

#: Outside any export or project folder by default, so it is not copied along with them.
DEFAULT_SECRET_FILE = Path("~/.config/triage/patient-key.secret")
SECRET_BYTES = 32
MIN_SECRET_BYTES = 16
KEY_PREFIX = "pk-"
#: Hex digits kept: 80 bits, so collisions are negligible for any real cohort, and the key
#: stays inside the manifest schema's 4-64 characters of [A-Za-z0-9._-].
KEY_HEX_DIGITS = 20


def load_or_create_secret(path: Path | str) -> tuple[bytes, bool]:
    """The secret in `path`, created (random, mode 0600) when the file does not exist.

    The file holds the secret as text (a new file: 64 hex digits); surrounding whitespace
    is ignored, so a secret pasted from a password manager works too.

    Returns:
        (secret, created).

    Raises:
        ConfigError: the file cannot be read, or holds fewer than 16 bytes.
    """
    path = Path(path)
    created = False
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # made meanwhile by another build: use it
            pass
        else:
            with os.fdopen(fd, "w", encoding="ascii") as fh:
                fh.write(secrets.token_hex(SECRET_BYTES) + "\n")
            created = True
            log.warning("Created the patient-key secret %s (mode 0600). Keep it: the same "
                        "patient gets the same patient_key only with the same secret. Keep it "
                        "out of the export, out of shared manifest folders and out of MLflow.",
                        path)
    try:
        secret = path.read_bytes().strip()
    except OSError as err:
        raise ConfigError(f"Cannot read the patient-key secret {path}: {err.strerror}; pass "
                          "a readable file with --secret-file.") from err
    if len(secret) < MIN_SECRET_BYTES:
        raise ConfigError(f"The patient-key secret {path} holds {len(secret)} bytes; it needs "
                          f"at least {MIN_SECRET_BYTES}. Delete it to have a new one made "
                          "(every patient_key then changes).")
    if not created and path.stat().st_mode & 0o077:
        log.warning("The patient-key secret %s can be read by other users; restrict it with "
                    "`chmod 600 %s`.", path, path)
    return secret, created


def patient_key(secret: bytes, patient_id: str) -> str:
    """The pseudonym of `patient_id` under `secret`.

    Example:
        >>> patient_key(b"0" * 32, "PAT-0001")
        'pk-43ec2e5402a70cc3cfb2'
    """
    digest = hmac.new(secret, patient_id.strip().encode("utf-8"), hashlib.sha256)
    return KEY_PREFIX + digest.hexdigest()[:KEY_HEX_DIGITS]
