"""The page frame and small table helpers shared by the run and monitor reports."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from html import escape

_STYLE = """
body{font-family:sans-serif;margin:24px;color:#222;max-width:1100px}
h1{font-size:20px}h2{font-size:16px;margin-top:28px;border-bottom:1px solid #ccc}
table{border-collapse:collapse;margin:8px 0;font-size:12px}
td,th{border:1px solid #ccc;padding:3px 6px;text-align:left;vertical-align:top}
td.n{text-align:right}.alarm{color:#c0392b;font-weight:bold}.muted{color:#777}
.charts{display:flex;flex-wrap:wrap;gap:12px}img.thumb{width:96px;image-rendering:pixelated}
"""


def page(title: str, sections: Iterable[str]) -> str:
    """A complete, self-contained HTML5 document (inline CSS, no script, no link)."""
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{escape(title)}</title><style>{_STYLE}</style></head><body>"
            f"<h1>{escape(title)}</h1>{''.join(sections)}</body></html>\n")


def table(table_id: str, header: Sequence[str], rows: Iterable[Sequence[object]], *,
          row_attrs: Iterable[dict[str, str]] | None = None,
          cell_attrs: Sequence[str | None] | None = None) -> str:
    """A table; cells are escaped unless they are `Raw`. ``row_attrs`` adds ``data-*``
    attributes per row, ``cell_attrs`` a ``data-col`` name per column (for tests and
    scripts reading the page)."""
    attrs = list(row_attrs) if row_attrs is not None else None
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = []
    for i, row in enumerate(rows):
        extra = "".join(f' data-{k}="{escape(v)}"' for k, v in (attrs[i] if attrs else {}).items())
        cells = []
        for j, cell in enumerate(row):
            col = cell_attrs[j] if cell_attrs and j < len(cell_attrs) else None
            mark = f' data-col="{escape(col)}"' if col else ""
            numeric = ' class="n"' if isinstance(cell, int | float) else ""
            text = cell.html if isinstance(cell, Raw) else escape(str(cell))
            cells.append(f"<td{mark}{numeric}>{text}</td>")
        body.append(f"<tr{extra}>{''.join(cells)}</tr>")
    return (f'<table id="{escape(table_id)}"><thead><tr>{head}</tr></thead>'
            f"<tbody>{''.join(body)}</tbody></table>")


class Raw:
    """Markup to put into a cell as is (an ``<img>``, an ``<svg>``)."""

    def __init__(self, html: str) -> None:
        self.html = html


def section(title: str, *parts: str) -> str:
    return f"<section><h2>{escape(title)}</h2>{''.join(parts)}</section>"


def para(text: str, cls: str = "") -> str:
    return f'<p{f" class={chr(34)}{cls}{chr(34)}" if cls else ""}>{escape(text)}</p>'
