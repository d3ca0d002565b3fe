"""Atomic writes: all or nothing, and the permissions a plain open() would give."""

from __future__ import annotations

import os
import stat

import pytest

from triage.io import atomic_open, atomic_write_text


def test_atomic_write_replaces_and_keeps_umask_permissions(tmp_path):
    target = tmp_path / "out.csv"
    old = os.umask(0o022)
    try:
        atomic_write_text(target, "a,b\r\n")
        atomic_write_text(target, "c,d\r\n")
    finally:
        os.umask(old)
    assert target.read_bytes() == b"c,d\r\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["out.csv"]


def test_failed_write_leaves_the_old_file_and_no_temp(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_open(target) as fh:
        fh.write("half")
        raise RuntimeError("killed")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


@pytest.mark.parametrize("durable, syncs", [(True, 1), (False, 0)])
def test_durable_decides_the_fsync(tmp_path, monkeypatch, durable, syncs):
    calls = []
    real = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (calls.append(fd), real(fd)))
    atomic_write_text(tmp_path / "a.txt", "x", durable=durable)
    assert (tmp_path / "a.txt").read_text() == "x" and len(calls) == syncs
