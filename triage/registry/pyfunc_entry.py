"""MLflow "models from code" entry point of the triage pyfunc (see `log_bundle`).

MLflow copies this file into each logged model and runs it on load; importing it elsewhere
only registers a `TriageModel` with MLflow's model-from-code hook.
"""

import mlflow

from triage.registry.pyfunc import TriageModel

mlflow.models.set_model(TriageModel())
