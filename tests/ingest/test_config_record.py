"""`triage ingest` records its resolved config, so a model trained on the cache can
preprocess new studies exactly the same way."""

from __future__ import annotations

import json

from triage.engines.runner import CONFIG_NAME, ingest_export
from triage.ingest.config import IngestConfig


def test_ingest_records_the_resolved_config_and_it_round_trips(make_synth_export, tmp_path):
    export = make_synth_export(studies=2, slices=16).out_dir
    config = IngestConfig.from_dict({"selection": {"min_slices": 8},
                                     "preprocess": {"target_shape": [16, 16, 8]}})
    ingest_export(export, tmp_path / "ingest", config, workers=1)
    recorded = json.loads((tmp_path / "ingest" / CONFIG_NAME).read_text())
    assert recorded["selection"]["min_slices"] == 8
    assert recorded["preprocess"]["target_shape"] == [16, 16, 8]
    assert IngestConfig.from_dict(recorded) == config
