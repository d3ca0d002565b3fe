"""`stream_ingest` over an iterator (studies staged as they arrive, e.g. from DICOMweb):
pulled as the pool has room, each yielded once, the same volumes as from a list."""

from __future__ import annotations

import numpy as np

from triage.dicom.scan.grouping import group_studies
from triage.dicom.scan.scan import scan_export
from triage.ingest.config import IngestConfig
from triage.ingest.stream import stream_ingest

CONFIG = {"selection": {"min_slices": 4},
          "preprocess": {"target_spacing": [12, 12, 12], "target_shape": [16, 16, 8]}}


def test_an_iterator_is_pulled_lazily_and_gives_the_same_volumes(tmp_path):
    from triage.data.synth import SynthConfig, generate_export

    export = generate_export(tmp_path / "export", SynthConfig(
        studies=5, seed=3, slices=8, matrix=32, devices="acme,borealis", thick_fraction=0.0,
        extras=False)).out_dir
    groups = [g for g in group_studies(scan_export(export, workers=1)) if not g.is_pseudo]
    config = IngestConfig.from_dict(CONFIG)
    pulled: list[str] = []

    def produce():
        for group in groups:
            pulled.append(group.study_uid)
            yield group

    lazy = [(g.study_uid, o) for g, o in stream_ingest(produce(), config, tmp_path / "lazy",
                                                       workers=2, keep_arrays=True)]
    eager = {g.study_uid: o for g, o in stream_ingest(groups, config, tmp_path / "eager",
                                                      workers=2, keep_arrays=True)}
    assert pulled == [g.study_uid for g in groups]
    assert sorted(uid for uid, _ in lazy) == sorted(g.study_uid for g in groups)
    for uid, outcome in lazy:
        assert outcome.report.status == eager[uid].report.status
        assert np.array_equal(outcome.array, eager[uid].array)
    inline = list(stream_ingest(iter(groups[:2]), config, tmp_path / "inline", workers=1))
    assert len(inline) == 2
