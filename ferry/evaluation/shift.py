"""Domain shift between two samples of embeddings: MMD^2 with a permutation test.

Kernel: RBF with the median heuristic (bandwidth^2 = median pairwise squared distance / 2 over
the pooled sample). Statistic: the unbiased MMD^2 estimate. p-value: the share of label
permutations of the pooled sample whose MMD^2 is at least the observed one, (1 + #) / (1 + n),
so it is never 0 and is exact under the null of one distribution.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


@dataclass
class ShiftResult:
    mmd2: float
    p_value: float
    n_a: int
    n_b: int
    bandwidth: float
    permutations: int

    def as_dict(self) -> dict[str, float]:
        return {k: float(v) for k, v in asdict(self).items()}


def rbf_kernel(z: np.ndarray) -> tuple[np.ndarray, float]:
    """Kernel matrix of the pooled sample and the median-heuristic bandwidth."""
    sq = (z * z).sum(1)
    d2 = np.maximum(sq[:, None] + sq[None, :] - 2.0 * z @ z.T, 0.0)
    off = d2[~np.eye(len(z), dtype=bool)]
    sigma2 = max(float(np.median(off)) / 2.0, 1e-12)
    return np.exp(-d2 / (2.0 * sigma2)), float(np.sqrt(sigma2))


def mmd2_unbiased(k: np.ndarray, in_a: np.ndarray) -> float:
    """Unbiased MMD^2 from the pooled kernel matrix and a boolean mask of sample A."""
    in_b = ~in_a
    m, n = int(in_a.sum()), int(in_b.sum())
    kaa = k[np.ix_(in_a, in_a)]
    kbb = k[np.ix_(in_b, in_b)]
    kab = k[np.ix_(in_a, in_b)]
    return float((kaa.sum() - np.trace(kaa)) / (m * (m - 1))
                 + (kbb.sum() - np.trace(kbb)) / (n * (n - 1)) - 2.0 * kab.mean())


def mmd_test(a: np.ndarray, b: np.ndarray, permutations: int = 500, seed: int = 0) -> ShiftResult:
    """MMD^2 between samples ``a`` and ``b`` (rows = examples) and its permutation p-value."""
    if len(a) < 2 or len(b) < 2:
        raise ValueError(f"MMD needs at least 2 examples per sample, got {len(a)} and {len(b)}")
    z = np.concatenate([a, b]).astype(np.float64)
    k, bandwidth = rbf_kernel(z)
    mask = np.zeros(len(z), dtype=bool)
    mask[: len(a)] = True
    observed = mmd2_unbiased(k, mask)
    rng = np.random.default_rng(seed)
    exceed = sum(mmd2_unbiased(k, rng.permutation(mask)) >= observed for _ in range(permutations))
    return ShiftResult(observed, (1 + exceed) / (1 + permutations), len(a), len(b), bandwidth,
                       permutations)
