"""Uncertainty of a mean metric over queries, and whether one system beats another on the same queries.

* :func:`mean_ci` - the mean of per-query values with a 95% percentile-bootstrap interval over
  queries (resampling queries is what a different sample of the same kind of questions would do).
* :func:`paired_test` - two systems scored on the same queries: the mean per-query difference, its
  bootstrap interval, and a two-sided paired randomisation (sign-flip) test's p-value, the test
  Smucker et al. (CIKM 2007) recommend for IR metrics. Seeds of one system are averaged per query
  first, so the unit of analysis stays the query.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import stats


def mean_ci(values: Sequence[float], confidence: float = 0.95, resamples: int = 10_000,
            seed: int = 0) -> tuple[float, float, float]:
    """``(mean, low, high)``; the interval collapses to the mean when all values are equal."""
    x = np.asarray(values, dtype=float)
    if len(x) == 0:
        raise ValueError("mean_ci needs at least one value")
    if np.ptp(x) == 0:
        return float(x[0]), float(x[0]), float(x[0])
    ci = stats.bootstrap((x,), np.mean, confidence_level=confidence, n_resamples=resamples, method="percentile",
                         random_state=np.random.default_rng(seed)).confidence_interval
    return float(x.mean()), float(ci.low), float(ci.high)


def paired_test(a: Sequence[float], b: Sequence[float], resamples: int = 10_000, seed: int = 0) -> dict[str, float]:
    """Is ``a`` better than ``b`` on the same queries? Mean difference ``a - b``, its 95% interval, p-value."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"paired_test needs two equally long 1-d samples, got {a.shape} and {b.shape}")
    diff = a - b
    mean, low, high = mean_ci(diff, resamples=resamples, seed=seed)
    if not diff.any():
        return {"diff": 0.0, "low": 0.0, "high": 0.0, "p": 1.0, "n": len(diff)}
    test = stats.permutation_test((diff,), np.mean, permutation_type="samples", alternative="two-sided",
                                  n_resamples=resamples, random_state=np.random.default_rng(seed))
    return {"diff": mean, "low": low, "high": high, "p": float(test.pvalue), "n": len(diff)}
