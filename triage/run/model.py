"""Which model a run uses: load its bundle and name it for the worklist.

``models:/NAME@alias`` is resolved to its version *before* downloading, so the rows name
the version that actually scored them even if the alias moves during the run. A local
bundle folder is read directly, without importing MLflow (about a second of start-up).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from triage.registry.bundle import ModelBundle

LOGGER = logging.getLogger(__name__)
_ALIAS = re.compile(r"^models:/(?P<name>[^/@]+)@(?P<alias>[^/]+)$")
_VERSION = re.compile(r"^models:/(?P<name>[^/@]+)/(?P<version>\d+)$")


@dataclass(frozen=True)
class LoadedModel:
    """A bundle with the name and version the worklist records.

    Attributes:
        bundle: the model bundle.
        name: registered model name; for other URIs the URI itself, for a local folder
            its name.
        version: registered version number; empty when there is none (the run then
            records the bundle's creation time).
        uri: the URI the bundle was loaded from.
    """

    bundle: ModelBundle
    name: str
    version: str
    uri: str


def _alias_version(name: str, alias: str, tracking_uri: str | None) -> str | None:
    """The version number `alias` points to, or None when the registry cannot say."""
    from mlflow.exceptions import MlflowException

    from triage.registry.tracking import client_for

    client = client_for(tracking_uri)  # the URI checked, the server probed
    try:
        return str(client.get_model_version_by_alias(name, alias).version)
    except MlflowException as err:
        LOGGER.warning("Cannot resolve alias @%s of model %s (%s); loading it as given.",
                       alias, name, err.error_code)
        return None


def load_model(uri: str, *, tracking_uri: str | None = None,
               decode_weights: bool = True) -> LoadedModel:
    """Load the bundle at `uri` (model URI or local bundle folder) and name it.

    ``decode_weights=False`` leaves the weights encoded, for a driver whose engine runs
    the model elsewhere (`triage.registry.bundle.EncodedWeights`): no torch import here.

    Raises:
        BundleError: the URI holds no valid bundle.
        TrackingError: the URI cannot be resolved or downloaded.
    """
    from triage.registry.bundle import BUNDLE_JSON, load_bundle

    name, version, source = uri, "", uri
    if match := _ALIAS.match(uri):
        name = match["name"]
        resolved = _alias_version(name, match["alias"], tracking_uri)
        if resolved is not None:
            version, source = resolved, f"models:/{name}/{resolved}"
    elif match := _VERSION.match(uri):
        name, version = match["name"], match["version"]
    elif "://" not in uri and ":/" not in uri:
        name = Path(uri).resolve().name
        if (Path(uri) / BUNDLE_JSON).is_file():
            return LoadedModel(load_bundle(uri, decode_weights=decode_weights), name,
                               version, source)
    from triage.registry.pyfunc import load_bundle_from_uri

    bundle = load_bundle_from_uri(source, tracking_uri=tracking_uri,
                                  decode_weights=decode_weights)
    return LoadedModel(bundle, name, version, source)
