"""Repeated calibration/test redraws of one scored pool: calibrate, certify, route, score.

Each draw splits the pool, stratified by device group and label, into a calibration part
and a test part; fits the temperature (`triage.calibrate.fit_temperature`) on the
calibration part; certifies per-device thresholds (`triage.route.fit_thresholds`, the
rules file's `ThresholdConfig`) on it, once on the uncalibrated and once on the
temperature-scaled probabilities; routes every test study through the real
`triage.route.Router`; and records, overall and per device group, the routing figures
(negatives cleared, miss rate, PPV of urgent, review fraction) and the calibration
figures (ECE, adaptive ECE, NLL, Brier) of the test part.

As docs/calibration.md asks, the calibration part holds only the studies that pass the
rules' QC stage; a QC-flagged test study is routed (to review) like any other.

Besides the miss rate realized on the test part, each draw records the **pool miss
rate**: the fraction of all the group's pool positives (calibration and test) that the
draw's thresholds route routine. Redrawing from one fixed pool, this finite-population
rate is what the certificate bounds (calibration positives drawn without replacement
from the pool make the Clopper–Pearson test conservative for it), whereas the test-part
rate adds the binomial noise of ~100-150 test positives on top.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy.special import gammaln
from scipy.stats import binom

from triage.calibrate import adaptive_ece, brier, ece, fit_temperature, nll, probabilities
from triage.route import Router, fit_thresholds
from triage.route.rules import RuleSet, Stage
from triage.route.thresholds import cp_upper
from triage.route.types import Route, StudyEvidence

ALL = "all"
STAGES = ("before", "after")
#: Per-draw figures summarized over draws (mean and 2.5 / 97.5 percentiles).
FIGURES = ("cleared", "miss", "pool_miss", "ppv_urgent", "review", "urgent", "routine",
           "certified", "t_low", "t_high", "ece", "adaptive_ece", "nll", "brier")


@dataclass(frozen=True)
class Pool:
    """Scored studies: what the rules read about each, and the model's raw logits.

    Attributes:
        study_uid, group, label, verdict, modality: arrays of shape (N,).
        n_slices: slice counts, shape (N,).
        logits: raw two-class logits, shape (N, 2).
    """

    study_uid: np.ndarray
    group: np.ndarray
    label: np.ndarray
    logits: np.ndarray
    verdict: np.ndarray
    n_slices: np.ndarray
    modality: np.ndarray

    @classmethod
    def from_frame(cls, frame: pd.DataFrame) -> Pool:
        """From `benchmarks.triage.data.score_pool` rows."""
        return cls(study_uid=frame["study_uid"].astype(str).to_numpy(),
                   group=frame["device_group"].astype(str).to_numpy(),
                   label=frame["label"].astype(int).to_numpy(),
                   logits=frame[["z0", "z1"]].to_numpy(np.float64),
                   verdict=frame["verdict"].fillna("").astype(str).to_numpy(),
                   n_slices=frame["n_slices"].astype(int).to_numpy(),
                   modality=frame["modality"].fillna("").astype(str).to_numpy())

    @classmethod
    def simple(cls, logits: np.ndarray, labels: Sequence[int], groups: Sequence[str]) -> Pool:
        """Clean CT studies (verdict ok, 40 slices) with the given scores: for tests."""
        n = len(labels)
        return cls(study_uid=np.array([f"2.25.{i}" for i in range(n)]),
                   group=np.asarray(groups, dtype=str), label=np.asarray(labels, dtype=int),
                   logits=np.asarray(logits, np.float64), verdict=np.full(n, "ok", object),
                   n_slices=np.full(n, 40), modality=np.full(n, "CT", object))

    @property
    def groups(self) -> list[str]:
        return sorted(set(self.group.tolist()))

    def evidence(self, index: int, p: float) -> StudyEvidence:
        """The rules' view of study `index` with probability `p` (an ingested study).

        The pool records scores, not volumes: the input distance and the volume
        measurements count as clean (in distribution, a real image), so the recorded QC
        (verdict, slices, modality) and the score decide.
        """
        n_slices = int(self.n_slices[index])
        return StudyEvidence(self.study_uid[index], self.group[index], self.modality[index],
                             ingest_ok=True, verdict=self.verdict[index],
                             n_slices=n_slices, p_calibrated=float(p), input_distance=0.0,
                             matrix=(512, 512, n_slices), intensity_std=400.0,
                             body_fraction=0.4)


def qc_flagged(pool: Pool, ruleset: RuleSet, train_devices: Iterable[str]) -> np.ndarray:
    """True where a QC rule of `ruleset` fires (such studies are kept out of calibration)."""
    router = Router(ruleset, {}, train_devices)
    qc = [rule for rule in ruleset.rules if rule.stage is Stage.QC]
    return np.array([any(rule.check(pool.evidence(i, 0.5), router.context) is not None
                         for rule in qc) for i in range(len(pool.label))])


def split_draw(groups: np.ndarray, labels: np.ndarray, fraction: float,
               rng: np.random.Generator) -> np.ndarray:
    """Calibration mask: `fraction` of every (group, label) stratum (rounded), at random."""
    calib = np.zeros(labels.size, bool)
    for group in sorted(set(groups.tolist())):
        for label in (0, 1):
            idx = np.flatnonzero((groups == group) & (labels == label))
            take = int(round(fraction * idx.size))
            calib[rng.choice(idx, size=take, replace=False)] = True
    return calib


def route_studies(router: Router, pool: Pool, index: np.ndarray, p: np.ndarray) -> np.ndarray:
    """The route value of each study in `index` with probabilities `p` (aligned)."""
    return np.array([router.route(pool.evidence(i, pi)).route.value
                     for i, pi in zip(index.tolist(), p.tolist(), strict=True)])


def routing_figures(routes: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Negatives cleared, miss rate, PPV of urgent, and route fractions of one set."""
    pos, neg = labels == 1, labels == 0
    routine, urgent = routes == Route.ROUTINE.value, routes == Route.URGENT.value
    review = (routes == Route.REVIEW.value) | (routes == Route.FAILED.value)

    def ratio(a: np.ndarray, b: np.ndarray) -> float:
        return float(a.sum() / b.sum()) if b.sum() else float("nan")

    return {"n": float(labels.size), "n_pos": float(pos.sum()),
            "cleared": ratio(routine & neg, neg), "miss": ratio(routine & pos, pos),
            "ppv_urgent": ratio(urgent & pos, urgent), "review": float(review.mean()),
            "urgent": float(urgent.mean()), "routine": float(routine.mean())}


def calibration_figures(p: np.ndarray, labels: np.ndarray, n_bins: int) -> dict[str, float]:
    return {"ece": ece(p, labels, n_bins), "adaptive_ece": adaptive_ece(p, labels, n_bins),
            "nll": nll(p, labels), "brier": brier(p, labels)}


def pool_routine(p: np.ndarray, groups: np.ndarray, qc: np.ndarray, fitted: Any) -> np.ndarray:
    """Routine mask of the default rules' score stage for every pool study (vectorized):
    QC passed, device certified, ``p < t_low`` and not ``p >= t_high`` (urgent first)."""
    routine = np.zeros(p.size, bool)
    for group in sorted(set(groups.tolist())):
        g = fitted.get(group)
        if g is None or g.t_low is None:
            continue
        mask = (groups == group) & ~qc & (p < g.t_low)
        if g.t_high is not None:
            mask &= p < g.t_high
        routine |= mask
    return routine


def calibrate_draw(pool: Pool, draw: int, *, qc: np.ndarray, fraction: float = 0.7,
                   seed: int = 0) -> tuple[np.ndarray, np.ndarray, float]:
    """Split draw `draw` (seeded by ``(seed, draw)``) and fit its temperature.

    Returns:
        the indices the thresholds and the temperature are fitted on (calibration part,
        QC passed), the test part's indices, and the temperature.
    """
    rng = np.random.default_rng([seed, draw])
    calib = split_draw(pool.group, pool.label, fraction, rng)
    fit_idx = np.flatnonzero(calib & ~qc)
    test_idx = np.flatnonzero(~calib)
    return fit_idx, test_idx, fit_temperature(pool.logits[fit_idx], pool.label[fit_idx])


def evaluate_draw(pool: Pool, draw: int, *, ruleset: RuleSet, train_devices: Sequence[str],
                  qc: np.ndarray, fraction: float = 0.7, seed: int = 0,
                  n_bins: int = 15) -> dict[str, Any]:
    """One redraw: split, calibrate, certify, route; figures per stage and group.

    Returns:
        ``{"draw", "temperature", "n_calib_pos": {group: n}, "changed": fraction of test
        studies routed differently before and after calibration, "stages": {stage:
        {group: figures}}}``, groups being ``"all"`` then the device groups.
    """
    fit_idx, test_idx, temperature = calibrate_draw(pool, draw, qc=qc, fraction=fraction,
                                                    seed=seed)
    out: dict[str, Any] = {"draw": draw, "temperature": temperature, "stages": {},
                           "n_calib_pos": {g: int(pool.label[fit_idx][pool.group[fit_idx] == g]
                                                  .sum()) for g in pool.groups}}
    routes_by_stage = {}
    for stage, temp in (("before", 1.0), ("after", temperature)):
        p = probabilities(pool.logits, temp)
        fitted = fit_thresholds(p[fit_idx], pool.label[fit_idx], pool.group[fit_idx],
                                ruleset.thresholds)
        router = Router(ruleset, fitted, train_devices)
        routes = route_studies(router, pool, test_idx, p[test_idx])
        routes_by_stage[stage] = routes
        in_pool = pool_routine(p, pool.group, qc, fitted)
        y_test, g_test = pool.label[test_idx], pool.group[test_idx]
        figures = {}
        for group in (ALL, *pool.groups):
            sel = np.ones(test_idx.size, bool) if group == ALL else g_test == group
            row = routing_figures(routes[sel], y_test[sel])
            row |= calibration_figures(p[test_idx][sel], y_test[sel], n_bins)
            pos = (pool.label == 1) & ((pool.group == group) if group != ALL else True)
            row["pool_miss"] = float(in_pool[pos].mean()) if pos.any() else float("nan")
            if group == ALL:
                row["certified"] = float(np.mean([fitted.get(g) is not None
                                                  and fitted.get(g).t_low is not None
                                                  for g in pool.groups]))
            else:
                g = fitted.get(group)
                row["certified"] = float(g is not None and g.t_low is not None)
                row["t_low"] = g.t_low if g is not None and g.t_low is not None else np.nan
                row["t_high"] = g.t_high if g is not None and g.t_high is not None else np.nan
            figures[group] = row
        out["stages"][stage] = figures
    out["changed"] = float(np.mean(routes_by_stage["before"] != routes_by_stage["after"]))
    return out


def run_draws(pool: Pool, draws: int, *, ruleset: RuleSet, train_devices: Sequence[str],
              fraction: float = 0.7, seed: int = 0, n_bins: int = 15) -> list[dict[str, Any]]:
    """`evaluate_draw` for draws 0 .. `draws` - 1 (seeded by ``(seed, draw)``)."""
    qc = qc_flagged(pool, ruleset, train_devices)
    return [evaluate_draw(pool, d, ruleset=ruleset, train_devices=train_devices, qc=qc,
                          fraction=fraction, seed=seed, n_bins=n_bins) for d in range(draws)]


def exceed_by_ranks(n_calib_pos: int, n_test_pos: int, alpha: float, delta: float) -> float:
    """P(the test part's miss rate > alpha) that the certificate implies by rank symmetry.

    With k the most calibration misses the Clopper–Pearson bound certifies at
    ``n_calib_pos`` positives, the routine threshold sits at the (k + 1)-th lowest
    calibration positive (up to the candidate grid, which can only lower it). Calibration
    and test positives are exchangeable, so the number T of test positives below it is
    negative-hypergeometric whatever the model:
    ``P(T = t) = C(t + k, k) C(n_t - t + n_c - k - 1, n_t - t) / C(n_t + n_c, n_t)``.
    The result is ``P(T > floor(alpha * n_t))``: how often a sound certificate's test part
    exceeds alpha from finite-sample noise alone. NaN when nothing can be certified.
    """
    n_c, n_t = int(n_calib_pos), int(n_test_pos)
    misses = np.arange(n_c)
    certified = np.flatnonzero(cp_upper(misses, n_c, delta) <= alpha)
    if not certified.size or not n_t:
        return float("nan")
    k = int(certified[-1])
    t = np.arange(n_t + 1)
    log_p = (gammaln(t + k + 1) - gammaln(t + 1) - gammaln(k + 1)
             + gammaln(n_t - t + n_c - k) - gammaln(n_t - t + 1) - gammaln(n_c - k)
             - (gammaln(n_t + n_c + 1) - gammaln(n_t + 1) - gammaln(n_c + 1)))
    allowed = int(np.floor(alpha * n_t + 1e-9))
    return float(np.exp(log_p[t > allowed]).sum())


def exceed_allowance(n_test_pos: float, alpha: float) -> float:
    """P(a test part of `n_test_pos` positives shows a miss rate > alpha) if the true miss
    rate were exactly alpha: the test-sampling noise alone, for judging the realized rate."""
    n = int(round(n_test_pos))
    return float(binom.sf(np.floor(alpha * n + 1e-9), n, alpha)) if n else float("nan")


def summarize(draws: list[dict[str, Any]], alpha: float, delta: float | None = None
              ) -> dict[str, Any]:
    """Mean and 2.5 / 97.5 percentiles over draws of every figure, per stage and group,
    and the fraction of draws whose miss rate (test part; pool) exceeds `alpha`; with
    `delta`, also `exceed_by_ranks` for each device group.

    NaN values (e.g. the PPV of a draw that routed nothing urgent) are left out of the
    mean and percentiles; ``n_valid`` says how many draws remain.
    """
    summary: dict[str, Any] = {"draws": len(draws), "alpha": alpha, "stages": {},
                               "temperature": _stats([d["temperature"] for d in draws]),
                               "changed": _stats([d["changed"] for d in draws])}
    for stage in STAGES:
        groups = draws[0]["stages"][stage]
        summary["stages"][stage] = {}
        for group in groups:
            rows = [d["stages"][stage][group] for d in draws]
            entry = {key: _stats([r[key] for r in rows]) for key in FIGURES if key in rows[0]}
            miss = np.array([r["miss"] for r in rows])
            entry["miss_exceed"] = float(np.mean(miss > alpha + 1e-12))
            entry["pool_miss_exceed"] = float(np.mean(
                np.array([r["pool_miss"] for r in rows]) > alpha + 1e-12))
            n_pos = float(np.mean([r["n_pos"] for r in rows]))
            entry["n_test"] = float(np.mean([r["n"] for r in rows]))
            entry["n_test_pos"] = n_pos
            entry["exceed_if_at_alpha"] = exceed_allowance(n_pos, alpha)
            entry["exceed_by_ranks"] = float("nan")
            if delta is not None and group != ALL:
                n_calib = round(np.mean([d["n_calib_pos"][group] for d in draws]))
                entry["exceed_by_ranks"] = exceed_by_ranks(n_calib, round(n_pos), alpha, delta)
            summary["stages"][stage][group] = entry
    return summary


def _stats(values: Sequence[float]) -> dict[str, float]:
    v = np.asarray(values, np.float64)
    v = v[~np.isnan(v)]
    if not v.size:
        return {"mean": float("nan"), "low": float("nan"), "high": float("nan"), "n_valid": 0}
    low, high = np.percentile(v, [2.5, 97.5])
    return {"mean": float(v.mean()), "low": float(low), "high": float(high),
            "n_valid": int(v.size)}
