"""Sinks: send one SR per worklist row to a PACS, by STOW-RS or C-STORE.

`create_sink` parses ``--report-to``: ``http(s)://HOST:PORT/dicom-web`` (STOW-RS, with
dicomweb-client) or ``dicom://AET@HOST:PORT`` (C-STORE, with pynetdicom; our calling AE
title is ``TRIAGE`` unless ``dicom://AET@HOST:PORT?calling=OURS``; DICOM TLS with
``?tls=1`` (system CA store) or ``?tls-ca=PEM``, and ``tls-cert=``/``tls-key=`` for a
client certificate: `triage.pacs.tls`). Each store is retried
with backoff; a destination that stays unreachable stops (`SendError`, exit 3) and a
rerun sends again: SR UIDs are deterministic (`triage.pacs.sr`), so the PACS gets no
duplicate. An SR that cannot be built, or that the destination refuses, is that study's
alone: logged, counted as ``rejected``, and the other studies' SRs still go out. Logs name
studies by UID only.
"""

from __future__ import annotations

import functools
import logging
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from urllib.parse import parse_qs, urlsplit

from triage.errors import ConfigError, EnvironmentalError, is_environmental
from triage.pacs.headers import HeaderStore
from triage.pacs.retry import Backoff, http_status, is_transient
from triage.pacs.sr import ReportError, build_sr
from triage.pacs.tls import TlsConfig
from triage.run.worklist import WorklistRow

LOGGER = logging.getLogger(__name__)
DEFAULT_CALLING_AET = "TRIAGE"
_AET = re.compile(r"^[\x20-\x7e]{1,16}$")
_TLS_KEYS = ("tls-ca", "tls-cert", "tls-key")


class RejectedError(Exception):
    """The destination refused this one SR (not worth retrying)."""


class SendError(EnvironmentalError):
    """The destination stayed unreachable; the SRs not sent are sent by a rerun.

    Attributes:
        destination: the sink's description.
        why: the last error's type (or HTTP status).
        sent: SRs sent before it failed.
    """

    def __init__(self, destination: str, why: str, attempts: int, sent: int) -> None:
        self.destination, self.why, self.sent = destination, why, sent
        super().__init__(f"Sending SRs to {destination} failed ({why}) after {attempts} "
                         f"tries; {sent} were sent. Rerun the same command to send them "
                         f"(the PACS gets no duplicate)")


class Sink(Protocol):
    description: str

    def send(self, dataset) -> None:
        """Store one dataset. Raises `RejectedError` or a transient error."""


@dataclass
class StowSink:
    """STOW-RS to a DICOMweb base URL."""

    url: str

    def __post_init__(self) -> None:
        from dicomweb_client.api import DICOMwebClient

        self.client = DICOMwebClient(self.url.rstrip("/"))
        self.client.set_http_retry_params(retry=False)  # ours: `send_reports`
        self.description = f"STOW-RS {self.url}"

    def send(self, dataset) -> None:
        try:
            self.client.store_instances(datasets=[dataset])
        except Exception as err:
            status = http_status(err)
            if status is not None and not is_transient(err):
                raise RejectedError(f"HTTP {status}") from err
            raise


@dataclass
class CStoreSink:
    """C-STORE to a DICOM node (a new association per SR, so a restarted PACS is fine)."""

    called_aet: str
    host: str
    port: int
    calling_aet: str = DEFAULT_CALLING_AET
    timeout: float = 30.0
    tls: TlsConfig | None = None

    def __post_init__(self) -> None:
        self.description = (f"C-STORE {self.called_aet}@{self.host}:{self.port}"
                            + (" over TLS" if self.tls else ""))
        self._tls_context = self.tls.client_context() if self.tls else None

    def send(self, dataset) -> None:
        from pynetdicom import AE

        ae = AE(ae_title=self.calling_aet)
        ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = self.timeout
        ae.add_requested_context(dataset.SOPClassUID, [dataset.file_meta.TransferSyntaxUID])
        tls_args = (self._tls_context, self.host) if self._tls_context else None
        assoc = ae.associate(self.host, self.port, ae_title=self.called_aet,
                             tls_args=tls_args)
        if not assoc.is_established:
            raise ConnectionError(f"no association with {self.description} (rejected, "
                                  f"aborted or unreachable)")
        try:
            status = assoc.send_c_store(dataset)
        finally:
            if assoc.is_established:
                assoc.release()
        code = getattr(status, "Status", None)
        if code is None:
            raise ConnectionError(f"{self.description} answered no C-STORE status")
        if code not in (0x0000, 0xB000, 0xB007, 0xB006):
            raise RejectedError(f"C-STORE status 0x{code:04X}")


def create_sink(target: str) -> Sink:
    """The sink of a ``--report-to`` value.

    Raises:
        ConfigError: neither an http(s) URL nor ``dicom://AET@HOST:PORT``.
    """
    if target.startswith(("http://", "https://")):
        return StowSink(target)
    parts = urlsplit(target)
    if parts.scheme == "dicom" and parts.username and parts.hostname and parts.port:
        query = parse_qs(parts.query)
        unknown = sorted(set(query) - {"calling", "tls", *_TLS_KEYS})
        if unknown:
            raise ConfigError(f"--report-to: unknown option(s) {', '.join(unknown)} in "
                              f"{target!r}; valid: calling, tls, {', '.join(_TLS_KEYS)}.")
        calling = query.get("calling", [DEFAULT_CALLING_AET])[0]
        for aet in (parts.username, calling):
            if not _AET.match(aet) or "\\" in aet:
                raise ConfigError(f"--report-to: AE title {aet!r} must be 1-16 printable "
                                  f"characters without a backslash.")
        files = {k: Path(query[k][0]) for k in _TLS_KEYS if k in query}
        tls = None
        if files or query.get("tls", ["0"])[0] not in ("0", ""):
            tls = TlsConfig(files.get("tls-cert"), files.get("tls-key"), files.get("tls-ca"))
        return CStoreSink(parts.username, parts.hostname, parts.port, calling, tls=tls)
    raise ConfigError(f"--report-to must be http(s)://HOST:PORT/dicom-web (STOW-RS) or "
                      f"dicom://AET@HOST:PORT (C-STORE), got {target!r}.")


def _headers_from_export(export_dir: Path, store: HeaderStore,
                         missing: set[str]) -> None:
    from triage.dicom.scan.grouping import group_studies
    from triage.dicom.scan.scan import scan_export

    for group in group_studies(scan_export(export_dir)):
        if group.study_uid in missing:
            store.save_group(group)


def send_reports(rows: Iterable[WorklistRow], out_dir: Path | str, sink: Sink, *,
                 export_dir: Path | str | None = None,
                 backoff: Backoff | None = None) -> dict[str, int]:
    """Send one SR per row to `sink`; returns counts ``sent``, ``rejected`` (refused by the
    destination, or not buildable), ``skipped`` (no study or instance to report on).

    Args:
        rows: worklist rows (failed ones too: their SR carries the reason).
        out_dir: the run's output folder (its ``headers/``).
        sink: where to send.
        export_dir: the export folder, for studies of a folder run (their headers are read
            from the files).
        backoff: retry policy per SR.

    Raises:
        SendError: the destination stayed unreachable; rerun to send again.
    """
    rows = list(rows)
    store, backoff = HeaderStore(out_dir), backoff or Backoff()
    if export_dir is not None:
        missing = {r.study_uid for r in rows if store.load(r.study_uid) is None}
        if missing:
            _headers_from_export(Path(export_dir), store, missing)
    counts: Counter = Counter()
    for row in rows:
        try:
            sr = build_sr(row, store.load(row.study_uid),
                          guarantee=str(getattr(row, "guarantee", "") or ""),
                          sent=store.sent(row.study_uid))
        except ReportError as err:
            LOGGER.warning("No SR for study %s: %s.", row.study_uid, err)
            counts["skipped"] += 1
            continue
        except Exception as err:  # noqa: BLE001 - this study's SR only; the rest go out
            # The type only: highdicom's and pydicom's messages quote header values.
            LOGGER.error("No SR for study %s: it could not be built (%s).", row.study_uid,
                         type(err).__name__)
            counts["rejected"] += 1
            continue
        try:
            backoff.call(functools.partial(sink.send, sr),
                         f"{sink.description} of the SR of study {row.study_uid}")
        except RejectedError as err:
            LOGGER.error("%s refused the SR of study %s (%s).", sink.description,
                         row.study_uid, err)
            counts["rejected"] += 1
            continue
        except Exception as err:
            if is_transient(err) or isinstance(err, OSError) or is_environmental(err):
                status = http_status(err)
                raise SendError(sink.description, f"HTTP {status}" if status is not None
                                else type(err).__name__, backoff.attempts,
                                counts["sent"]) from err
            LOGGER.error("%s could not take the SR of study %s (%s).", sink.description,
                         row.study_uid, type(err).__name__)
            counts["rejected"] += 1
            continue
        counts["sent"] += 1
        store.save_sent(row.study_uid, str(sr.SeriesInstanceUID), str(sr.SOPInstanceUID))
    return {k: counts[k] for k in ("sent", "rejected", "skipped")}
