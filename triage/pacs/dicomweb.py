"""The DICOMweb source: QIDO-RS finds the studies, WADO-RS fetches each one's instances.

Filters map to QIDO-RS query keys (``StudyDate`` ranges, ``ModalitiesInStudy``,
``StudyInstanceUID``). Each call is retried with backoff on connection errors and
transient statuses (`triage.pacs.retry`); a server that stays unreachable, keeps
answering a transient status (a gateway's 502/503/504, throttling) or keeps cutting its
answers off stops the run (`EnvironmentalError`, exit 3, resumable), while a study the
server refuses for itself (HTTP 404, 403, 400) becomes a `RetrievalError`, that study's
``failed`` row, naming the HTTP status.

QIDO-RS searches are paged until a page comes back empty, and checked against a server
that caps its answers (`triage.pacs.qido`).
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from triage.errors import ConfigError, EnvironmentalError
from triage.pacs.qido import Found, attribute, find_studies
from triage.pacs.retry import Backoff, http_status, is_transient
from triage.pacs.source import RetrievalError, StudyRef

LOGGER = logging.getLogger(__name__)
STUDY_FIELDS = ("PatientID", "AccessionNumber", "StudyDate", "StudyTime", "PatientName",
                "PatientBirthDate", "PatientSex", "StudyID", "ReferringPhysicianName",
                "ModalitiesInStudy", "SpecificCharacterSet")
_DATE_RANGE = re.compile(r"^(\d{8})?-(\d{8})?$|^\d{8}$")
_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")


def is_dicomweb_url(text: str) -> bool:
    """Whether `text` is an http(s) URL (a DICOMweb base URL) rather than a folder."""
    return text.startswith(("http://", "https://"))


@dataclass(frozen=True)
class StudyFilter:
    """Which studies a DICOMweb query asks for.

    Attributes:
        study_date: a DICOM date range ``YYYYMMDD-YYYYMMDD`` (either end may be open) or
            one date.
        modality: a modality the study must contain (``ModalitiesInStudy``).
        study_uids: only these studies (none: every study).
        limit: at most this many studies (None: all).
    """

    study_date: str = ""
    modality: str = ""
    study_uids: tuple[str, ...] = ()
    limit: int | None = None

    def __post_init__(self) -> None:
        if self.study_date:
            _check_dates(self.study_date)
        for uid in self.study_uids:
            if len(uid) > 64 or not _UID.match(uid):
                raise ConfigError(f"--study-uid must be a DICOM UID (digits and dots, at "
                                  f"most 64 characters, no empty component, e.g. "
                                  f"1.2.840.10008.1.2), got {uid!r}.")
        if self.limit is not None and self.limit < 1:
            raise ConfigError(f"--limit must be at least 1, got {self.limit}.")
        if self.modality and not re.fullmatch(r"[A-Z0-9]{1,16}", self.modality):
            raise ConfigError(f"--modality must be a DICOM modality such as CT, got "
                              f"{self.modality!r}.")

    def query(self) -> dict[str, str]:
        keys = {}
        if self.study_date:
            keys["StudyDate"] = self.study_date
        if self.modality:
            keys["ModalitiesInStudy"] = self.modality
        return keys

    def describe(self) -> str:
        """The query in words, for messages.

        Example:
            >>> StudyFilter("20240101-20240131", "CT").describe()
            'StudyDate=20240101-20240131, ModalitiesInStudy=CT'
            >>> StudyFilter().describe()
            'every study'
        """
        keys = [f"{k}={v}" for k, v in self.query().items()]
        if self.study_uids:
            keys.append(f"StudyInstanceUID={','.join(self.study_uids)}")
        if self.limit is not None:
            keys.append(f"limit {self.limit}")
        return ", ".join(keys) or "every study"


def _check_dates(text: str) -> None:
    """Raise `ConfigError` unless `text` is a DICOM date or date range of real dates, in
    order, not both ends open."""
    from datetime import datetime

    usage = ("--study-date must be YYYYMMDD-YYYYMMDD (an end may be left open) or "
             "YYYYMMDD")
    if not _DATE_RANGE.match(text) or text == "-":
        raise ConfigError(f"{usage}, got {text!r}.")
    ends = [end for end in text.split("-") if end]
    for end in ends:
        try:
            datetime.strptime(end, "%Y%m%d")
        except ValueError as err:
            raise ConfigError(f"{usage}; {end!r} is not a calendar date.") from err
    if len(ends) == 2 and ends[0] > ends[1]:
        raise ConfigError(f"{usage}, the earlier date first; got {text!r} (give "
                          f"{ends[1]}-{ends[0]}).")


class DicomwebSource:
    """Studies of a DICOMweb server (QIDO-RS, WADO-RS).

    Args:
        url: the DICOMweb base URL (``http://host:8042/dicom-web``).
        filters: which studies.
        backoff: retry policy of each call.
        timeout: seconds per HTTP request.
    """

    def __init__(self, url: str, filters: StudyFilter | None = None, *,
                 backoff: Backoff | None = None, timeout: float = 60.0) -> None:
        from dicomweb_client.api import DICOMwebClient

        if not is_dicomweb_url(url):
            raise ConfigError(f"A DICOMweb source must be an http(s) URL, got {url!r}.")
        self.url = url.rstrip("/")
        self.filters = filters or StudyFilter()
        self.backoff = backoff or Backoff()
        try:
            parsed = urlparse(self.url)
            if parsed.port == 0:  # `port` raises ValueError for any other bad port
                raise ValueError("Port 0")
            if not parsed.hostname:
                raise ValueError("it names no host")
            self.client = DICOMwebClient(self.url)
        except ValueError as err:
            # Not the URL itself in the message: it may carry a password.
            why = "its port is not a number from 1 to 65535" if "port" in str(err).lower() \
                else "it names no host" if str(err) == "it names no host" \
                else "it does not parse"
            raise ConfigError(f"The DICOMweb URL is malformed ({why}); give "
                              f"http(s)://host[:port]/path, e.g. "
                              f"http://pacs:8042/dicom-web.") from err
        self.client.set_http_retry_params(retry=False)  # ours: `backoff`
        self.timeout = timeout
        self._local = threading.local()
        self.description = f"DICOMweb {self.url}"

    def _unreachable(self, err: BaseException, what: str) -> EnvironmentalError:
        status = http_status(err)
        why = f"HTTP {status}" if status is not None else type(err).__name__
        return EnvironmentalError(f"The DICOMweb server {self.url} failed {what} ({why}) "
                                  f"after {self.backoff.attempts} tries")

    def _search(self, filters: dict[str, str], limit: int | None = None,
                offset: int | None = None) -> list[dict]:
        """One QIDO-RS study search (one page), retried.

        Raises:
            EnvironmentalError: the server stayed unreachable.
            ConfigError: the server refused the search.
        """
        try:
            return self.backoff.call(lambda: self.client.search_for_studies(
                fields=list(STUDY_FIELDS), search_filters=filters, limit=limit,
                offset=offset), "QIDO-RS study search")
        except Exception as err:
            if is_transient(err) or http_status(err) is None:
                raise self._unreachable(err, "the study search") from err
            raise ConfigError(f"The DICOMweb server {self.url} refused the study search "
                              f"(HTTP {http_status(err)}); check the URL and "
                              f"filters.") from err

    def find(self) -> Sequence[StudyRef]:
        """The studies matching the filters, by Study Instance UID (at most ``limit``)."""
        limit = self.filters.limit
        found: dict[str, dict] = {}
        if self.filters.study_uids:
            for uid in dict.fromkeys(self.filters.study_uids):
                for attrs in self._search({**self.filters.query(), "StudyInstanceUID": uid}):
                    found[attribute(attrs, "StudyInstanceUID")] = attrs
        else:
            query = {k: v for k, v in self.filters.query().items() if k != "StudyDate"}
            result = find_studies(self._search, query, study_date=self.filters.study_date,
                                  limit=limit)
            found = result.studies
            self._warn_caps(result)
        uids = sorted(uid for uid in found if uid)
        if limit is not None:
            uids = uids[:limit]
        return [StudyRef(uid, attribute(found[uid], "PatientID"),
                         attribute(found[uid], "AccessionNumber"),
                         attribute(found[uid], "StudyDate"), found[uid]) for uid in uids]

    def _warn_caps(self, result: Found) -> None:
        if result.paged:
            LOGGER.warning("The DICOMweb server %s answered fewer studies per page than "
                           "asked (a cap on its pages); paged on until a page came back "
                           "empty.", self.url)
        if result.cap is not None:
            LOGGER.warning("The DICOMweb server %s caps its search answers at about %d "
                           "studies (e.g. Orthanc's LimitFindResults): the search was split "
                           "by StudyDate to find them all (%d studies).", self.url,
                           result.cap, len(result.studies))
        if result.crowded:
            LOGGER.warning("The DICOMweb server %s still held back studies of StudyDate %s "
                           "(more than its cap on one day): some may be missing; raise the "
                           "server's cap (Orthanc: LimitFindResults) or search by "
                           "--study-uid.", self.url, ", ".join(result.crowded))

    def stage(self, study: StudyRef, folder: Path) -> Path:
        """Fetch the study's instances (WADO-RS) into `folder`, one file each, atomically.

        A failed try starts over in an emptied folder.
        """
        folder = Path(folder)

        def fetch() -> int:
            _empty(folder)
            count = 0
            for count, part in enumerate(self._retrieve_parts(study.study_uid), start=1):
                _write_bytes(part, folder / f"{count:06d}.dcm")
            return count

        try:
            count = self.backoff.call(fetch, f"WADO-RS retrieval of study {study.study_uid}")
        except Exception as err:
            status = http_status(err)
            if is_transient(err):  # the network or a gateway, not the study
                raise self._unreachable(err, f"retrieving study {study.study_uid}") from err
            if status is None:
                raise RetrievalError(study.study_uid, f"retrieval failed: the server's "
                                     f"answer could not be read ({type(err).__name__})"
                                     ) from err
            raise RetrievalError(study.study_uid, f"retrieval failed: the DICOMweb server "
                                 f"answered HTTP {status}", status) from err
        if count == 0:
            raise RetrievalError(study.study_uid, "retrieval failed: the DICOMweb server "
                                                  "returned no instance for the study")
        return folder

    def _session(self) -> Any:
        """This thread's HTTP session (studies are fetched by several threads)."""
        session = getattr(self._local, "session", None)
        if session is None:
            import requests

            session = self._local.session = requests.Session()
        return session

    def _retrieve_parts(self, study_uid: str) -> list[bytes]:
        """WADO-RS: the study's instances as the Part 10 bytes the server sent, not parsed
        into datasets (the files are written as they came)."""
        response = self._session().get(
            f"{self.url}/studies/{study_uid}",
            # transfer-syntax=*: as stored, no transcoding
            headers={"Accept": 'multipart/related; type="application/dicom"; '
                               'transfer-syntax=*'},
            timeout=self.timeout)
        response.raise_for_status()
        return _multipart_parts(response.headers.get("Content-Type", ""), response.content)

    def instances(self, study: StudyRef) -> list[dict]:
        """The study's instances as QIDO-RS lists them (DICOM JSON); [] if that fails."""
        try:
            return self.backoff.call(lambda: self.client.search_for_instances(
                study_instance_uid=study.study_uid), f"QIDO-RS instances of {study.study_uid}")
        except Exception as err:  # noqa: BLE001 - only the SR of a failed study needs it
            LOGGER.warning("Listing the instances of study %s failed (%s).", study.study_uid,
                           type(err).__name__)
            return []


def _empty(folder: Path) -> None:
    import shutil

    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)


def _multipart_parts(content_type: str, body: bytes) -> list[bytes]:
    """The bodies of a ``multipart/related`` response (RFC 2046), headers stripped.

    Raises:
        ValueError: not a multipart answer, or a malformed one.
    """
    match = re.search(r'boundary="?([^";]+)"?', content_type, re.IGNORECASE)
    if not content_type.lower().startswith("multipart/") or match is None:
        raise ValueError(f"not a multipart answer ({content_type!r})")
    delimiter = b"--" + match.group(1).strip().encode("latin-1")
    chunks = body.split(b"\r\n" + delimiter)
    first = chunks[0]
    if not first.startswith(delimiter):  # a preamble, or none: the body opens with it
        first = first[first.find(delimiter):] if delimiter in first else b""
    chunks[0] = first[len(delimiter):] if first else b""
    parts: list[bytes] = []
    for chunk in chunks[0 if first else 1:]:
        if chunk.startswith(b"--"):  # the close delimiter
            break
        head, sep, content = chunk.partition(b"\r\n\r\n")
        if not sep:
            raise ValueError("a multipart part without a header")
        parts.append(content)
    return parts


def _write_bytes(content: bytes, path: Path) -> None:
    tmp = path.with_suffix(".part")
    tmp.write_bytes(content)
    os.replace(tmp, path)
