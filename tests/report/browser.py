"""Headless Chromium for the report tests: the rendered DOM and every console message.

A page without script should print nothing to the console; Chromium logs each console
message (``console.error`` included, and failed resource loads) with
``--enable-logging=stderr --v=0`` as a ``:CONSOLE`` line, so any such line is an error here.
Without Chromium the test skips, except in CI (``CI=true``), where it fails: `make tools`
installs it there.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "chrome")
_CONSOLE = re.compile(r":CONSOLE(?::\d+|\(\d+\))\]")


def find_chromium() -> str:
    """The browser's path; skips the test (fails it in CI) when there is none."""
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    message = "chromium is not installed (make tools installs it: apt-get install chromium)"
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(message)
    pytest.skip(message)


def render(page: Path, tmp_path: Path) -> tuple[str, list[str]]:
    """(the DOM after rendering `page`, the console lines Chromium logged)."""
    browser = find_chromium()
    done = subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--enable-logging=stderr", "--v=0", f"--user-data-dir={tmp_path / 'profile'}",
         "--dump-dom", page.resolve().as_uri()],
        capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    console = [line for line in done.stderr.splitlines() if _CONSOLE.search(line)]
    return done.stdout, console


class TableReader(HTMLParser):
    """The cells of the tables of a page: table id -> list of rows (attrs, cells), where
    each cell is (data-col, text)."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, list[tuple[dict, list[tuple[str | None, str]]]]] = {}
        self._table: str | None = None
        self._row: tuple[dict, list] | None = None
        self._cell: list[str] | None = None
        self._col: str | None = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "table":
            self._table = attrs.get("id", "")
            self.tables[self._table] = []
        elif tag == "tr" and self._table is not None:
            self._row = (attrs, [])
        elif tag == "td" and self._row is not None:
            self._cell, self._col = [], attrs.get("data-col")

    def handle_endtag(self, tag):
        if tag == "td" and self._cell is not None and self._row is not None:
            self._row[1].append((self._col, "".join(self._cell).strip()))
            self._cell = None
        elif tag == "tr" and self._row is not None:
            if self._row[1]:
                self.tables[self._table].append(self._row)
            self._row = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def tables(dom: str) -> dict[str, list[tuple[dict, list[tuple[str | None, str]]]]]:
    reader = TableReader()
    reader.feed(dom)
    return reader.tables
