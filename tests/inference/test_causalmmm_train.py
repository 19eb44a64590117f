"""Tests of the CausalMMM trainer: protocol, metrics, determinism and that it learns an easy funnel."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from dice_prob.data.panel import Panel
from dice_prob.errors import DataValidationError, GraphValidationError, InputTypeError
from dice_prob.inference.causalmmm_train import (
    CausalMMMResult,
    causalmmm_auroc,
    causalmmm_inputs,
    fit_causalmmm,
    split_shops,
)
from dice_prob.models.causalmmm import CausalMMMConfig, CausalMMMDecoder, causalmmm_loss

TINY = CausalMMMConfig(
    encoder_hidden=8,
    decoder_hidden=8,
    pred_steps=4,
    epochs=3,
    batch_size=4,
    lr_decay_step=1,
    progress_bar=False,
)


def _lag_funnel(
    seed, n_shops, n_steps, *, n_lags=2, root_ar=0.0, n_templates=None, positive=False, shared_weights=False
):
    """5 root channels -> 2 intermediates -> target with 2 random parents each, linear lags 2..n_lags+1.

    ``n_templates``: shops cycle through that many random graphs (None: a fresh graph per shop).
    ``positive``: all effects positive (else random signs). ``shared_weights``: the lag weights are drawn once per
    graph template and shared by its shops (as in CausalMMM's release); else fresh weights for every shop.
    """
    rng = np.random.default_rng(seed)
    d = 8
    n_graphs = n_shops if n_templates is None else n_templates
    templates = np.zeros((n_graphs, d, d))
    for g in range(n_graphs):
        for dst, pool in ((5, range(5)), (6, range(5)), (7, range(7))):
            templates[g, rng.choice(list(pool), size=2, replace=False), dst] = 1
    graphs = templates[np.arange(n_shops) % n_graphs]
    burn = 20
    x = np.zeros((n_shops, n_steps + burn, d))

    def draw_weights(graph):
        sign = 1.0 if positive else rng.choice([-1, 1], size=(d, d, 1))
        return rng.uniform(0.5, 1.0, size=(d, d, n_lags)) * sign * graph[..., None]

    shared = [draw_weights(g) for g in templates] if shared_weights else None
    for r in range(n_shops):
        w = shared[r % n_graphs] if shared_weights else draw_weights(graphs[r])
        for t in range(n_steps + burn):
            for i in range(d):
                v = rng.normal()
                if i < 5:
                    v += root_ar * x[r, t - 1, i] if t else 0.0
                else:
                    v *= 0.1
                    for lag in range(n_lags):
                        if t - lag - 2 >= 0:
                            v += x[r, t - lag - 2] @ w[:, i, lag] / np.sqrt(2 * n_lags)
                x[r, t, i] = v
    roles = ["channel"] * 5 + ["intermediate"] * 2 + ["target"]
    return Panel(x[:, burn:], roles=roles, context=rng.uniform(size=(n_shops, 2))), graphs


@pytest.fixture(scope="module")
def small_fit():
    panel, graphs = _lag_funnel(0, 10, 20)
    res = fit_causalmmm(jax.random.key(0), panel, config=TINY, truth=graphs)
    return panel, graphs, res


def test_fit_result_shapes_and_protocol(small_fit):
    panel, graphs, res = small_fit
    assert isinstance(res, CausalMMMResult)
    assert res.edge_scores.shape == (10, 8, 8)
    assert np.all(np.diagonal(res.edge_scores, axis1=1, axis2=2) == 0)
    assert np.all((res.edge_scores >= 0) & (res.edge_scores <= 1))
    for k in ("epoch", "loss", "nll", "kl", "val_loss", "lr", "seconds", "train_auroc", "val_auroc", "auroc"):
        assert len(res.history[k]) == 3, k
    assert np.all(np.isfinite(res.history["loss"])) and np.all(np.isfinite(res.history["val_loss"]))
    # random 80/20 shop split, disjoint and complete
    assert len(res.train_shops) == 8 and len(res.val_shops) == 2
    assert sorted(np.concatenate([res.train_shops, res.val_shops]).tolist()) == list(range(10))
    # best-validation checkpoint
    assert res.best_epoch == int(np.argmin(res.history["val_loss"])) + 1
    # StepLR with step 1 and gamma 0.5, stepped per epoch
    np.testing.assert_allclose(res.history["lr"], [5e-4, 2.5e-4, 1.25e-4])
    # the stored scores are the evaluation-mode scores of the stored model
    np.testing.assert_allclose(
        np.asarray(res.model.edge_scores(causalmmm_inputs(panel, TINY)[0])),
        res.edge_scores,
        rtol=1e-5,
        atol=1e-6,
    )
    assert res.final20_auroc() == pytest.approx(np.mean(res.history["auroc"]))
    assert res.nodes == panel.nodes and res.target_index == 7


def test_fit_is_deterministic(small_fit):
    panel, graphs, res = small_fit
    res2 = fit_causalmmm(jax.random.key(0), panel, config=TINY, truth=graphs)
    np.testing.assert_array_equal(res.edge_scores, res2.edge_scores)
    assert res.history["loss"] == res2.history["loss"]


def test_forecast_and_mse_at_7(small_fit):
    panel, _, res = small_fit
    fc = res.forecast(jax.random.key(1))
    assert fc.shape == (10, 7, 8)
    m = res.mse_at_h(jax.random.key(1))
    x = panel.scaled
    np.testing.assert_allclose(m["target"], np.mean((fc[..., -1] - x[:, -7:, -1]) ** 2), rtol=1e-5)
    np.testing.assert_allclose(m["all_nodes"], np.mean((fc - x[:, -7:]) ** 2), rtol=1e-5)
    # same key -> same numbers; stochastic edges -> another key usually differs
    np.testing.assert_array_equal(fc, res.forecast(jax.random.key(1)))
    dec = res.decoder
    assert isinstance(dec, CausalMMMDecoder) and dec.uses_graph
    out = dec.rollout(
        x[0, :13].astype(np.float32), 7, np.ones((8, 8)) - np.eye(8), causalmmm_inputs(panel, TINY)[1][0]
    )
    assert out.shape == (7, 8) and np.all(np.isfinite(np.asarray(out)))


def test_input_validation():
    panel, graphs = _lag_funnel(1, 3, 20)
    roles = list(panel.roles)
    bad = Panel(panel.values[:, :, ::-1], roles=roles[::-1])
    with pytest.raises(DataValidationError, match="last"):
        fit_causalmmm(jax.random.key(0), bad, config=TINY)
    with pytest.raises(GraphValidationError, match="truth"):
        fit_causalmmm(jax.random.key(0), panel, config=TINY, truth=np.zeros((3, 7, 7)))
    with pytest.raises(InputTypeError):
        fit_causalmmm(jax.random.key(0), panel.values, config=TINY)
    with pytest.raises(DataValidationError, match="pred_steps"):
        fit_causalmmm(jax.random.key(0), Panel(panel.values[:, :5]), config=TINY)


def test_inputs_context_handling():
    panel, _ = _lag_funnel(2, 3, 20)
    x, ctx = causalmmm_inputs(panel, TINY)
    np.testing.assert_allclose(x, panel.scaled, rtol=1e-6)
    assert ctx.min() == 0.0 and ctx.max() == 1.0
    no_ctx = Panel(panel.values, roles=panel.roles)
    assert np.all(causalmmm_inputs(no_ctx, TINY)[1] == 0) and causalmmm_inputs(no_ctx, TINY)[1].shape == (
        3,
        1,
    )
    raw_x, raw_ctx = causalmmm_inputs(panel, TINY.replace(standardize=False))
    np.testing.assert_allclose(raw_x, panel.values, rtol=1e-6)
    np.testing.assert_allclose(raw_ctx, panel.context, rtol=1e-6)


def test_split_shops():
    tr, va = split_shops(jax.random.key(3), 300)
    assert len(tr) == 240 and len(va) == 60 and not set(tr) & set(va)
    tr, va = split_shops(jax.random.key(3), 4)
    assert len(tr) == 4 and len(va) == 0  # too few shops: no validation
    tr, va = split_shops(jax.random.key(3), 10, validate=False)
    assert len(va) == 0


def test_causalmmm_auroc_matches_sklearn_per_shop():
    rng = np.random.default_rng(5)
    scores = rng.uniform(size=(4, 6, 6))
    scores[0, 0, 1] = scores[0, 2, 3]  # a tie
    truth = (rng.uniform(size=(4, 6, 6)) < 0.3).astype(float)
    truth[:, np.arange(6), np.arange(6)] = 0
    off = ~np.eye(6, dtype=bool)
    ref = [roc_auc_score(truth[s][off], scores[s][off]) for s in range(4)]
    np.testing.assert_allclose(causalmmm_auroc(scores, truth), ref, rtol=1e-12)
    # undefined shop -> NaN
    truth[1] = 0
    assert np.isnan(causalmmm_auroc(scores, truth)[1])


def test_gradient_reaches_encoder_and_decoder(small_fit):
    """The loss is differentiable end to end: through the Gumbel sample into the encoder, and into the decoder."""
    panel, _, res = small_fit
    x, ctx = (jnp.asarray(a) for a in causalmmm_inputs(panel, TINY))

    @eqx.filter_jit
    @eqx.filter_grad
    def grads(model):
        out = model(jax.random.key(0), x[:4], ctx[:4], train=True)
        return causalmmm_loss(out.pred, x[:4, 1:], out.probs)[0]

    g = grads(res.model)
    for name, leaf in (
        ("encoder.mlp1.w1", g.encoder.mlp1.w1),
        ("encoder.w_out", g.encoder.w_out),
        ("decoder.msg_w1", g.decoder.msg_w1),
        ("decoder.alpha_w", g.decoder.alpha_w),
        ("decoder.out_w3", g.decoder.out_w3),
    ):
        a = np.asarray(leaf)
        assert np.all(np.isfinite(a)) and np.abs(a).max() > 0, name


@pytest.mark.slow
@pytest.mark.parametrize("leak_free", [False, True], ids=["faithful", "leak_free"])
def test_learns_easy_linear_funnel(leak_free):
    """Short run on an easy linear funnel: Final-20 AUROC (CausalMMM convention) above 0.8, both variants.

    The funnel suits what the decoder can represent: one shared graph and shared positive lag-2 weights (a
    message is weighted by a soft sample in [0, 1] and the message function is shared by all pairs, so
    parents of opposite or shop-varying sign cannot all be used; lag 1 is out of the decoder's reach, see
    dice_prob.models.causalmmm). Deviations from the original's settings, for a short run: H = 32, lr 5e-3 and
    ``kl_weight = 1e6``. With the original's lambda = 100 the uniform-prior KL is inert and Adam saturates the
    edge logits within a few dozen steps, before the decoder's message path carries information, so the
    Gumbel-softmax gradient vanishes and the encoder freezes on a random graph (AUROC ~0.5; see the model's
    module docstring). Every shop trains (``validate=False``), so this is the training-shop AUROC the original
    logs; the amortised encoder barely generalises to unseen shops at this size.
    """
    panel, graphs = _lag_funnel(0, 16, 50, n_lags=1, n_templates=1, positive=True, shared_weights=True)
    cfg = CausalMMMConfig(
        encoder_hidden=32,
        decoder_hidden=32,
        epochs=80,
        batch_size=4,
        learning_rate=5e-3,
        kl_weight=1e6,
        validate=False,
        leak_free=leak_free,
        progress_bar=False,
    )
    res = fit_causalmmm(jax.random.key(0), panel, config=cfg, truth=graphs)
    nll = np.asarray(res.history["nll"])
    assert nll[-10:].mean() < 0.9 * nll[:3].mean()  # the fit improves well beyond "predict the mean"
    assert res.final20_auroc() > 0.8
