"""Tests of vaecourse.disentanglement: MIG and DCI on hand-made codes with known answers."""

import itertools
import math

import numpy as np
import pytest
import scipy.stats
import torch

from vaecourse import disentanglement as D


def grid(*sizes: int) -> np.ndarray:
    """Every combination of factor values: (prod(sizes), K) ints (independent factors)."""
    return np.array(list(itertools.product(*(range(n) for n in sizes))))


def noisy_codes(factors: np.ndarray, seed: int = 0) -> np.ndarray:
    """Codes that carry each factor with noise, plus one pure-noise code: (N, K + 1)."""
    rng = np.random.default_rng(seed)
    signal = factors + 0.3 * rng.standard_normal(factors.shape)
    return np.concatenate([signal, rng.standard_normal((len(factors), 1))], axis=1)


def test_mutual_information_of_a_hand_computed_joint_histogram():
    # joint counts of (z, v): [[3, 1], [1, 3]] over 8 pairs, both marginals uniform
    z = np.array([0, 0, 0, 1, 0, 1, 1, 1])
    v = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    by_hand = 2 * 3 / 8 * math.log((3 / 8) / (1 / 4)) + 2 * 1 / 8 * math.log((1 / 8) / (1 / 4))
    mi = D.mutual_information(z[:, None], v[:, None])
    assert mi.shape == (1, 1)
    assert mi[0, 0] == pytest.approx(by_hand, abs=1e-12)
    # an asymmetric table: counts [[2, 0], [1, 1], [0, 2]] for z in 0..2 and v in 0..1
    z = np.array([0, 0, 1, 1, 2, 2])
    v = np.array([0, 0, 0, 1, 1, 1])
    p, pz, pv = np.array([[2, 0], [1, 1], [0, 2]]) / 6, np.array([2, 2, 2]) / 6, np.array([.5, .5])
    by_hand = sum(p[i, j] * math.log(p[i, j] / (pz[i] * pv[j]))
                  for i in range(3) for j in range(2) if p[i, j] > 0)
    assert D.mutual_information(z[:, None], v[:, None])[0, 0] == pytest.approx(by_hand, abs=1e-12)


def test_mutual_information_agrees_with_scipy_entropies():
    rng = np.random.default_rng(1)
    factors = rng.integers(0, 4, size=(2000, 2))
    codes = D.discretize(factors[:, :1] + rng.standard_normal((2000, 3)), bins=6)

    def h(*columns):
        return scipy.stats.entropy(np.unique(np.stack(columns, 1), axis=0, return_counts=True)[1])

    expected = np.array([[h(z) + h(v) - h(z, v) for v in factors.T] for z in codes.T])
    assert np.allclose(D.mutual_information(codes, factors), expected, atol=1e-12)
    assert np.allclose(D.entropies(factors), [h(v) for v in factors.T], atol=1e-12)
    # counts 1, 1, 2: H = -(2 * 1/4 log 1/4 + 1/2 log 1/2) = 1.5 log 2
    assert D.entropies(np.array([[0], [1], [2], [2]]))[0] == pytest.approx(1.5 * math.log(2))


def test_discretize_cuts_each_code_into_equal_bins():
    codes = np.array([[0.0, 5.0], [0.1, 5.0], [0.5, 5.0], [0.99, 5.0], [1.0, 5.0]])
    binned = D.discretize(codes, bins=2)
    assert binned[:, 0].tolist() == [1, 1, 2, 2, 2]  # edges 0, 0.5, 1; the maximum in bin 2
    assert len(set(binned[:, 1])) == 1  # a constant code falls in one bin


def test_perfectly_disentangled_codes_have_mig_one():
    factors = grid(3, 4, 5)
    v = factors.astype(float)
    codes = np.concatenate([v[:, [2]] + 0.1 * v[:, [2]] ** 2, -3.0 * v[:, [0]], v[:, [1]],
                            np.zeros((len(factors), 1))], axis=1)  # monotone maps, a dead code
    assert D.mig(codes, factors) == pytest.approx(1.0, abs=1e-12)
    assert np.allclose(D.mig_per_factor(codes, factors), 1.0, atol=1e-12)


def test_the_binning_caps_the_mutual_information():
    """With 2 bins a code splits a 4-valued factor in halves: I = log 2, H = log 4, gap 1/2."""
    factors = grid(4, 2)
    per_factor = D.mig_per_factor(factors.astype(float), factors, bins=2)
    assert per_factor == pytest.approx([0.5, 1.0], abs=1e-12)


def test_the_gap_is_to_the_second_best_code():
    """Factor 0 (4 values) is read off code 0 (I = log 4) and half of it off code 1 (I = log 2):
    gap (log 4 - log 2) / log 4 = 1/2; factor 1 has code 2 alone: gap 1; a dead code adds 0."""
    factors = grid(4, 3)
    codes = np.stack([factors[:, 0], factors[:, 0] // 2, factors[:, 1], np.zeros(12)], 1)
    assert D.mig_per_factor(codes.astype(float), factors) == pytest.approx([0.5, 1.0], abs=1e-12)
    assert D.mig(codes.astype(float), factors) == pytest.approx(0.75, abs=1e-12)


def test_entangled_codes_have_mig_zero():
    """Rotating two equal factors by 45 degrees gives each code the same information about each
    factor. (9 bins keep the integer-valued sums off the bin edges.)"""
    factors = grid(5, 5)
    rotated = np.stack([factors[:, 0] + factors[:, 1], factors[:, 0] - factors[:, 1]], 1)
    assert D.mig(rotated.astype(float), factors, bins=9) == pytest.approx(0.0, abs=1e-12)
    # rotating by less keeps some of the gap, and it shrinks as the angle grows
    values = [D.mig(factors @ np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]]),
                    factors) for a in np.deg2rad([0, 10, 25, 45])]
    assert values[0] == pytest.approx(1.0) and values[-1] == pytest.approx(0.0, abs=1e-12)
    assert values[0] > values[1] > values[2] > values[3]


def test_constant_codes_have_mig_zero():
    factors = grid(3, 4)
    assert D.mig(np.zeros((len(factors), 3)), factors) == 0.0
    assert D.mig_per_factor(np.ones((len(factors), 2)), factors).tolist() == [0.0, 0.0]


def test_mig_and_dci_ignore_the_order_scale_and_sign_of_codes():
    factors = grid(4, 5, 6)
    codes = noisy_codes(factors)
    changed = codes[:, [3, 1, 0, 2]] * np.array([2.0, -0.5, 10.0, -3.0]) + 7.0
    assert D.mig(changed, factors) == pytest.approx(D.mig(codes, factors), abs=1e-12)
    dci, dci_changed = D.dci(codes, factors), D.dci(changed, factors)
    for key in ("disentanglement", "completeness"):
        assert dci_changed[key] == pytest.approx(dci[key], abs=1e-9)
    assert 0.5 < D.mig(codes, factors) < 1  # noise lowers MIG, but it stays well above 0


def test_tensors_and_arrays_give_the_same_mig():
    factors = grid(3, 4)
    codes = noisy_codes(factors, seed=2)
    assert D.mig(torch.tensor(codes), torch.tensor(factors)) == D.mig(codes, factors)


def test_dci_of_perfectly_disentangled_and_of_rotated_codes():
    factors = grid(4, 4)
    scores = D.dci(factors * np.array([1.0, -2.0]), factors)
    assert scores["disentanglement"] == pytest.approx(1.0, abs=1e-9)
    assert scores["completeness"] == pytest.approx(1.0, abs=1e-9)
    rotated = np.stack([factors[:, 0] + factors[:, 1], factors[:, 0] - factors[:, 1]], 1)
    scores = D.dci(rotated.astype(float), factors)
    assert scores["disentanglement"] == pytest.approx(0.0, abs=1e-9)
    assert scores["completeness"] == pytest.approx(0.0, abs=1e-9)


def test_dci_averages_a_hand_made_importance_matrix(monkeypatch):
    """R = [[2, 0], [1, 1], [0, 1]] (3 codes, 2 factors). Codes 0 and 2 serve one factor each
    (D_j = 1), code 1 both equally (D_1 = 0); weights 2/5, 2/5, 1/5, so D = 3/5. Factor 0 is
    spread (2/3, 1/3, 0) over the codes, C_0 = 1 - H_3 = (2/3) log 2 / log 3; factor 1 is
    spread (0, 1/2, 1/2), C_1 = 1 - log 2 / log 3."""
    r = np.array([[2.0, 0.0], [1.0, 1.0], [0.0, 1.0]])
    monkeypatch.setattr(D, "importance_matrix", lambda *args: r)
    scores = D.dci(np.zeros((4, 3)), grid(2, 2))
    assert scores["disentanglement"] == pytest.approx(0.6, abs=1e-12)
    c = (2 / 3 * math.log(2) / math.log(3) + 1 - math.log(2) / math.log(3)) / 2
    assert scores["completeness"] == pytest.approx(c, abs=1e-12)


def test_importance_matrix_finds_the_code_of_each_factor():
    factors = grid(4, 5, 6)
    r = D.importance_matrix(noisy_codes(factors, seed=3), factors)
    assert r.shape == (4, 3)
    assert r.argmax(0).tolist() == [0, 1, 2]  # the noise code (3) is nobody's best


@pytest.mark.parametrize(("codes", "factors", "message"), [
    (np.zeros(12), grid(3, 4), r"codes must have shape \(N, columns\)"),
    (np.zeros((11, 2)), grid(3, 4), "same number of rows"),
    (np.zeros((12, 1)), grid(3, 4), "at least 2 columns"),
    (np.zeros((12, 2)), grid(3, 4).astype(float), "factors must hold integer indices"),
    (np.full((12, 2), np.nan), grid(3, 4), "codes must be finite, got 24 non-finite"),
    (np.full((12, 2), "a"), grid(3, 4), "codes must hold real numbers"),
    (np.zeros((12, 2)), np.stack([grid(3, 4)[:, 0], np.zeros(12, int)], 1), r"factors \[1\]"),
])
def test_mig_rejects_bad_inputs(codes, factors, message):
    with pytest.raises(ValueError, match=message):
        D.mig(codes, factors)


def test_bad_bins_and_alpha_and_undefined_dci_are_errors():
    factors = grid(3, 4)
    with pytest.raises(ValueError, match="bins must be an int >= 2"):
        D.mig(factors.astype(float), factors, bins=1)
    with pytest.raises(ValueError, match="alpha must be > 0"):
        D.dci(factors.astype(float), factors, alpha=0.0)
    with pytest.raises(ValueError, match="no code predicts any factor"):
        D.dci(np.zeros((12, 2)), factors)
    with pytest.raises(ValueError, match="at least 2 codes and 2 factors"):
        D.dci(factors[:, :1].astype(float), factors)
