"""Tests of the CausalMMM port's model code against hand computations and PyTorch semantics."""

from __future__ import annotations

import dataclasses
import functools

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dice_prob.errors import ConfigError, GraphValidationError
from dice_prob.models.causalmmm import (
    BatchNorm,
    CausalMMM,
    CausalMMMConfig,
    CausalMMMDecoder,
    CREncoder,
    MRDecoderS,
    adjacency_to_edge_vector,
    causalmmm_loss,
    edge_index,
    edge_scores_from_logits,
    edge_vector_to_adjacency,
    gumbel_softmax,
    kl_uniform,
    trainable_filter,
    update_running_stats,
)

SMALL = CausalMMMConfig(encoder_hidden=16, decoder_hidden=16, pred_steps=4)

# jitted wrappers: eager op-by-op dispatch is slow on a busy CPU
_enc_train = eqx.filter_jit(lambda enc, x: enc(x, train=True, per_group=True))
_update = eqx.filter_jit(update_running_stats)
_encode = eqx.filter_jit(lambda m, x, train: m.encode(x, train=train))
_rollout = eqx.filter_jit(lambda dec, x, w, c, sw: dec.rollout(x, w, c, switch_step=sw))
_scores = eqx.filter_jit(lambda m, x: m.edge_scores(x))


@functools.cache
def _model(cfg: CausalMMMConfig, context_size: int) -> CausalMMM:
    return CausalMMM(4, 14, context_size=context_size, config=cfg, key=jax.random.key(0))


def _new_model(key, cfg, context_size):
    del key  # one cached model per (config, context size); every test uses key 0
    return _model(cfg, context_size)


@pytest.fixture(scope="module")
def small_model():
    return _new_model(jax.random.key(0), SMALL, 2)


def _series(key, b=3, t=14, n=4):
    return jax.random.normal(jax.random.key(key), (b, t, n))


# ------------------------------------------------------------------------------------------- config
def test_config_defaults_follow_reference_and_round_trip():
    c = CausalMMMConfig()
    assert (c.encoder_hidden, c.decoder_hidden, c.edge_types, c.pred_steps) == (256, 256, 2, 10)
    assert (c.tau, c.kl_weight, c.nll_var, c.learning_rate) == (0.5, 100.0, 5e-7, 5e-4)
    assert (c.lr_decay_step, c.lr_decay_gamma, c.bn_momentum, c.bn_eps) == (200, 0.5, 0.1, 1e-5)
    assert (c.encoder_dropout, c.decoder_dropout, c.val_fraction) == (0.0, 0.0, 0.2)
    assert CausalMMMConfig.from_dict(c.to_dict()) == c
    assert CausalMMMConfig.from_json(c.replace(leak_free=True).to_json()).leak_free
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.tau = 1.0  # type: ignore[misc]


@pytest.mark.parametrize(
    "bad",
    [
        {"tau": 0.0},
        {"edge_types": 1},
        {"batch_size": 0},
        {"encoder_dropout": 1.0},
        {"batchnorm": "layer"},
        {"val_fraction": 0.95},
        {"leak_free": 1},
        {"nll_var": -1.0},
    ],
)
def test_config_rejects_bad_values(bad):
    with pytest.raises(ConfigError, match=next(iter(bad))):
        CausalMMMConfig(**bad)


def test_config_from_dict_rejects_unknown_keys():
    with pytest.raises(ConfigError, match="unknown"):
        CausalMMMConfig.from_dict({"hidden": 3})


# ---------------------------------------------------------------------------------------- edge order
def test_edge_index_matches_reference_examples():
    recv, send = edge_index(8)
    assert recv.shape == (56,)
    # (sender, receiver) of edges 0, 6, 7, 55 (reference §2): 1->0, 7->0, 0->1, 6->7
    assert [(int(send[k]), int(recv[k])) for k in (0, 6, 7, 55)] == [(1, 0), (7, 0), (0, 1), (6, 7)]
    # the decoding rule of the reference, for every k
    for k in range(56):
        i, r = divmod(k, 7)
        j = r + 1 if r >= i else r
        assert (recv[k], send[k]) == (i, j)


def test_edge_vector_adjacency_round_trip():
    rng = np.random.default_rng(0)
    e = rng.integers(0, 2, size=(5, 56)).astype(float)
    a = edge_vector_to_adjacency(e)
    assert a.shape == (5, 8, 8)
    assert np.all(np.diagonal(a, axis1=1, axis2=2) == 0)
    np.testing.assert_array_equal(adjacency_to_edge_vector(a), e)
    # A[src, dst]: edge k = (row i receiver, column j sender) is A[j, i]
    recv, send = edge_index(8)
    for k in range(56):
        assert a[0, send[k], recv[k]] == e[0, k]
    with pytest.raises(GraphValidationError):
        edge_vector_to_adjacency(np.zeros(7))


def test_edge_conversion_consistent_with_io():
    io = pytest.importorskip("dice_prob.data.io")
    rng = np.random.default_rng(1)
    e = rng.integers(0, 2, size=(4, 56)).astype(float)
    np.testing.assert_array_equal(edge_vector_to_adjacency(e, 8), io.edges_to_adjacency(e, 8))
    np.testing.assert_array_equal(adjacency_to_edge_vector(io.edges_to_adjacency(e, 8)), e)
    r1, s1 = edge_index(8)
    r2, s2 = io.causalmmm_edge_index(8)
    np.testing.assert_array_equal(r1, r2)
    np.testing.assert_array_equal(s1, s2)
    # edge scores from logits land where io puts the edge values
    logits = jnp.asarray(rng.normal(size=(4, 56, 2)), jnp.float32)
    q_edge = 1.0 - np.asarray(jax.nn.softmax(logits, -1))[..., 0]
    np.testing.assert_allclose(
        np.asarray(edge_scores_from_logits(logits, 8)), io.edges_to_adjacency(q_edge, 8), rtol=1e-6
    )


def test_edge_scores_are_one_minus_p_no_edge_with_zero_diagonal():
    logits = jnp.array(np.random.default_rng(2).normal(size=(2, 12, 2)), jnp.float32)
    s = np.asarray(edge_scores_from_logits(logits, 4))
    assert s.shape == (2, 4, 4)
    assert np.all(np.diagonal(s, axis1=1, axis2=2) == 0.0)
    recv, send = edge_index(4)
    lg = np.asarray(logits)
    expect = 1.0 - np.exp(lg[..., 0]) / np.exp(lg).sum(-1)
    np.testing.assert_allclose(s[:, send, recv], expect, rtol=1e-5)


# ---------------------------------------------------------------------------------------- loss / KL
def test_loss_matches_hand_computation():
    rng = np.random.default_rng(3)
    b, t, n = 2, 5, 3
    e = n * (n - 1)
    pred = rng.normal(size=(b, t - 1, n)).astype(np.float32) * 1e-3
    target = rng.normal(size=(b, t - 1, n)).astype(np.float32) * 1e-3
    logits = rng.normal(size=(b, e, 2)).astype(np.float32)
    q = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    nll_np = np.sum((pred.astype(np.float64) - target) ** 2 / (2 * 5e-7)) / (b * n)
    kl_np = np.sum(q * np.log(q + 1e-16)) / (n * b)
    total, nll, kl = causalmmm_loss(
        jnp.asarray(pred), jnp.asarray(target), jax.nn.softmax(jnp.asarray(logits), -1)
    )
    np.testing.assert_allclose(float(nll), nll_np, rtol=1e-5)
    np.testing.assert_allclose(float(kl), kl_np, rtol=1e-5)
    np.testing.assert_allclose(float(total), nll_np + 100.0 * kl_np, rtol=1e-5)
    # KL at q = 1/2 everywhere: E * K * 0.5 * log(0.5) / N per shop
    np.testing.assert_allclose(
        float(kl_uniform(jnp.full((1, 56, 2), 0.5), 8)), 56 * np.log(0.5) / 8, rtol=1e-6
    )


def test_gumbel_softmax_formula():
    logits = jnp.array([[0.3, -1.2], [2.0, 0.5]])
    key = jax.random.key(7)
    u = np.asarray(jax.random.uniform(key, logits.shape), np.float64)
    g = -np.log(1e-10 - np.log(u + 1e-10))
    z = (np.asarray(logits) + g) / 0.5
    expect = np.exp(z) / np.exp(z).sum(-1, keepdims=True)
    np.testing.assert_allclose(np.asarray(gumbel_softmax(key, logits, 0.5)), expect, rtol=1e-5)


# ---------------------------------------------------------------------------------------- BatchNorm
def _torch_bn_reference(batches, momentum=0.1, eps=1e-5):
    """NumPy re-implementation of torch.nn.BatchNorm1d (weight 1, bias 0) in training mode."""
    h = batches[0].shape[-1]
    rm, rv = np.zeros(h), np.ones(h)
    outs = []
    for x in batches:
        rows = x.reshape(-1, h).astype(np.float64)
        mu = rows.mean(0)
        var_b = rows.var(0)
        var_u = rows.var(0, ddof=1)
        outs.append(((rows - mu) / np.sqrt(var_b + eps)).reshape(x.shape))
        rm = (1 - momentum) * rm + momentum * mu
        rv = (1 - momentum) * rv + momentum * var_u
    return outs, rm, rv


def test_batchnorm_matches_pytorch_semantics():
    rng = np.random.default_rng(4)
    batches = [rng.normal(loc=k, scale=1 + k, size=(1, 6, 5)).astype(np.float32) for k in range(3)]
    outs_ref, rm_ref, rv_ref = _torch_bn_reference(batches)
    bn = BatchNorm(5)
    for x, ref in zip(batches, outs_ref, strict=True):
        out, (m, v) = bn(jnp.asarray(x), train=True, per_group=False)
        np.testing.assert_allclose(np.asarray(out), ref, rtol=1e-4, atol=1e-5)
        rm = 0.9 * bn.running_mean + 0.1 * m[0]
        rv = 0.9 * bn.running_var + 0.1 * v[0]
        bn = eqx.tree_at(lambda b: (b.running_mean, b.running_var), bn, (rm, rv))
    np.testing.assert_allclose(np.asarray(bn.running_mean), rm_ref, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(bn.running_var), rv_ref, rtol=1e-5)
    # evaluation mode uses the running statistics
    x = rng.normal(size=(2, 6, 5)).astype(np.float32)
    out, stats = bn(jnp.asarray(x), train=False, per_group=True)
    assert stats is None
    np.testing.assert_allclose(np.asarray(out), (x - rm_ref) / np.sqrt(rv_ref + 1e-5), rtol=1e-4, atol=1e-5)


def test_encoder_running_stats_equal_sequential_single_shop_passes():
    """Per-shop BN in a batch of B shops == B single-shop passes in order (outputs and running stats)."""
    enc = CREncoder(4, 10, 8, key=jax.random.key(0))
    x = jax.random.normal(jax.random.key(1), (3, 4, 10)) * 2.0 + 1.0
    logits_b, stats_b = _enc_train(enc, x)
    enc_batched = _update(enc, stats_b)
    enc_seq = enc
    for s in range(3):
        logits_s, stats_s = _enc_train(enc_seq, x[s : s + 1])
        np.testing.assert_allclose(np.asarray(logits_s[0]), np.asarray(logits_b[s]), rtol=1e-4, atol=1e-5)
        enc_seq = _update(enc_seq, stats_s)
    for i in range(1, 5):
        a, b = getattr(enc_batched, f"mlp{i}").bn, getattr(enc_seq, f"mlp{i}").bn
        np.testing.assert_allclose(
            np.asarray(a.running_mean), np.asarray(b.running_mean), rtol=1e-5, atol=1e-6
        )
        np.testing.assert_allclose(np.asarray(a.running_var), np.asarray(b.running_var), rtol=1e-5, atol=1e-6)
    # the first block's running stats against the NumPy reference on its own pre-BN activations
    blk = enc.mlp1
    pre = jax.nn.elu(jax.nn.elu(x @ blk.w1 + blk.b1) @ blk.w2 + blk.b2)
    _, rm_ref, rv_ref = _torch_bn_reference([np.asarray(pre[s : s + 1]) for s in range(3)])
    np.testing.assert_allclose(np.asarray(enc_batched.mlp1.bn.running_mean), rm_ref, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(np.asarray(enc_batched.mlp1.bn.running_var), rv_ref, rtol=1e-4, atol=1e-6)


def test_encoder_initialisation():
    enc = CREncoder(8, 30, 64, key=jax.random.key(0))
    w = np.asarray(enc.mlp2.w1)  # (2H, H): Xavier-normal std sqrt(2 / (128 + 64))
    assert abs(w.std() - np.sqrt(2 / 192)) < 0.05 * np.sqrt(2 / 192)
    assert np.all(np.asarray(enc.mlp2.b1) == 0.1) and np.all(np.asarray(enc.b_out) == 0.1)
    dec = MRDecoderS(8, 64, key=jax.random.key(1))
    bound = 1 / np.sqrt(128)  # PyTorch default: U(+-1/sqrt(fan_in)), fan_in = 2H
    assert np.abs(np.asarray(dec.msg_w1)).max() <= bound
    assert abs(np.asarray(dec.msg_w1).std() - bound / np.sqrt(3)) < 0.05 * bound
    # running stats are not trained
    spec = trainable_filter(_new_model(jax.random.key(0), SMALL, 1))
    assert spec.encoder.mlp1.bn.running_mean is False and spec.encoder.mlp1.bn.weight is True


# ------------------------------------------------------------------------------------------- decoder
def test_saturation_head_matches_formula_batched():
    dec = MRDecoderS(3, 8, context_size=2, key=jax.random.key(0))
    p = jnp.array([-0.5, 0.05, 0.7, 2.0])
    ctx = jnp.array([[0.1, 0.9], [0.5, 0.5], [0.9, 0.2], [0.3, 0.3]])
    out = np.asarray(dec.saturation(p, ctx))
    c, pn = np.asarray(ctx, np.float64), np.asarray(p, np.float64)
    a = np.maximum(c @ np.asarray(dec.alpha_w) + float(dec.alpha_b), 0.1)
    g = np.maximum(c @ np.asarray(dec.gamma_w) + float(dec.gamma_b), 0.1)
    f = np.maximum(pn, 0.1)
    np.testing.assert_allclose(out, pn * f**a / (f**a + g**a), rtol=1e-5)
    for i in range(4):  # B = 1 reproduces the batched head
        np.testing.assert_allclose(
            np.asarray(dec.saturation(p[i : i + 1], ctx[i : i + 1])), out[i : i + 1], rtol=1e-6
        )


def test_teacher_forcing_switch_and_feedback():
    dec = MRDecoderS(3, 8, context_size=1, key=jax.random.key(0))
    x = _series(0, b=2, t=12, n=3)
    w, c = jnp.full((2, 6, 1), 0.7), jnp.zeros((2, 1))
    pred = _rollout(dec, x, w, c, 8)
    assert pred.shape == (2, 11, 3)
    # truth after the switch is never read
    x2 = x.at[:, 9:].set(100.0)
    np.testing.assert_array_equal(np.asarray(_rollout(dec, x2, w, c, 8)), np.asarray(pred))
    # the output at step 9 is computed from the step-8 output: recompute by hand with step()
    h = dec.init_hidden(2)
    outs = []
    prev = None
    step = eqx.filter_jit(lambda d, h, xi, w, c: d.step(h, xi, w, c))
    for t in range(11):
        x_in = x[:, t] if t <= 8 else prev
        h, prev = step(dec, h, x_in, w, c)
        outs.append(prev)
    np.testing.assert_allclose(np.asarray(jnp.stack(outs, 1)), np.asarray(pred), rtol=1e-5, atol=1e-6)
    # gradients flow through the fed-back outputs: the last output depends on x[8] also via the feedback
    g = jax.jit(jax.grad(lambda xx: dec.rollout(xx, w, c, switch_step=8)[:, -1].sum()))(x)
    assert np.abs(np.asarray(g[:, 8])).sum() > 0


def test_zero_edges_cut_cross_node_influence():
    dec = MRDecoderS(3, 8, context_size=1, key=jax.random.key(0))
    x = _series(1, b=1, t=10, n=3)
    c = jnp.zeros((1, 1))
    jac = jax.jacobian(lambda xx, w: dec.rollout(xx, w, c, switch_step=9)[0, -1], argnums=0)
    jac = jax.jit(jac)
    j0 = np.asarray(jac(x, jnp.zeros((1, 6, 1))))  # (3, 1, 10, 3)
    j1 = np.asarray(jac(x, jnp.ones((1, 6, 1))))
    for i in range(3):
        others = [k for k in range(3) if k != i]
        assert np.abs(j0[i, 0][:, others]).max() == 0.0
        assert np.abs(j1[i, 0][:, others]).max() > 0.0


# ------------------------------------------------------------------------------------- full model
def test_model_shapes_and_scores(small_model):
    m = small_model
    x = _series(2)
    out = eqx.filter_jit(lambda m, k, x, c: m(k, x, c, train=True))(
        m, jax.random.key(1), x, jnp.zeros((3, 2))
    )
    assert out.pred.shape == (3, 13, 4)
    assert out.logits.shape == out.probs.shape == out.sample.shape == (3, 12, 2)
    assert len(out.bn_stats) == 4
    np.testing.assert_allclose(np.asarray(out.sample.sum(-1)), 1.0, rtol=1e-5)
    s = np.asarray(_scores(m, x))
    assert s.shape == (3, 4, 4) and np.all(np.diagonal(s, axis1=1, axis2=2) == 0)
    assert np.all((s >= 0) & (s <= 1))
    fc = eqx.filter_jit(lambda m, k, x, c: m.forecast(k, x, c, t0=6, horizon=7))(
        m, jax.random.key(2), x, jnp.zeros((3, 2))
    )
    assert fc.shape == (3, 7, 4)
    assert m.encoder_width == 14 and m.switch_step == 10


def test_batched_equals_single_shop(small_model):
    """B = 1 reproduces the per-shop results of a batched pass (train and eval mode, same Gumbel sample)."""
    m = small_model
    x = _series(3)
    ctx = jax.random.uniform(jax.random.key(4), (3, 2))
    for train in (True, False):
        logits, _ = _encode(m, x, train)
        sample = gumbel_softmax(jax.random.key(5), logits, 0.5)
        pred = _rollout(m.decoder, x, sample[..., 1:], ctx, m.switch_step)
        tot_b, nll_b, kl_b = causalmmm_loss(pred, x[:, 1:], jax.nn.softmax(logits, -1))
        per_shop = []
        for s in range(3):
            lg, _ = _encode(m, x[s : s + 1], train)
            np.testing.assert_allclose(np.asarray(lg[0]), np.asarray(logits[s]), rtol=1e-4, atol=1e-5)
            p = m.decoder.rollout(
                x[s : s + 1], sample[s : s + 1, :, 1:], ctx[s : s + 1], switch_step=m.switch_step
            )
            np.testing.assert_allclose(np.asarray(p[0]), np.asarray(pred[s]), rtol=1e-4, atol=1e-6)
            per_shop.append(causalmmm_loss(p, x[s : s + 1, 1:], jax.nn.softmax(lg, -1)))
        # the batched loss is the mean of the per-shop losses
        np.testing.assert_allclose(float(tot_b), np.mean([float(v[0]) for v in per_shop]), rtol=1e-4)
        np.testing.assert_allclose(float(kl_b), np.mean([float(v[2]) for v in per_shop]), rtol=1e-4)


def test_batch_statistics_mode_differs_from_per_shop():
    m_shop = _new_model(jax.random.key(0), SMALL, 1)
    m_batch = _new_model(jax.random.key(0), SMALL.replace(batchnorm="batch"), 1)
    x = _series(5) * jnp.array([1.0, 3.0, 0.5])[:, None, None]
    a, _ = _encode(m_shop, x, True)
    b, _ = _encode(m_batch, x, True)
    assert not np.allclose(np.asarray(a), np.asarray(b), atol=1e-4)
    a1, _ = _encode(m_shop, x[:1], True)
    b1, _ = _encode(m_batch, x[:1], True)
    np.testing.assert_allclose(np.asarray(a1), np.asarray(b1), rtol=1e-5)  # identical at B = 1


def test_leak_free_encoder_ignores_forecast_window():
    cfg = SMALL.replace(leak_free=True)
    m = _new_model(jax.random.key(0), cfg, 1)
    assert m.encoder_width == 14 - 4 + 1
    x = _series(6)
    x2 = x.at[:, 11:].add(5.0)
    np.testing.assert_array_equal(np.asarray(_scores(m, x)), np.asarray(_scores(m, x2)))
    faithful = _new_model(jax.random.key(0), SMALL, 1)
    assert not np.allclose(np.asarray(_scores(faithful, x)), np.asarray(_scores(faithful, x2)))


# ------------------------------------------------------------------------------------- decoder wrapper
def test_decoder_wrapper_contract(small_model):
    m = small_model
    dec = CausalMMMDecoder(m)
    assert dec.uses_graph is True
    x = _series(7, b=1, t=10)[0]
    graph = jnp.asarray(np.random.default_rng(0).uniform(size=(4, 4)) * (1 - np.eye(4)), jnp.float32)
    ctx = jnp.array([0.2, 0.8])
    fc = eqx.filter_jit(lambda d, x, g, c: d.rollout(x, 7, g, c))(dec, x, graph, ctx)
    assert fc.shape == (7, 4)
    # the graph replaces the Gumbel sample: same as the batched decoder with w[k] = graph[send, recv]
    recv, send = edge_index(4)
    w = graph[send, recv][None, :, None]
    xx = jnp.concatenate([x, jnp.zeros((7, 4))])[None]
    ref = _rollout(m.decoder, xx, w, ctx[None], 9)[0, 9:16]
    np.testing.assert_allclose(np.asarray(fc), np.asarray(ref), rtol=1e-5, atol=1e-6)
    # teacher-forced call and step agree
    tf = eqx.filter_jit(lambda d, x, g, c: d(x, g, c))(dec, x, graph, ctx)
    assert tf.shape == (10, 4)
    np.testing.assert_allclose(np.asarray(tf[-1]), np.asarray(fc[0]), rtol=1e-5, atol=1e-6)
    state = dec.init_state()
    step = eqx.filter_jit(lambda d, s, xt, g, c: d.step(s, xt, g, c))
    for t in range(10):
        state, y = step(dec, state, x[t], graph, ctx)
    np.testing.assert_allclose(np.asarray(y), np.asarray(tf[-1]), rtol=1e-5, atol=1e-6)
    # vmappable over graphs; the graph matters
    graphs = jnp.stack([graph, jnp.zeros((4, 4))])
    both = jax.vmap(lambda g: dec.rollout(x, 7, g, ctx))(graphs)
    assert both.shape == (2, 7, 4) and not np.allclose(np.asarray(both[0]), np.asarray(both[1]))
    with pytest.raises(GraphValidationError):
        dec.rollout(x, 7, jnp.zeros((3, 3)), ctx)
