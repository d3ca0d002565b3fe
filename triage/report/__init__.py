"""Static, self-contained HTML reports (inline SVG, no script, no network): one per run
and one per monitoring window (docs/monitoring.md)."""
