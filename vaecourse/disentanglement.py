"""Disentanglement metrics against exactly known factors (chapter 14 (disentanglement)).

The inputs are ``codes`` (N, D), one real vector per image (the mean E_q[z | x] of the encoder,
as in the papers), and ``factors`` (N, K), the integer index of each of the K true factors of
that image (e.g. :mod:`vaecourse.data.factors`). Tensors and numpy arrays are both accepted.

* The mutual information gap (Chen et al. 2018). With I(z_j; v_k) the mutual information between
  code j and factor k, and j(k), j'(k) the codes with the largest and second largest of it,

      MIG = (1/K) sum_k [I(z_j(k); v_k) - I(z_j'(k); v_k)] / H(v_k),

  0 when no factor has one code of its own, 1 when each factor is read exactly off one code and
  off no other. The estimator is the one of the common reference implementation
  (disentanglement_lib): each code is cut into ``bins`` equal-width bins between its minimum and
  maximum (:func:`discretize`, a histogram of the mean codes), and I is the plug-in mutual
  information of the joint histogram of the binned code and the exact factor
  (``sklearn.metrics.mutual_info_score``), in nats, as is H(v_k) (``scipy.stats.entropy``). The
  binning caps what a code can carry: a factor with more values than ``bins`` cannot reach 1.
* DCI disentanglement and completeness (Eastwood and Williams 2018), from an importance matrix
  R (D, K): R_jk = |w_jk|, the absolute Lasso weight of code j in a linear regression of factor k
  on all codes, both standardized (:func:`importance_matrix`). Code j's disentanglement is
  D_j = 1 - H_K(R_j. / sum_k R_jk) (an entropy with base K, so 1 when the code matters for one
  factor only, 0 when for all equally), averaged with weights sum_k R_jk / sum_jk R_jk; factor
  k's completeness is C_k = 1 - H_D(R_.k / sum_j R_jk) (0 for a factor that no code predicts),
  averaged over the factors. The regressor is linear: a code that carries a factor non-linearly
  (a cyclic rotation, say) gets little importance; MIG, a histogram statistic, does not care.
"""

from __future__ import annotations

import numpy as np
import scipy.stats
import sklearn.linear_model
import sklearn.metrics
from torch import Tensor


def _as_matrix(name: str, a: Tensor | np.ndarray, integer: bool) -> np.ndarray:
    """``a`` as a 2-D numpy array with at least 2 rows; integers (indices) or finite reals."""
    if isinstance(a, Tensor):
        a = a.detach().cpu().numpy()
    a = np.asarray(a)
    if a.ndim != 2 or len(a) < 2:
        raise ValueError(f"{name} must have shape (N, columns) with N >= 2 rows, "
                         f"got shape {a.shape}")
    if integer and not np.issubdtype(a.dtype, np.integer):
        raise ValueError(f"{name} must hold integer indices, got dtype {a.dtype}")
    if not integer and not np.issubdtype(a.dtype, np.number):
        raise ValueError(f"{name} must hold real numbers, got dtype {a.dtype}")
    if not integer and not np.isfinite(a).all():
        raise ValueError(f"{name} must be finite, got {np.size(a) - np.isfinite(a).sum()} "
                         f"non-finite values")
    return a


def _check_pair(codes: Tensor | np.ndarray, factors: Tensor | np.ndarray, min_codes: int
                ) -> tuple[np.ndarray, np.ndarray]:
    """Check codes (N, D >= min_codes) and factors (N, K) with no constant factor."""
    codes = _as_matrix("codes", codes, integer=False)
    factors = _as_matrix("factors", factors, integer=True)
    if len(codes) != len(factors):
        raise ValueError(f"codes and factors must have the same number of rows, "
                         f"got {len(codes)} and {len(factors)}")
    if codes.shape[1] < min_codes:
        raise ValueError(f"codes must have at least {min_codes} columns, "
                         f"got shape {codes.shape}")
    constant = [k for k in range(factors.shape[1]) if (factors[:, k] == factors[0, k]).all()]
    if constant:
        raise ValueError(f"factors {constant} are constant (zero entropy): a metric normalized "
                         f"by a factor's entropy or spread needs every factor to vary")
    return codes, factors


def discretize(codes: Tensor | np.ndarray, bins: int = 20) -> np.ndarray:
    """Each code column cut into ``bins`` equal-width bins over its range: (N, D) ints in 1..bins.

    ``np.digitize`` on the edges of ``np.histogram(column, bins)`` (its last bin includes the
    maximum); a constant column falls in one bin.
    """
    if not isinstance(bins, int) or isinstance(bins, bool) or bins < 2:
        raise ValueError(f"bins must be an int >= 2, got {bins!r}")
    codes = _as_matrix("codes", codes, integer=False)
    return np.stack([np.digitize(c, np.histogram(c, bins)[1][:-1]) for c in codes.T], axis=1)


def entropies(factors: Tensor | np.ndarray) -> np.ndarray:
    """The empirical entropy H(v_k) in nats of each factor column: shape (K,)."""
    factors = _as_matrix("factors", factors, integer=True)
    return np.array([scipy.stats.entropy(np.unique(v, return_counts=True)[1])
                     for v in factors.T])


def mutual_information(discrete_codes: np.ndarray, factors: Tensor | np.ndarray) -> np.ndarray:
    """The plug-in I(z_j; v_k) in nats of every discretized code and factor: shape (D, K)."""
    discrete_codes = _as_matrix("discrete_codes", discrete_codes, integer=True)
    factors = _as_matrix("factors", factors, integer=True)
    if len(discrete_codes) != len(factors):
        raise ValueError(f"discrete_codes and factors must have the same number of rows, "
                         f"got {len(discrete_codes)} and {len(factors)}")
    return np.array([[sklearn.metrics.mutual_info_score(v, z) for v in factors.T]
                     for z in discrete_codes.T])


def mig_per_factor(codes: Tensor | np.ndarray, factors: Tensor | np.ndarray, bins: int = 20
                   ) -> np.ndarray:
    """Each factor's normalized gap [I(z_j(k); v_k) - I(z_j'(k); v_k)] / H(v_k): shape (K,)."""
    codes, factors = _check_pair(codes, factors, min_codes=2)
    mi = np.sort(mutual_information(discretize(codes, bins), factors), axis=0)  # ascending
    return (mi[-1] - mi[-2]) / entropies(factors)


def mig(codes: Tensor | np.ndarray, factors: Tensor | np.ndarray, bins: int = 20) -> float:
    """The mutual information gap (Chen et al. 2018): the mean of :func:`mig_per_factor`."""
    return float(mig_per_factor(codes, factors, bins).mean())


def importance_matrix(codes: Tensor | np.ndarray, factors: Tensor | np.ndarray,
                      alpha: float = 0.01) -> np.ndarray:
    """R (D, K): |Lasso weight| of each standardized code in predicting each standardized factor.

    ``alpha`` is sklearn's Lasso penalty (on standardized data, so it is scale-free); a constant
    code is left at 0 and gets weight 0. Coordinate descent runs to a tolerance of 1e-10, so that
    the weights do not depend on the order of the codes.
    """
    if not alpha > 0:
        raise ValueError(f"alpha must be > 0, got {alpha!r}")
    codes, factors = _check_pair(codes, factors, min_codes=1)
    spread = codes.std(0)
    z = (codes - codes.mean(0)) / np.where(spread > 0, spread, 1.0)
    v = (factors - factors.mean(0)) / factors.std(0)
    lasso = sklearn.linear_model.Lasso(alpha=alpha, tol=1e-10, max_iter=100_000).fit(z, v)
    return np.abs(lasso.coef_).T


def dci(codes: Tensor | np.ndarray, factors: Tensor | np.ndarray, alpha: float = 0.01
        ) -> dict[str, float]:
    """DCI ``disentanglement`` (importance-weighted mean of D_j) and mean ``completeness``.

    Needs K >= 2 factors and D >= 2 codes (entropies with base K and D); raises ValueError when no
    code predicts any factor (all importances 0).
    """
    r = importance_matrix(codes, factors, alpha)
    d, k = r.shape
    if k < 2 or d < 2:
        raise ValueError(f"DCI needs at least 2 codes and 2 factors, got {d} and {k}")
    if r.sum() == 0:
        raise ValueError("no code predicts any factor (all Lasso weights are 0): "
                         "DCI is undefined; lower alpha or check the codes")
    code_weight = r.sum(1) / r.sum()
    used = code_weight > 0
    per_code = 1 - scipy.stats.entropy(r[used].T, base=k)  # entropy of each row, normalized
    predicted = r.sum(0) > 0  # a factor that no code predicts has completeness 0
    per_factor = np.zeros(k)
    per_factor[predicted] = 1 - scipy.stats.entropy(r[:, predicted], base=d)  # per column
    return {"disentanglement": float((code_weight[used] * per_code).sum()),
            "completeness": float(per_factor.mean())}
