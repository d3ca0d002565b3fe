"""The patient-key secret: made once (0600, with a warning), reused, checked; the key is a
stable HMAC that fits the manifest schema."""

from __future__ import annotations

import logging
import os
import stat

import pytest

from triage.data.manifest import _PATIENT_KEY
from triage.data.pseudonym import load_or_create_secret, patient_key
from triage.errors import ConfigError


def test_the_secret_is_made_once_private_and_then_reused(tmp_path, caplog):
    path = tmp_path / "keys" / "secret"
    with caplog.at_level(logging.WARNING):
        secret, created = load_or_create_secret(path)
    assert created and len(secret) == 64 and stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert "Keep it out of the export" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        assert load_or_create_secret(path) == (secret, False)
    assert not caplog.text


def test_a_secret_others_can_read_is_warned_about_and_a_short_one_refused(tmp_path, caplog):
    path = tmp_path / "secret"
    path.write_text("  a-pasted-secret-of-enough-bytes  \n")
    path.chmod(0o644)
    with caplog.at_level(logging.WARNING):
        assert load_or_create_secret(path) == (b"a-pasted-secret-of-enough-bytes", False)
    assert "chmod 600" in caplog.text
    path.write_text("short")
    with pytest.raises(ConfigError, match="holds 5 bytes; it needs at least 16"):
        load_or_create_secret(path)


def test_keys_are_stable_per_secret_and_valid_in_a_manifest():
    key = patient_key(b"s" * 32, "PAT-0001")
    assert key == patient_key(b"s" * 32, " PAT-0001 ") != patient_key(b"t" * 32, "PAT-0001")
    assert _PATIENT_KEY.match(key) and "PAT" not in key
