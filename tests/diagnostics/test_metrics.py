"""Metrics against sklearn and hand computations; edge cases raise MetricError."""

from __future__ import annotations

import time

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from dice_prob.diagnostics.metrics import (
    auprc,
    auroc,
    calibration_table,
    expected_calibration_error,
    mse_at_h,
    nauprc,
    shd,
)
from dice_prob.errors import InputTypeError, MetricError
from dice_prob.graph import support_mask_from_roles

ROLES = ["channel"] * 5 + ["intermediate"] * 2 + ["target"]


def _graph(rng, d=8, p=0.3, mask=None):
    while True:
        g = (rng.random((d, d)) < p).astype(float)
        np.fill_diagonal(g, 0)
        if mask is not None:
            g = g * mask
        m = ~np.eye(d, dtype=bool) if mask is None else mask
        if 0 < g[m].sum() < m.sum():
            return g


@pytest.mark.parametrize("ties", [False, True])
def test_against_sklearn_batched(ties):
    rng = np.random.default_rng(0)
    mask = support_mask_from_roles(ROLES)
    truth = _graph(rng, mask=mask)
    scores = rng.random((3, 4, 8, 8))
    if ties:
        scores = np.round(scores, 1)  # many ties
    a, p, n = auroc(scores, truth, mask), auprc(scores, truth, mask), nauprc(scores, truth, mask)
    assert a.shape == p.shape == n.shape == (3, 4)
    y = truth[mask]
    pos = y.mean()
    for i in range(3):
        for j in range(4):
            s = scores[i, j][mask]
            assert a[i, j] == pytest.approx(roc_auc_score(y, s), abs=1e-12)
            assert p[i, j] == pytest.approx(average_precision_score(y, s), abs=1e-12)
            assert n[i, j] == pytest.approx((average_precision_score(y, s) - pos) / (1 - pos), abs=1e-12)


def test_per_batch_truth_and_default_mask():
    rng = np.random.default_rng(1)
    truths = np.stack([_graph(rng) for _ in range(5)])
    scores = rng.random((5, 8, 8))
    a = auroc(scores, truths)
    off = ~np.eye(8, dtype=bool)
    for k in range(5):
        assert a[k] == pytest.approx(roc_auc_score(truths[k][off], scores[k][off]))
        assert auprc(scores[k], truths[k]) == pytest.approx(
            average_precision_score(truths[k][off], scores[k][off])
        )
    # the diagonal is never scored
    s2 = scores.copy()
    s2[:, np.arange(8), np.arange(8)] = 99.0
    np.testing.assert_allclose(auroc(s2, truths), a)


def test_perfect_and_inverted():
    rng = np.random.default_rng(2)
    truth = _graph(rng)
    perfect = truth + 0.1 * rng.random((8, 8))
    assert auroc(perfect, truth) == 1.0
    assert auprc(perfect, truth) == pytest.approx(1.0)
    assert nauprc(perfect, truth) == pytest.approx(1.0)
    inverted = -perfect
    assert auroc(inverted, truth) == 0.0
    assert nauprc(inverted, truth) < 0
    assert isinstance(auroc(perfect, truth), float)


def _expected_random_ap(n, k):
    """Exact E[AP] of a uniformly random ranking of n items with k positives."""
    h = np.sum(1.0 / np.arange(1, n + 1))
    return (h + (k - 1) / (n - 1) * (n - h)) / n


def test_random_scores_near_chance():
    rng = np.random.default_rng(3)
    mask = support_mask_from_roles(ROLES)
    truth = _graph(rng, mask=mask)
    scores = rng.random((4000, 8, 8))
    a = auroc(scores, truth, mask)
    n = nauprc(scores, truth, mask)
    # AUROC of random scores is 0.5 in expectation; standard error over 4000 draws ~0.0045
    assert abs(a.mean() - 0.5) < 0.015
    # nAUPRC: AP of a random ranking exceeds p by O(log(n)/n); compare with the exact expectation
    n_pairs, k = int(mask.sum()), int(truth[mask].sum())
    p = k / n_pairs
    expected = (_expected_random_ap(n_pairs, k) - p) / (1 - p)
    assert abs(n.mean() - expected) < 0.015
    # with many pairs the chance level is ~0
    d = 30
    big = _graph(rng, d=d, p=0.2)
    nb = nauprc(rng.random((300, d, d)), big)
    assert abs(nb.mean()) < 0.02


def test_errors():
    truth = np.zeros((4, 4))
    with pytest.raises(MetricError, match="no positive"):
        auroc(np.random.default_rng(0).random((4, 4)), truth)
    full = 1 - np.eye(4)
    with pytest.raises(MetricError, match="no negative"):
        auprc(np.ones((4, 4)), full)
    t = np.zeros((4, 4))
    t[0, 1] = 1
    with pytest.raises(MetricError, match="truth"):
        auroc(np.ones((4, 4)), np.ones((3, 3)))
    with pytest.raises(MetricError, match="binary"):
        auroc(np.ones((4, 4)), t * 0.5)
    with pytest.raises(MetricError, match="NaN"):
        auroc(np.full((4, 4), np.nan), t)
    with pytest.raises(MetricError, match="mask"):
        auroc(np.ones((4, 4)), t, mask=np.ones((3, 3), bool))
    with pytest.raises(MetricError, match="mask"):
        auroc(np.ones((4, 4)), t, mask=np.zeros((4, 4), bool))
    with pytest.raises(MetricError, match="batch entry 1"):
        auroc(np.ones((2, 4, 4)), np.stack([t, np.zeros((4, 4))]))
    with pytest.raises(InputTypeError, match="scores"):
        auroc("abc", t)
    # a mask that leaves only negatives
    m = np.zeros((4, 4), bool)
    m[2, 3] = True
    with pytest.raises(MetricError, match="no positive"):
        nauprc(np.ones((4, 4)), t, mask=m)


def test_shd():
    truth = np.array([[0, 1, 0], [0, 0, 1], [0, 0, 0]])
    assert shd(truth, truth) == 0
    assert shd(truth.T, truth) == 4  # two reversed edges, each counts twice
    pred = np.stack([truth, np.zeros((3, 3)), np.ones((3, 3))])
    np.testing.assert_array_equal(shd(pred, truth), [0, 2, 4])
    mask = np.zeros((3, 3), bool)
    mask[0, 1] = True
    assert shd(np.zeros((3, 3)), truth, mask=mask) == 1
    with pytest.raises(MetricError, match="binary"):
        shd(truth * 0.7, truth)


def test_calibration_perfect_and_biased():
    rng = np.random.default_rng(4)
    probs = rng.random((1000, 8, 8))
    truth = (rng.random((1000, 8, 8)) < probs).astype(float)
    truth[:, np.arange(8), np.arange(8)] = 0
    ece = expected_calibration_error(probs, truth)
    assert ece < 0.02  # perfectly calibrated; sampling noise over 56000 pairs in 10 bins
    biased = np.clip(probs + 0.3, 0, 1)
    assert expected_calibration_error(biased, truth) > 0.2
    tab = calibration_table(probs, truth, n_bins=5)
    assert list(tab.columns) == ["bin", "lower", "upper", "count", "mean_prob", "frac_positive", "gap"]
    assert tab["count"].sum() == 1000 * 56
    np.testing.assert_allclose(tab["mean_prob"], [0.1, 0.3, 0.5, 0.7, 0.9], atol=0.01)
    np.testing.assert_allclose(tab["frac_positive"], tab["mean_prob"], atol=0.03)


def test_calibration_by_hand_and_errors():
    probs = np.array([[0, 0.2, 0.95], [0.4, 0, 1.0], [0.0, 0.6, 0]])
    truth = np.array([[0, 0, 1], [1, 0, 1], [0, 0, 0]])
    # bins of width 0.5: [0.2, 0.4, 0.0] -> mean 0.2, frac 1/3 ; [0.95, 1.0, 0.6] -> mean 0.85, frac 2/3
    expected = 0.5 * abs(0.2 - 1 / 3) + 0.5 * abs(0.85 - 2 / 3)
    assert expected_calibration_error(probs, truth, n_bins=2) == pytest.approx(expected)
    tab = calibration_table(probs, truth, n_bins=4)
    assert tab["count"].tolist() == [2.0, 1.0, 1.0, 2.0]
    empty = calibration_table(probs, truth, n_bins=10)
    assert np.isnan(empty.loc[empty["count"] == 0, "mean_prob"]).all()
    with pytest.raises(MetricError, match="probs"):
        expected_calibration_error(probs * 2, truth)
    with pytest.raises(MetricError, match="n_bins"):
        expected_calibration_error(probs, truth, n_bins=0)


def test_mse_at_h():
    rng = np.random.default_rng(5)
    f = rng.normal(size=(4, 6, 7, 3))  # graphs x windows x H x d
    y = rng.normal(size=(6, 7, 3))
    m = mse_at_h(f, y)
    assert m.shape == (4,)
    for g in range(4):
        assert m[g] == pytest.approx(
            np.mean([(f[g, w, h, k] - y[w, h, k]) ** 2 for w in range(6) for h in range(7) for k in range(3)])
        )
    mt = mse_at_h(f[0], y, node=-1)
    assert isinstance(mt, float)
    assert mt == pytest.approx(((f[0, :, :, 2] - y[:, :, 2]) ** 2).mean())
    assert mse_at_h(np.zeros((7, 2)), np.ones((7, 2))) == 1.0
    with pytest.raises(MetricError, match="future"):
        mse_at_h(f, y[:, :5])
    with pytest.raises(MetricError, match="node"):
        mse_at_h(f, y, node=3)
    with pytest.raises(InputTypeError, match="node"):
        mse_at_h(f, y, node="target")
    with pytest.raises(MetricError, match="NaN"):
        mse_at_h(np.full((2, 7, 3), np.nan), y[:2])


def test_speed_200_graphs():
    rng = np.random.default_rng(6)
    mask = support_mask_from_roles(["channel"] * 6 + ["intermediate"] * 3 + ["target"])
    truth = _graph(rng, d=10, mask=mask)
    scores = rng.random((200, 10, 10))
    auroc(scores, truth, mask)
    t0 = time.perf_counter()
    auroc(scores, truth, mask)
    auprc(scores, truth, mask)
    nauprc(scores, truth, mask)
    assert time.perf_counter() - t0 < 0.5
