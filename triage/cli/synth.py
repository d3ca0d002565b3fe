"""`triage synth`: write a synthetic multi-device PACS export and its manifest."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Placeholder until the generator lands (replaced by the generator module)."""
