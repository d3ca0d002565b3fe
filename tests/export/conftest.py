"""The tiny trained model of the run tests, reused for export (trained once per session),
and what the export tests share: its export and ingest folders, and a registered parent."""

from __future__ import annotations

from pathlib import Path

from tests.run.conftest import _run_tracking, run_tracking_uri, tiny_model  # noqa: F401


def export_of(model) -> tuple[Path, Path]:
    """The manifest and ingest folder the tiny model was trained on."""
    root = Path(model.bundle_dir).parents[1]
    return root / "export" / "manifest.csv", root / "ingest"


def register_parent(model, tmp_path, monkeypatch, name: str) -> str:
    """Register `model` (the tiny model) as `name` in its tracking store (the CLI's store too, from
    `tmp_path`); its version."""
    import mlflow

    from triage.registry.tracking import _scoped_uri

    monkeypatch.setenv("MLFLOW_TRACKING_URI", model.tracking_uri)
    monkeypatch.chdir(tmp_path)
    with _scoped_uri(model.tracking_uri):  # MLflow's global URIs restored after
        return mlflow.register_model(model.model_uri, name).version
