"""Register a model variant as a new version of its parent's registered model, with lineage.

The variant is a new bundle (the parent's files plus ``model.onnx``, or narrower weights
for a pruned network, with its own temperature and thresholds in ``bundle.json``), so it
gets its own digest and version; the version tags name its parent, the method and the
runtime.
"""

from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path

from triage.export.variant import Variant

log = logging.getLogger(__name__)
EXPERIMENT = "triage-export"


def register_variant(variant: Variant, *, name: str, parent_version: str,
                     tracking_uri: str | None = None) -> str:
    """Log `variant` in a run of `EXPERIMENT`, register it as a version of `name` and tag
    its lineage (``lineage.kind`` export, parent, method, runtime, measured speeds).

    Returns:
        The new version number.
    """
    from triage.registry.bundle import save_bundle
    from triage.registry.promotion import register_version
    from triage.registry.pyfunc import log_bundle
    from triage.registry.tracking import client_for, resolve_tracking_uri, start_run

    uri = resolve_tracking_uri(tracking_uri)
    client = client_for(uri)
    parent_tags = client.get_model_version(name, parent_version).tags or {}
    bundle = variant.bundle
    rules_version = str((bundle.rules or {}).get("version", ""))
    tags = {"triage.stage": "export", "model": name, "parent_version": parent_version,
            "manifest.sha256": parent_tags.get("manifest.sha256", ""),
            "triage.train_devices": parent_tags.get("train_devices", ""),
            "triage.holdout_device": parent_tags.get("holdout_device", ""),
            "triage.rules_version": parent_tags.get("rules_version", rules_version)}
    with tempfile.TemporaryDirectory(prefix="triage-export-") as tmp:
        bundle_dir = save_bundle(bundle, Path(tmp) / "bundle")
        with start_run(EXPERIMENT, run_name=f"{name}-v{parent_version}-{variant.method}",
                       uri=uri, tags=tags) as run:
            run.log_metrics({"calibration.temperature": bundle.temperature,
                             **{f"forward_ms.{k}": v for k, v in variant.forward_ms.items()},
                             **bundle.metrics})
            log_bundle(bundle_dir)
            run_id = run.run_id
    version = register_version(run_id, name, tracking_uri=uri)
    lineage = {"lineage.kind": "export", "lineage.parent_version": parent_version,
               "lineage.method": variant.method, "lineage.runtime": bundle.runtime,
               "lineage.parent_temperature": f"{variant.parent_temperature:.6g}",
               "lineage.forward_ms": json.dumps(variant.forward_ms, sort_keys=True),
               **variant.tags}
    for key, value in lineage.items():
        client.set_model_version_tag(name, version, key, value)
    log.info("Registered %s version %s: %s of version %s (T %.4g -> %.4g).", name, version,
             variant.method, parent_version, variant.parent_temperature, bundle.temperature)
    return version
