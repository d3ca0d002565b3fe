"""A throw-away Orthanc (Debian ``orthanc`` + ``orthanc-dicomweb``) on free loopback ports.

Kept apart from the test fixture (``tests/pacs/orthanc.py``) so that the benchmark imports
nothing from ``tests/``; it needs less: start, stop, upload, and the change feed.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

PLUGINS = ("/usr/share/orthanc/plugins/libOrthancDicomWeb.so",
           "/usr/lib/orthanc/libOrthancDicomWeb.so")


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Orthanc:
    """One Orthanc process with DICOMweb on, storage under `root`."""

    def __init__(self, root: Path) -> None:
        binary = shutil.which("Orthanc") or "/usr/sbin/Orthanc"
        plugin = next((p for p in PLUGINS if Path(p).is_file()), None)
        if not os.access(binary, os.X_OK) or plugin is None:
            raise SystemExit("Orthanc and its DICOMweb plugin are needed: run 'make tools' "
                             "as root (apt-get install orthanc orthanc-dicomweb).")
        self.root, self.port = Path(root), free_port()
        shutil.rmtree(self.root, ignore_errors=True)
        (self.root / "storage").mkdir(parents=True)
        config = {"Name": "bench", "StorageDirectory": str(self.root / "storage"),
                  "IndexDirectory": str(self.root / "storage"), "HttpPort": self.port,
                  "RemoteAccessAllowed": False, "AuthenticationEnabled": False,
                  "DicomServerEnabled": False, "Plugins": [plugin], "HttpTimeout": 60,
                  "DicomWeb": {"Enable": True, "Root": "/dicom-web/",
                               "StudiesMetadata": "Full", "SeriesMetadata": "Full"},
                  "StorageCompression": False, "SaveJobs": False}
        (self.root / "orthanc.json").write_text(json.dumps(config), encoding="utf-8")
        log = open(self.root / "orthanc.log", "ab")  # noqa: SIM115 - kept by the process
        self.process = subprocess.Popen([binary, str(self.root / "orthanc.json")],
                                        stdout=log, stderr=subprocess.STDOUT,
                                        start_new_session=True)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                self.get("/dicom-web/studies")
                return
            except OSError:
                time.sleep(0.2)
        self.stop()
        raise SystemExit(f"Orthanc did not start; see {self.root / 'orthanc.log'}")

    @property
    def dicomweb(self) -> str:
        return f"http://127.0.0.1:{self.port}/dicom-web"

    def get(self, path: str):
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}",
                                    timeout=30) as response:
            body = response.read()
        return json.loads(body) if body else None

    def upload(self, export: Path) -> int:
        """POST every file of `export`; the number Orthanc stored (it refuses non-DICOM)."""
        stored = 0
        for path in sorted(p for p in export.rglob("*") if p.is_file()):
            request = urllib.request.Request(
                f"http://127.0.0.1:{self.port}/instances", data=path.read_bytes(),
                headers={"Content-Type": "application/dicom"})
            try:
                with urllib.request.urlopen(request, timeout=60):
                    stored += 1
            except urllib.error.HTTPError:
                continue
        return stored

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
