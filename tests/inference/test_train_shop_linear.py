"""DecoderConfig(shop_linear=True): per-shop offsets recover effects that differ between shops, and travel through
evaluation, checkpoints and the influence diagnostics."""

from __future__ import annotations

import jax
import numpy as np
import pytest

import dice_prob as dp
from dice_prob.diagnostics.influence import ar_cig, cig
from dice_prob.errors import ConfigError, DataValidationError, InputTypeError
from dice_prob.inference.train import TrainedDecoder, evaluate_mse, train_decoder

D = 3
CFG = dp.DecoderConfig(
    hidden_size=4,
    message_size=3,
    embed_size=2,
    ar_lags=1,
    history=6,
    horizon=3,
    batch_size=64,
    max_epochs=4,
    patience=4,
    progress_bar=False,
)
GRAPH = np.array([[0.0, 0.0, 1.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]])  # x0 -> x2 (target); x1 unrelated


def _panel(signs, steps=160, seed=0, noise=0.2):
    """x0, x1 AR(1); x2(t) = 0.5 x2(t-1) + sign_s * 0.8 x0(t-1): the edge's effect flips sign between shops."""
    rng = np.random.default_rng(seed)
    signs = np.asarray(signs, dtype=float)
    x = np.zeros((signs.size, steps + 20, D))
    for t in range(1, steps + 20):
        x[:, t, 0] = 0.6 * x[:, t - 1, 0] + rng.normal(size=signs.size)
        x[:, t, 1] = 0.6 * x[:, t - 1, 1] + rng.normal(size=signs.size)
        x[:, t, 2] = 0.5 * x[:, t - 1, 2] + signs * 0.8 * x[:, t - 1, 0] + noise * rng.normal(size=signs.size)
    return dp.Panel(x[:, 20:])


@pytest.fixture(scope="module")
def flipped():
    panel = _panel([1, -1, 1, -1])
    pooled = train_decoder(jax.random.key(0), panel, graph=GRAPH, config=CFG, label="oracle")
    shop = train_decoder(
        jax.random.key(0), panel, graph=GRAPH, config=CFG.replace(shop_linear=True), label="oracle"
    )
    return panel, pooled, shop


def test_per_shop_offsets_recover_effects_of_opposite_sign(flipped):
    panel, pooled, shop = flipped
    assert pooled.shop_offsets is None and shop.shop_offsets.n_shops == 4
    sd = np.ravel(panel.scale_)  # the panel is standardised: the slope in standard units is 0.8 * sd_0 / sd_2
    truth = 0.8 * sd[0] / sd[2]
    for s, sign in enumerate([1, -1, 1, -1]):
        k = float(shop.for_shop(s).edge_kernel[0, 2, 0])
        assert abs(k - sign * truth) < 0.15, (s, k, sign * truth)
    # the pooled kernel averages the signs away
    assert abs(float(pooled.model.edge_kernel[0, 2, 0])) < 0.15
    # no offsets where the graph has no edge: exactly zero
    off = np.asarray(shop.shop_offsets.kernel)
    mask = np.ones((D, D), bool)
    mask[0, 2] = False
    assert np.all(off[:, mask] == 0.0)
    # the target's equation chose a finite penalty; its CV curve is recorded for every node
    pen = shop.history["shop_linear_penalty"]
    assert len(pen) == D and pen[2] is not None
    assert np.asarray(shop.history["shop_linear_cv_mse"]).shape == (
        D,
        1 + len(shop.history["shop_linear_grid"]),
    )
    mse_pooled = evaluate_mse(pooled, panel, GRAPH, horizon=3)["target"]
    mse_shop = evaluate_mse(shop, panel, GRAPH, horizon=3)["target"]
    assert mse_shop < 0.6 * mse_pooled, (mse_shop, mse_pooled)


def test_shops_that_agree_keep_the_pooled_equation():
    panel = _panel([1, 1, 1, 1], seed=1)
    dec = train_decoder(jax.random.key(0), panel, graph=GRAPH, config=CFG.replace(shop_linear=True))
    off = dec.shop_offsets
    # identical shops: cross-validation keeps no offsets or shrinks them hard
    assert float(np.abs(np.asarray(off.kernel)).max()) < 0.1
    assert float(np.abs(np.asarray(off.coef)).max()) < 0.1


def test_checkpoint_round_trip_keeps_the_offsets(flipped, tmp_path):
    panel, pooled, shop = flipped
    shop.save(tmp_path / "dec")
    back = TrainedDecoder.load(tmp_path / "dec")
    a = evaluate_mse(shop, panel, GRAPH, horizon=3)
    b = evaluate_mse(back, panel, GRAPH, horizon=3)
    assert a["target"] == b["target"] and a["all"] == b["all"]
    np.testing.assert_array_equal(np.asarray(back.shop_offsets.kernel), np.asarray(shop.shop_offsets.kernel))
    # overwriting with a pooled decoder leaves no stale offsets behind
    pooled.save(tmp_path / "dec")
    assert TrainedDecoder.load(tmp_path / "dec").shop_offsets is None
    shop.save(tmp_path / "dec2")
    (tmp_path / "dec2" / "shop_offsets.npz").unlink()
    with pytest.raises(DataValidationError, match="shop_offsets.npz"):
        TrainedDecoder.load(tmp_path / "dec2")


def test_rollout_by_shop_and_errors(flipped):
    panel, _, shop = flipped
    x = panel.scaled[1, :6]
    np.testing.assert_array_equal(
        np.asarray(shop.rollout(x, 3, GRAPH, shop=1)), np.asarray(shop.for_shop(1).rollout(x, 3, GRAPH))
    )
    np.testing.assert_array_equal(
        np.asarray(shop.rollout(x, 3, GRAPH)), np.asarray(shop.model.rollout(x, 3, GRAPH))
    )
    with pytest.raises(DataValidationError, match="shop"):
        shop.rollout(x, 3, GRAPH, shop=7)
    with pytest.raises(DataValidationError, match="shops"):
        evaluate_mse(shop, _panel([1, -1]), GRAPH, horizon=3)
    with pytest.raises(ConfigError, match="shop_linear"):
        dp.DecoderConfig(shop_linear="yes")


def test_influence_uses_each_windows_shop(flipped):
    panel, pooled, shop = flipped
    # a linear decoder (the kept warm start, network at zero output): the one-step influence of x0 on x2 is the
    # mean over windows of |its shop's lag-1 coefficient|, so offsets of opposite sign do not cancel
    assert shop.history["best_epoch"] == -1
    score = cig(shop, panel, GRAPH, n_windows=None, method="jvp")[0]
    k = np.abs([float(shop.for_shop(s).edge_kernel[0, 2, 0]) for s in range(4)])
    from dice_prob.data.windows import forecast_windows

    w = forecast_windows(panel.scaled, history=6, horizon=1, split="test")
    np.testing.assert_allclose(score[0, 2], k[w.shop].mean(), rtol=1e-4)
    assert score[1, 2] == 0.0 and score[0, 1] == 0.0  # no edge, no influence
    ar = ar_cig(shop, panel, GRAPH, n_windows=8, horizon=3)[0]
    assert ar[1, 0] == 0.0 and ar[2, 0] == 0.0 and ar[1, 2] == 0.0
    with pytest.raises(InputTypeError, match="per-shop"):
        cig(shop, panel.scaled[0, :6][None], GRAPH)
