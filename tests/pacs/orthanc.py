"""A real Orthanc (Debian's ``orthanc`` + ``orthanc-dicomweb``) run as a plain process.

`OrthancServer` writes a JSON config (DICOMweb on, no authentication, storage in a temp
folder, free loopback ports), starts ``Orthanc`` on it, waits until its REST API answers
and kills it on `stop`. `restart` keeps the storage, so a test can kill the PACS mid-run
and bring it back with the same studies.
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

ORTHANC_CANDIDATES = ("/usr/sbin/Orthanc", "/usr/bin/Orthanc")
DICOMWEB_PLUGIN_CANDIDATES = ("/usr/share/orthanc/plugins/libOrthancDicomWeb.so",
                              "/usr/lib/orthanc/libOrthancDicomWeb.so")


def find_orthanc() -> tuple[str | None, str | None]:
    """The Orthanc binary and the DICOMweb plugin, or None for each one missing."""
    binary = shutil.which("Orthanc") or next(
        (p for p in ORTHANC_CANDIDATES if os.access(p, os.X_OK)), None)
    plugin = next((p for p in DICOMWEB_PLUGIN_CANDIDATES if Path(p).is_file()), None)
    return binary, plugin


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class OrthancServer:
    """One Orthanc on loopback.

    Attributes:
        root: folder of its config, storage and log.
        http_port, dicom_port: its REST/DICOMweb and DICOM ports on 127.0.0.1.
        aet: its AE title.
        modalities: AE title -> (host, port) of the peers it may C-STORE to.
        config: more Orthanc settings, over the defaults (e.g. ``{"LimitFindResults": 10}``,
            a server that caps every search answer).
    """

    def __init__(self, root: Path, binary: str, plugin: str, *, aet: str = "ORTHANC",
                 modalities: dict[str, tuple[str, int]] | None = None,
                 dicom: bool = False, refuse_studies: tuple[str, ...] = (),
                 config: dict | None = None) -> None:
        self.root, self.binary, self.plugin, self.aet = Path(root), binary, plugin, aet
        self.http_port, self.dicom_port = free_port(), free_port()
        self.modalities = dict(modalities or {})
        self.dicom = dicom  # the DICOM port listens on every interface: only when needed
        self.refuse_studies = tuple(refuse_studies)  # WADO-RS of these answers HTTP 403
        self.config = dict(config or {})
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def dicomweb(self) -> str:
        return f"{self.url}/dicom-web"

    def _config(self) -> Path:
        storage = self.root / "storage"
        storage.mkdir(parents=True, exist_ok=True)
        config = {
            "Name": "triage-test", "StorageDirectory": str(storage),
            "IndexDirectory": str(storage), "HttpPort": self.http_port,
            "RemoteAccessAllowed": False, "AuthenticationEnabled": False,
            "DicomServerEnabled": self.dicom, "DicomAet": self.aet, "DicomPort": self.dicom_port,
            "DicomCheckCalledAet": False, "DicomAlwaysAllowEcho": True,
            "DicomAlwaysAllowStore": True, "UnknownSopClassAccepted": True,
            "DicomModalities": {k: [k, h, p] for k, (h, p) in self.modalities.items()},
            "Plugins": [self.plugin], "HttpTimeout": 60, "StableAge": 1,
            "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "EnableWado": True,
                         "StudiesMetadata": "Full", "SeriesMetadata": "Full"},
            "StorageCompression": False, "SaveJobs": False, "MaximumStorageCacheSize": 0,
            "LuaScripts": [str(self._lua())],
        } | self.config
        path = self.root / "orthanc.json"
        path.write_text(json.dumps(config, indent=1), encoding="utf-8")
        return path

    def _lua(self) -> Path:
        # A fault a real PACS shows: it lists a study but refuses to send it.
        refused = ", ".join(f'["{uid}"] = true' for uid in self.refuse_studies)
        path = self.root / "filter.lua"
        path.write_text(
            "local refused = {" + refused + "}\n"
            "function IncomingHttpRequestFilter(method, uri, ip, username, headers)\n"
            "  local uid = string.match(uri, '^/dicom%-web/studies/([0-9.]+)$')\n"
            "  if method == 'GET' and uid ~= nil and refused[uid] then return false end\n"
            "  return true\n"
            "end\n", encoding="utf-8")
        return path

    def start(self, timeout: float = 30.0) -> OrthancServer:
        """Start Orthanc and wait until its REST API and DICOMweb answer."""
        config = self._config()
        log = open(self.root / "orthanc.log", "ab")  # noqa: SIM115 - kept by the process
        self.process = subprocess.Popen([self.binary, str(config)], stdout=log,
                                        stderr=subprocess.STDOUT, cwd=self.root,
                                        start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"Orthanc exited with {self.process.returncode}; see "
                                   f"{self.root / 'orthanc.log'}")
            try:
                with urllib.request.urlopen(f"{self.dicomweb}/studies", timeout=2):
                    return self
            except (urllib.error.URLError, OSError):
                time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"Orthanc did not answer within {timeout:.0f} s; see "
                           f"{self.root / 'orthanc.log'}")

    def stop(self) -> None:
        """Kill Orthanc (SIGKILL: a crash, as far as a client can tell)."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
        self.process = None

    def restart(self) -> None:
        """Start again on the same ports and storage."""
        self.stop()
        self.start()

    # REST helpers ---------------------------------------------------------------------

    def rest(self, path: str, data: bytes | None = None, method: str | None = None):
        request = urllib.request.Request(f"{self.url}{path}", data=data, method=method)
        if data is not None:
            request.add_header("Content-Type", "application/dicom")
        with urllib.request.urlopen(request, timeout=30) as response:
            body = response.read()
        return json.loads(body) if body else None

    def upload(self, path: Path) -> dict:
        """POST one DICOM file to /instances."""
        return self.rest("/instances", Path(path).read_bytes())

    def upload_export(self, export_dir: Path) -> int:
        """Push every DICOM file of an export (synthetic or real) into Orthanc; returns the
        number stored. Files Orthanc rejects (not DICOM) are skipped."""
        stored = 0
        for path in sorted(p for p in Path(export_dir).rglob("*") if p.is_file()):
            try:
                self.upload(path)
                stored += 1
            except urllib.error.HTTPError:
                continue
        return stored

    def studies(self) -> list[str]:
        """Study Instance UIDs stored."""
        return sorted(self.rest(f"/studies/{sid}")["MainDicomTags"]["StudyInstanceUID"]
                      for sid in self.rest("/studies"))

    def instances_of_modality(self, modality: str) -> list[bytes]:
        """Every stored instance (bytes) of a series with `modality`."""
        found = []
        for sid in self.rest("/series"):
            series = self.rest(f"/series/{sid}")
            if series["MainDicomTags"].get("Modality") == modality:
                for iid in series["Instances"]:
                    with urllib.request.urlopen(f"{self.url}/instances/{iid}/file",
                                                timeout=30) as response:
                        found.append(response.read())
        return found
