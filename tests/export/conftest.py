"""The tiny trained model of the run tests, reused for export (trained once per session)."""

from tests.run.conftest import _run_tracking, run_tracking_uri, tiny_model  # noqa: F401
