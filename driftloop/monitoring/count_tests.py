"""Two-sample tests on aligned value counts, as Evidently 0.7 computes them for drift.

Jensen-Shannon distance, chi-square and the two-proportion Z test; the module docstring of
``driftloop.monitoring.drift`` says which Evidently source each one follows.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np


def aligned_counts(
    reference: np.ndarray, current: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Counts of each distinct value on each side, aligned over the union (sorted keys)."""
    import numpy as np

    keys = np.union1d(reference, current)
    ref_counts = np.zeros(keys.size, dtype=np.float64)
    cur_counts = np.zeros(keys.size, dtype=np.float64)
    ref_keys, ref_n = np.unique(reference, return_counts=True)
    cur_keys, cur_n = np.unique(current, return_counts=True)
    ref_counts[np.searchsorted(keys, ref_keys)] = ref_n
    cur_counts[np.searchsorted(keys, cur_keys)] = cur_n
    return keys, ref_counts, cur_counts


def jensenshannon(ref_counts: np.ndarray, cur_counts: np.ndarray) -> float:
    """scipy.spatial.distance.jensenshannon(p, q) (natural log), in numpy.

    Written out so the large-sample path never imports scipy, whose import is slow.
    """
    import numpy as np

    p = ref_counts / ref_counts.sum()
    q = cur_counts / cur_counts.sum()
    m = (p + q) / 2.0
    with np.errstate(divide="ignore", invalid="ignore"):
        left = np.where(p > 0, p * np.log(p / m), 0.0)
        right = np.where(q > 0, q * np.log(q / m), 0.0)
    return float(np.sqrt(max(left.sum() + right.sum(), 0.0) / 2.0))


def chisquare_p_value(ref_counts: np.ndarray, cur_counts: np.ndarray) -> float:
    """Chi-square p-value of the current counts against the reference counts scaled to the
    current size."""
    import numpy as np
    from scipy.stats import chisquare

    f_exp = ref_counts * (cur_counts.sum() / ref_counts.sum())
    # A value seen only in current has expected 0: infinite statistic, p = 0, as in Evidently.
    with np.errstate(divide="ignore", invalid="ignore"):
        return float(chisquare(cur_counts, f_exp)[1])


def z_p_value(ref_counts: np.ndarray, cur_counts: np.ndarray, first: int) -> float:
    """Pooled two-sided Z test on the share of values other than the one at index `first`;
    1.0 when both sides hold the same single value."""
    import numpy as np
    from scipy.stats import norm

    n1, n2 = ref_counts.sum(), cur_counts.sum()
    if ref_counts.size == 1 or (
        np.count_nonzero(ref_counts) == 1
        and np.count_nonzero(cur_counts) == 1
        and np.argmax(ref_counts) == np.argmax(cur_counts)
    ):
        return 1.0
    p1 = (n1 - ref_counts[first]) / n1
    p2 = (n2 - cur_counts[first]) / n2
    pooled = (p1 * n1 + p2 * n2) / (n1 + n2)
    z = (p1 - p2) / math.sqrt(pooled * (1 - pooled) * (1.0 / n1 + 1.0 / n2))
    return float(2 * (1 - norm.cdf(abs(z))))
