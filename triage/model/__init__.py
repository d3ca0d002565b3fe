"""Networks: a registry of MONAI 3-D classifiers built by name (`create_model`).

Example:
    >>> from triage.model import list_models
    >>> "densenet121" in list_models()
    True
"""

from triage.model.registry import (
    ModelSpec,
    create_model,
    get_model_spec,
    list_models,
    register_model,
)

__all__ = ["ModelSpec", "create_model", "get_model_spec", "list_models", "register_model"]
