"""The browser probe itself: it does see a console error (so a clean page is clean)."""

from tests.report.browser import render, tables


def test_the_probe_sees_console_errors_and_reads_tables(tmp_path):
    page = tmp_path / "probe.html"
    page.write_text('<!DOCTYPE html><html><body><table id="t"><tr data-x="1">'
                    '<td data-col="a">7</td></tr></table>'
                    '<script>console.error("probe-error")</script></body></html>')
    dom, console = render(page, tmp_path)
    assert any("probe-error" in line for line in console)
    assert tables(dom)["t"][0][1] == [("a", "7")]
