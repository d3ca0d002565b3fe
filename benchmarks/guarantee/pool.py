"""A simulated score pool with the triage benchmark's measured score distributions.

The triage benchmark (`benchmarks/triage`) scores 6,000 studies of three devices with a
trained model; generating and training it takes about two hours cold. This benchmark
needs millions of scores with a *known* truth, so it draws them from a parametric model
fitted to that benchmark's published figures (docs/benchmarks.md, "Triage quality"):

- a latent score z, N(0, 1) for negatives and N(d_g, 1) for positives of device g (binormal,
  equal variance): the certified routine threshold at ~600 calibration positives then
  clears Phi(d_g - 2.75) of the negatives, and d_g is set to the measured share (acme
  57.8 %, borealis 54.6 %, cygnus 67.9 %);
- the calibrated probability ``p = sigmoid(d_g z - d_g^2 / 2 + b_g)`` (exact Bayes at 50 %
  prevalence, shifted by b_g): borealis's measured routine threshold, 0.0019 against
  0.02-0.04 for the others, puts its scores b = -2.8 logits lower, which is what makes
  pooling across devices matter.

Miss rates and cleared shares of any threshold are then exact normal CDFs (`rates`), so
the guarantee checks carry no test-set noise.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import expit, logit
from scipy.stats import norm


@dataclass(frozen=True)
class Device:
    """One device group of the simulated pool.

    Attributes:
        name: device group.
        d: separation of positives from negatives on the latent score (AUROC Phi(d/sqrt 2)).
        b: logit offset of the device's probabilities.
    """

    name: str
    d: float
    b: float = 0.0

    def probability(self, z: np.ndarray) -> np.ndarray:
        """Calibrated-scale probability of latent scores `z`."""
        return expit(self.d * z - self.d ** 2 / 2 + self.b)

    def latent(self, t: float) -> float:
        """The latent score at probability threshold `t`."""
        t = float(np.clip(t, 1e-300, 1 - 1e-16))
        return (float(logit(t)) - self.b + self.d ** 2 / 2) / self.d

    def rates(self, t_low: float | None, t_high: float | None) -> dict[str, float]:
        """Exact rates of the thresholds on this device.

        Returns:
            ``miss`` (positives routed routine), ``cleared`` (negatives routed routine),
            ``urgent_pos`` / ``urgent_neg`` (share of positives / negatives routed urgent).
        """
        out = {"miss": 0.0, "cleared": 0.0, "urgent_pos": 0.0, "urgent_neg": 0.0}
        if t_low is not None:
            z = self.latent(t_low)
            out.update(miss=float(norm.cdf(z - self.d)), cleared=float(norm.cdf(z)))
        if t_high is not None:
            z = self.latent(t_high)
            out.update(urgent_pos=float(norm.sf(z - self.d)), urgent_neg=float(norm.sf(z)))
        return out

    def sample(self, rng: np.random.Generator, labels: np.ndarray) -> np.ndarray:
        """Probabilities of studies with the given 0/1 labels."""
        z = rng.standard_normal(labels.size) + self.d * labels
        return self.probability(z)


#: The pool: the triage benchmark's three devices (2.75 = the latent gap from the routine
#: threshold to the positives' mean at ~600 calibration positives, one miss allowed).
DEVICES: tuple[Device, ...] = (
    Device("acme", d=2.75 + float(norm.ppf(0.578))),
    Device("borealis", d=2.75 + float(norm.ppf(0.546)), b=-2.8),
    Device("cygnus", d=2.75 + float(norm.ppf(0.679))),
)


def review_share(rates: dict[str, float], prevalence: float) -> float:
    """Share of a device's studies routed to review at `prevalence`."""
    routine = prevalence * rates["miss"] + (1 - prevalence) * rates["cleared"]
    urgent = prevalence * rates["urgent_pos"] + (1 - prevalence) * rates["urgent_neg"]
    return max(0.0, 1.0 - routine - urgent)
