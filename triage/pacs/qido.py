"""Every study a QIDO-RS search matches, also from a server that caps its answers.

Servers cap searches two ways, neither saying so in the answer:

- per page: fewer studies than the ``limit`` asked, the rest reachable by ``offset``
  (paging goes on until a page comes back empty, so a short page is not the end);
- per search: at most N matches, ``offset`` counting inside those N (Orthanc's
  ``LimitFindResults``: with 10 it answers 11 studies to any search, and nothing past
  ``offset=11``). Paging cannot reach the rest; narrower searches can. So an answer is
  checked by searching again split by ``StudyDate`` around its median date: if the parts
  hold studies the answer lacked, the server capped it at (about) that many, and every
  part as large as the cap is split again, down to single days.

A study without a StudyDate is found only by the unsplit search.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

LOGGER = logging.getLogger(__name__)
PAGE = 100

Search = Callable[[dict[str, str], int, int], list[dict]]
"""``search(filters, limit, offset)``: one page of a QIDO-RS study search (DICOM JSON)."""


def attribute(attrs: dict, keyword: str) -> str:
    """The first value of `keyword` in a DICOM JSON dataset, as text ("" if none).

    Example:
        >>> attribute({"00080020": {"vr": "DA", "Value": ["20240102"]}}, "StudyDate")
        '20240102'
    """
    from pydicom.datadict import tag_for_keyword

    element = attrs.get(f"{tag_for_keyword(keyword):08X}", {})
    values = element.get("Value") or [""]
    value = values[0]
    if isinstance(value, dict):  # a person name
        return str(value.get("Alphabetic", ""))
    return str(value)


@dataclass
class Found:
    """What a search found.

    Attributes:
        studies: Study Instance UID -> study attributes (DICOM JSON).
        paged: the server answered pages shorter than asked, and more after them.
        cap: the size of an answer shown to be capped (None: none was).
        crowded: days on which the server still held back studies at the deepest split.
    """

    studies: dict[str, dict] = field(default_factory=dict)
    paged: bool = False
    cap: int | None = None
    crowded: list[str] = field(default_factory=list)


def _day(text: str) -> date | None:
    try:
        return datetime.strptime(text, "%Y%m%d").date()
    except ValueError:
        return None


def _text(day: date) -> str:
    return day.strftime("%Y%m%d")


def _bounds(study_date: str) -> tuple[date | None, date | None]:
    """The ends of a valid ``--study-date`` (None: open)."""
    if not study_date:
        return None, None
    ends = study_date.split("-") if "-" in study_date else [study_date, study_date]
    return _day(ends[0]), _day(ends[1])


def _range(lo: date | None, hi: date | None) -> str:
    if lo is not None and lo == hi:
        return _text(lo)
    return f"{_text(lo) if lo else ''}-{_text(hi) if hi else ''}"


class _Finder:
    def __init__(self, search: Search, query: dict[str, str]) -> None:
        self.search, self.query = search, query
        self.found = Found()

    def pages(self, lo: date | None, hi: date | None, limit: int | None = None
              ) -> dict[str, dict]:
        """The answer to the query within [lo, hi], paged until an empty page (or
        `limit` studies)."""
        query = dict(self.query)
        if lo is not None or hi is not None:
            query["StudyDate"] = _range(lo, hi)
        studies: dict[str, dict] = {}
        offset, short = 0, False
        while limit is None or len(studies) < limit:
            page = PAGE if limit is None else min(PAGE, limit - len(studies))
            batch = self.search(query, page, offset)
            before = len(studies)
            for attrs in batch:
                studies[attribute(attrs, "StudyInstanceUID")] = attrs
            if not batch or len(studies) == before:  # the end, or a server ignoring offset
                break
            self.found.paged = self.found.paged or short  # a short page, and more after it
            short = len(batch) < page
            offset += len(batch)
        return studies

    def split(self, lo: date | None, hi: date | None, answer: dict[str, dict]
              ) -> list[tuple[date | None, date | None]]:
        """[lo, hi] in up to three parts around the median date of `answer`: before it, the
        day itself, after it ([] when that leaves one part: a single day)."""
        days = sorted(d for d in (_day(attribute(a, "StudyDate")) for a in answer.values())
                      if d is not None and (lo is None or lo <= d)
                      and (hi is None or d <= hi))
        if not days:
            return []
        median = days[len(days) // 2]
        parts: list[tuple[date | None, date | None]] = []
        if lo is None or lo < median:
            parts.append((lo, median - timedelta(days=1)))
        parts.append((median, median))
        if hi is None or median < hi:
            parts.append((median + timedelta(days=1), hi))
        return parts if len(parts) > 1 else []

    def refine(self, lo: date | None, hi: date | None, answer: dict[str, dict], cap: int
               ) -> dict[str, dict]:
        """`answer` (to [lo, hi]) completed by narrower searches, given that the server
        caps its answers at `cap` studies."""
        if len(answer) < cap:
            return answer
        parts = self.split(lo, hi, answer)
        if not parts:
            self.found.crowded.append(_range(lo, hi))
            return answer
        out = dict(answer)
        for part in parts:
            out.update(self.refine(*part, self.pages(*part), cap))
        return out


def find_studies(search: Search, query: dict[str, str], *, study_date: str = "",
                 limit: int | None = None) -> Found:
    """Every study matching `query` (and `study_date`, a valid DICOM date range), or the
    first `limit` the server returns.

    Args:
        search: one page of the search (retries and errors are its own).
        query: QIDO-RS filters other than ``StudyDate``.
        study_date: ``YYYYMMDD-YYYYMMDD`` (an end may be open), ``YYYYMMDD`` or "".
        limit: at most this many studies (None: all).

    Returns:
        The studies, and what was learnt of the server's caps.
    """
    finder = _Finder(search, query)
    lo, hi = _bounds(study_date)
    answer = finder.pages(lo, hi, limit)
    if answer and (limit is None or len(answer) < limit):
        parts = finder.split(lo, hi, answer)
        checks = [(part, finder.pages(*part)) for part in parts]
        if any(set(found) - set(answer) for _, found in checks):
            cap = finder.found.cap = len(answer)
            for part, found in checks:
                answer = answer | finder.refine(*part, found, cap)
    finder.found.studies = answer
    return finder.found
