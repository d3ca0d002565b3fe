"""A DICOM peer for the listener tests: C-STORE and C-ECHO from pynetdicom, waits, and a
listener serving in a thread of the test process."""

from __future__ import annotations

import csv
import threading
import time
from pathlib import Path

from tests.pacs.orthanc import free_port


def worklist(out: Path) -> dict[str, dict]:
    path = out / "worklist.csv"
    if not path.is_file():
        return {}
    with open(path, encoding="utf-8", newline="") as fh:
        return {r["study_uid"]: r for r in csv.DictReader(fh)}


def send(port: int, datasets: list, calling: str = "SENDER") -> list[int] | None:
    """C-STORE `datasets`; the statuses, or None when the association is refused."""
    from pynetdicom import AE

    ae = AE(ae_title=calling)
    for ds in datasets:
        ae.add_requested_context(ds.SOPClassUID, ds.file_meta.TransferSyntaxUID)
    assoc = ae.associate("127.0.0.1", port, ae_title="TRIAGE")
    if not assoc.is_established:
        return None
    try:
        return [int(assoc.send_c_store(ds).Status) for ds in datasets]
    finally:
        assoc.release()


def echo(port: int) -> bool:
    from pynetdicom import AE
    from pynetdicom.sop_class import Verification

    ae = AE(ae_title="SENDER")
    ae.add_requested_context(Verification)
    assoc = ae.associate("127.0.0.1", port, ae_title="TRIAGE")
    if not assoc.is_established:
        return False
    status = assoc.send_c_echo()
    assoc.release()
    return int(status.Status) == 0


def wait(predicate, timeout: float = 90.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


class InProcessListener:
    """A `Listener` serving in a thread of the test process."""

    def __init__(self, out: Path, tiny_model, router, *, sink=None, stable: float = 1.0,
                 retry: float = 1.0) -> None:
        from triage.pacs.listen import ListenConfig, Listener
        from triage.pacs.retry import Backoff
        from triage.registry.bundle import load_bundle

        self.port = free_port()
        self.listener = Listener(out, ListenConfig(port=self.port, stable_seconds=stable,
                                                   retry_seconds=retry),
                                 bundle=load_bundle(tiny_model.bundle_dir), router=router,
                                 sink=sink, device="cpu")
        self.listener.report_backoff = Backoff(attempts=2, first_wait=0.1)
        self.errors: list[BaseException] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self) -> None:
        try:
            self.listener.run(poll_seconds=0.2)
        except BaseException as err:  # the test asserts there was none
            self.errors.append(err)

    def __enter__(self) -> InProcessListener:
        self.thread.start()
        wait(lambda: echo(self.port) or not self.thread.is_alive(), 30, "C-ECHO")
        return self

    def __exit__(self, *_) -> None:
        self.listener.stop()
        self.thread.join(timeout=30)
