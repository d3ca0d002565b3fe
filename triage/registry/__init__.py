"""MLflow tracking, the model bundle and its pyfunc wrapper (docs/mlflow.md).

Modules (imported on demand; MLflow and torch are heavy): `tracking` (tracking URI,
`start_run`/`RunLogger`, the no-identifiers guard), `bundle` (`ModelBundle`, `save_bundle`,
`load_bundle`), `pyfunc` (`TriageModel`, `log_bundle`, `load_bundle_from_uri`).
"""
