"""`triage listen`: a C-STORE SCP that triages each study once it stops growing.

Received instances are written atomically to ``OUT/spool/<study UID>/<SOP UID>.dcm`` (a
temporary file renamed into place) before the store is acknowledged. A study is complete
when no instance has arrived for `stable_seconds`; it is then scanned from the spool,
ingested, scored, routed and journaled as in `triage run`, the worklists are rewritten and,
with a sink, its SR is sent. Instances arriving for a study already triaged make it due
again: it is triaged anew, its row replaced and a new SR (new UID) supersedes the old one
(and names it: PredecessorDocumentsSequence).

The spool and the journal are the whole state: a listener stopped (SIGTERM: it finishes
the study in hand and exits) or killed, then restarted, triages whatever changed since.
What a kill left half-written (in ``spool/.incoming``, never acknowledged) is deleted at
start, and the quiet time of every study counts from the start at the earliest: a sender
cut off by the kill has `stable_seconds` to resume before its study counts as complete.

An SR is sent after the triage; a study is marked reported (``.reported``) only once it is
stored. A PACS that is down does not stop the listener: the SRs wait, and are sent again
every `ListenConfig.retry_seconds` (and after a restart) until the PACS takes them. An SR
that cannot be built or that the PACS refuses is logged and counted, never retried in a
loop, and holds up no other study's SR.
Associations from AE titles outside the allow list are rejected. Logs name studies by UID.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from triage.dicom.scan.grouping import group_studies
from triage.dicom.scan.scan import scan_export
from triage.engines.stopwatch import Stopwatch
from triage.errors import ConfigError, is_environmental
from triage.ingest.config import IngestConfig
from triage.ingest.study import ingest_study
from triage.io import prepare_out_dir
from triage.pacs.headers import HeaderStore
from triage.preprocess.cache import VolumeCache
from triage.run.pipeline import CACHE_DIR, _provenance, _Triage, open_journal
from triage.run.worklist import WorklistRow, study_identifiers, write_worklists

if TYPE_CHECKING:
    from triage.pacs.report import Sink
    from triage.pacs.retry import Backoff
    from triage.pacs.tls import TlsConfig
    from triage.registry.bundle import ModelBundle
    from triage.route import Router

LOGGER = logging.getLogger(__name__)
SPOOL_DIR = "spool"
TRIAGED_MARK = ".triaged"
REPORTED_MARK = ".reported"
_UID_CHARS = set("0123456789.")


@dataclass
class ListenConfig:
    """How the listener listens.

    Attributes:
        ae_title: our AE title.
        port: TCP port.
        host: address to bind (default loopback only).
        stable_seconds: a study is complete after this long without a new instance.
        allow_ae: calling AE titles accepted (empty: any).
        retry_seconds: how long SRs wait after a failed send before the next try.
        tls: DICOM TLS (`triage.pacs.tls.TlsConfig`); None: plain TCP.
    """

    ae_title: str = "TRIAGE"
    port: int = 11112
    host: str = "127.0.0.1"
    stable_seconds: float = 30.0
    allow_ae: tuple[str, ...] = field(default_factory=tuple)
    retry_seconds: float = 30.0
    tls: TlsConfig | None = None


def _safe_uid(uid: str) -> bool:
    return 0 < len(uid) <= 64 and set(uid) <= _UID_CHARS and not uid.startswith(".")


class Spool:
    """Received instances, by study, on disk."""

    def __init__(self, out_dir: Path) -> None:
        self.root = out_dir / SPOOL_DIR
        self.tmp = self.root / ".incoming"
        self.tmp.mkdir(parents=True, exist_ok=True)
        for part in self.tmp.glob("*.part"):  # a killed listener's, never acknowledged
            part.unlink(missing_ok=True)
        self.opened = time.time()

    def write(self, dataset) -> str:
        """Store one received instance atomically; returns its study UID."""
        study, sop = str(dataset.StudyInstanceUID), str(dataset.SOPInstanceUID)
        if not (_safe_uid(study) and _safe_uid(sop)):
            raise ValueError("the instance has no valid Study or SOP Instance UID")
        folder = self.root / study
        folder.mkdir(exist_ok=True)
        tmp = self.tmp / f"{sop}.{threading.get_ident()}.part"
        dataset.save_as(tmp, enforce_file_format=True)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, folder / f"{sop}.dcm")
        return study

    def _studies(self) -> list[Path]:
        return sorted(p for p in self.root.iterdir() if p.is_dir() and _safe_uid(p.name))

    def due(self, stable_seconds: float, now: float | None = None) -> list[str]:
        """Studies whose files changed since they were triaged and are quiet now.

        Quiet time counts from the spool's opening at the earliest, so a study cut off by a
        restart is not taken as complete before its sender had time to resume.
        """
        now = time.time() if now is None else now
        out = []
        for folder in self._studies():
            files = sorted(folder.glob("*.dcm"))
            if not files:
                continue
            newest = max(max(f.stat().st_mtime for f in files), self.opened)
            if now - newest < stable_seconds:
                continue
            if self._mark(folder) != self._fingerprint(files):
                out.append(folder.name)
        return out

    def unreported(self) -> list[str]:
        """Studies triaged as they are now whose SR has not been stored."""
        out = []
        for folder in self._studies():
            mark = self._mark(folder)
            if mark and mark == self._fingerprint(sorted(folder.glob("*.dcm"))) \
                    and self._mark(folder, REPORTED_MARK) != mark:
                out.append(folder.name)
        return out

    @staticmethod
    def _fingerprint(files: list[Path]) -> str:
        return "\n".join(f.name for f in files)

    @staticmethod
    def _mark(folder: Path, name: str = TRIAGED_MARK) -> str:
        try:
            return (folder / name).read_text(encoding="utf-8")
        except OSError:
            return ""

    def mark_triaged(self, study_uid: str, files: list[Path]) -> None:
        from triage.io import atomic_write_text

        atomic_write_text(self.root / study_uid / TRIAGED_MARK, self._fingerprint(files))

    def triaged_mark(self, study_uid: str) -> str:
        """The files of the study as last triaged ("" if never)."""
        return self._mark(self.root / study_uid)

    def mark_reported(self, study_uid: str) -> None:
        """The SR of the study as last triaged is stored."""
        from triage.io import atomic_write_text

        folder = self.root / study_uid
        atomic_write_text(folder / REPORTED_MARK, self._mark(folder))


class Listener:
    """The SCP and the triage loop (see the module docstring)."""

    def __init__(self, out_dir: Path | str, config: ListenConfig, *, bundle: ModelBundle,
                 router: Router, sink: Sink | None = None, model_name: str = "",
                 model_version: str = "", device: str = "cpu") -> None:
        self.out_dir = prepare_out_dir(out_dir)
        self.config, self.sink = config, sink
        self.spool = Spool(self.out_dir)
        self.headers = HeaderStore(self.out_dir)
        self.ingest = IngestConfig.from_dict(bundle.ingest_config,
                                             source="the model bundle's ingest_config")
        provenance = _provenance(bundle, router, model_name, model_version)
        self.journal = open_journal(self.out_dir, bundle, provenance, self.ingest)
        self.identifiers: dict = {}
        self.triage = _Triage(bundle=bundle, router=router, journal=self.journal,
                              cache=VolumeCache(self.out_dir / CACHE_DIR), config=self.ingest,
                              export_dir=self.spool.root,
                              identifiers=self.identifiers, provenance=provenance,
                              device=device, batch_size=1, on_row=self._on_row,
                              clock=Stopwatch())
        self.stopping = threading.Event()
        self.server: Any = None
        self.rows: list[WorklistRow] = []
        self.report_backoff: Backoff | None = None  # None: `send_reports`'s default
        self._retry_at = 0.0
        self._given_up: dict[str, str] = {}  # study -> its triaged mark when its SR failed

    # the SCP ---------------------------------------------------------------------------

    def _on_store(self, event) -> int:
        try:
            dataset = event.dataset
            dataset.file_meta = event.file_meta
            study = self.spool.write(dataset)
        except Exception as err:  # noqa: BLE001 - the sender gets a failure status
            LOGGER.warning("Refused an instance from %s (%s).",
                           event.assoc.requestor.ae_title, type(err).__name__)
            return 0xC210  # cannot understand
        LOGGER.debug("Received an instance of study %s.", study)
        return 0x0000

    def start(self) -> None:
        """Start the SCP (C-ECHO and every storage SOP class) in a background thread."""
        from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, AllStoragePresentationContexts, evt
        from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

        ae = AE(ae_title=self.config.ae_title)
        for context in AllStoragePresentationContexts:  # compressed syntaxes too (RLE, JPEG)
            ae.add_supported_context(str(context.abstract_syntax), ALL_TRANSFER_SYNTAXES)
        ae.add_supported_context(Verification)
        if self.config.allow_ae:
            ae.require_calling_aet = list(self.config.allow_ae)
        self.spool.opened = time.time()  # quiet time counts from here at the earliest
        tls = self.config.tls.server_context() if self.config.tls else None
        try:
            self.server = ae.start_server((self.config.host, self.config.port), block=False,
                                          evt_handlers=[(evt.EVT_C_STORE, self._on_store)],
                                          ssl_context=tls)
        except OSError as err:  # the port is taken, the host is not this machine's, ...
            raise ConfigError(
                f"Cannot listen on {self.config.host}:{self.config.port} "
                f"({err.strerror or err}); give --host an address of this machine and "
                f"--port a free port.") from err
        LOGGER.info("Listening as %s on %s:%d%s (studies complete after %.0f s quiet).",
                    self.config.ae_title, self.config.host, self.config.port,
                    " over TLS" if tls else "", self.config.stable_seconds)

    def stop(self) -> None:
        self.stopping.set()

    # the triage loop -------------------------------------------------------------------

    def _on_row(self, row: WorklistRow) -> None:
        self.rows.append(row)

    def triage_study(self, study_uid: str) -> WorklistRow | None:
        """Triage one spooled study now; rewrite the worklists; send its SR."""
        folder = self.spool.root / study_uid
        files = sorted(folder.glob("*.dcm"))
        groups = [g for g in group_studies(scan_export(folder, workers=1,
                                                       limits=self.ingest.limits))
                  if not g.is_pseudo]
        self.rows = []
        for group in groups:
            self.identifiers[group.study_uid] = study_identifiers(group)
            self.headers.save_group(group)
            self.triage.add(group, ingest_study(group, self.ingest,
                                                self.out_dir / CACHE_DIR, keep_array=True))
        self.triage.flush()
        write_worklists(list(self.journal.rows.values()), self.out_dir,
                        processed=self.journal.order())
        self.spool.mark_triaged(study_uid, files)
        rows = self.rows
        for row in rows:
            LOGGER.info("Study %s: %s.", row.study_uid, row.route)
        if time.monotonic() >= self._retry_at:  # else the PACS was down a moment ago
            self.report(study_uid)
        return rows[0] if rows else None

    def report(self, study_uid: str) -> bool:
        """Send the SR(s) of a triaged study; False when the PACS could not be reached
        (the study stays unreported and is tried again after `retry_seconds`).

        An SR that cannot be built, or that the PACS refuses, is counted by `send_reports`
        and the study marked reported: the same SR would fail the same way. Any other
        failure is logged, and the study is left alone until it changes or the listener
        restarts.
        """
        if self.sink is None:
            return True
        from triage.pacs.report import SendError, send_reports

        rows = [row for uid, row in self.journal.rows.items()
                if uid == study_uid or uid.startswith(study_uid + "#")]
        try:
            counts = send_reports(rows, self.out_dir, self.sink,
                                  backoff=self.report_backoff)
        except Exception as err:  # noqa: BLE001 - the listener serves on, whatever failed
            if isinstance(err, SendError) or is_environmental(err):
                self._retry_at = time.monotonic() + self.config.retry_seconds
                why = (f"{err.destination} unreachable ({err.why})"
                       if isinstance(err, SendError) else type(err).__name__)
                LOGGER.warning("Study %s: SR not sent, %s; the listener sends it again in "
                               "%.0f s.", study_uid, why, self.config.retry_seconds)
                return False
            self._given_up[study_uid] = self.spool.triaged_mark(study_uid)
            LOGGER.error("Study %s: SR not sent (%s); it is tried again once the study "
                         "changes or the listener restarts.", study_uid, type(err).__name__)
            return True
        self.spool.mark_reported(study_uid)
        LOGGER.info("Study %s: SR %s.", study_uid, json.dumps(counts))
        return True

    def _report_pending(self) -> None:
        if self.sink is None or time.monotonic() < self._retry_at:
            return
        for study_uid in self.spool.unreported():
            if self._given_up.get(study_uid) == self.spool.triaged_mark(study_uid):
                continue
            if self.stopping.is_set() or not self.report(study_uid):
                return

    def warm_up(self) -> None:
        """One forward pass on zeros and the SR imports, before the first association: the
        first study would otherwise wait for them (about 10 s on a small CPU)."""
        import numpy as np

        started = time.perf_counter()
        bundle = self.triage.bundle
        bundle.predict_proba(np.zeros((1, *bundle.in_shape), np.float32),
                             device=self.triage.device, batch_size=1)
        if self.sink is not None:
            import triage.pacs.sr  # noqa: F401 - highdicom, imported once here

        LOGGER.info("Model ready in %.1f s.", time.perf_counter() - started)

    def run(self, poll_seconds: float = 0.5) -> None:
        """Serve until `stop` (SIGTERM): triage each study once it is quiet."""
        self.warm_up()
        self.start()
        try:
            while not self.stopping.is_set():
                for study_uid in self.spool.due(self.config.stable_seconds):
                    if self.stopping.is_set():
                        break
                    self.triage_study(study_uid)
                self._report_pending()
                self.stopping.wait(poll_seconds)
        finally:
            if self.server is not None:
                self.server.shutdown()
            LOGGER.info("Listener stopped; the spool and the journal are kept in %s.",
                        self.out_dir)
