"""Probe: the blob-fcn's fixed darkness-contrast detector alone, with and without a tissue floor.

Not a test and not part of `make bench-triage`. Scores every cached volume of a pool
export with the untrained `blob-fcn` front end (``contrast_prior`` only: the learned layers
start at zero, so the evidence map is the detector itself), once with plain context
statistics and once with ``tissue_floor`` (fat and air left out of the context), and prints
per device the AUROC and, for the routine threshold, the share of negatives that score
below the k-th lowest positive (k = 2: the threshold a certificate allowing one miss would
sit at). Written to check why the lowest-scoring positives of the triage benchmark were
lesions next to the liver's edge (docs/training.md, "Lesions at an organ's edge")::

    python -m benchmarks.triage.contrast_probe bench_output/triage/data/pool-...-seed1-... \
        --per-device 400
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
import torch


def detector_scores(volumes: list[np.ndarray], tissue_floor: float | None) -> np.ndarray:
    """Max of the untrained blob-fcn evidence map (the contrast prior alone) per volume."""
    from triage.model import create_model
    from triage.train.config import ModelConfig

    options = {"channels": [8], "strides": [1], "pool": "max", "context": [9, 9, 5],
               "downsample": [2, 2, 2], "contrast_prior": 1.0, "tissue_floor": tissue_floor}
    model = create_model(ModelConfig("blob-fcn", options), volumes[0].shape, seed=0).eval()
    with torch.no_grad():
        return np.array([float(model.evidence(torch.from_numpy(v)[None, None]).max())
                         for v in volumes])


def main(argv: list[str] | None = None) -> int:
    from sklearn.metrics import roc_auc_score

    from triage.data.dataset import CACHE_DIR, load_array, resolve_samples
    from triage.data.manifest import read_manifest
    from triage.preprocess.cache import VolumeCache

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("pool", type=Path, help="a pool folder (export/ and ingest/)")
    parser.add_argument("--per-device", type=int, default=400)
    parser.add_argument("--floor", type=float, default=0.25)
    parser.add_argument("--k", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    resolved = resolve_samples(read_manifest(args.pool / "export" / "manifest.csv"),
                               args.pool / "ingest")
    cache = VolumeCache(args.pool / "ingest" / CACHE_DIR)
    samples = pd.DataFrame({"sample": resolved.samples,
                            "group": [s.device_group for s in resolved.samples]})
    chosen = [s for _, g in samples.groupby("group") for s in g["sample"][:args.per_device]]
    volumes = [load_array(cache, s) for s in chosen]
    labels = np.array([s.label for s in chosen])
    groups = np.array([s.device_group for s in chosen])
    for floor in (None, args.floor):
        scores = detector_scores(volumes, floor)
        for group in sorted(set(groups)):
            sel = groups == group
            pos, neg = np.sort(scores[sel & (labels == 1)]), scores[sel & (labels == 0)]
            auroc = roc_auc_score(labels[sel], scores[sel])
            cleared = np.mean(neg < pos[args.k - 1])
            print(f"{group:<34} floor {floor!s:<5} AUROC {auroc:.4f}  negatives below "
                  f"the {args.k}-th lowest positive {cleared:.0%} ({sel.sum()} studies)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
