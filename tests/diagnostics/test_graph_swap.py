"""Frozen graph-swap on hand-built decoders whose answer is known."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dice_prob.data.panel import Panel
from dice_prob.diagnostics.graph_swap import (
    METRICS,
    GraphSwapResult,
    density_matched_random,
    graph_swap,
    permuted_graphs,
)
from dice_prob.errors import ConfigError, DataValidationError

ROLES = ["channel", "channel", "channel", "channel", "target"]
D = len(ROLES)
TRUTH = np.zeros((D, D))
TRUTH[0, 4] = TRUTH[1, 4] = 1.0  # two of the four channels drive the target


class LinearVAR1(eqx.Module):
    """Graph-safe VAR(1): y(t+1) = x(t) @ (b * A_offdiag + own * I); its influence IS its graph input."""

    b: float = eqx.field(static=True, default=0.5)
    own: float = eqx.field(static=True, default=0.5)

    def rollout(self, x_history, horizon, graph, context=None):
        d = x_history.shape[-1]
        m = self.b * jnp.asarray(graph) * (1.0 - jnp.eye(d)) + self.own * jnp.eye(d)

        def body(x, _):
            y = x @ m
            return y, y

        _, ys = jax.lax.scan(body, x_history[-1], None, length=horizon)
        return ys


class DenseIgnoring(eqx.Module):
    """A bypass decoder: same dense map whatever graph it is given."""

    uses_graph: bool = eqx.field(static=True, default=False)

    def rollout(self, x_history, horizon, graph, context=None):
        d = x_history.shape[-1]
        m = 0.1 * jnp.ones((d, d)) + 0.4 * jnp.eye(d)

        def body(x, _):
            y = x @ m
            return y, y

        _, ys = jax.lax.scan(body, x_history[-1], None, length=horizon)
        return ys


class FakePosterior:
    def __init__(self, probs):
        self.probs = np.asarray(probs, dtype=float)
        self.pip = self.probs

    def sample_graphs(self, rng_key, n):
        u = np.asarray(jax.random.uniform(rng_key, (n, *self.probs.shape)))
        return (u < self.probs).astype(float)

    def median_graph(self):
        return (self.probs > 0.5).astype(int)


def _panel(n_shops=1, n_steps=60, seed=0):
    x = np.random.default_rng(seed).normal(size=(n_shops, n_steps, D))
    return Panel(x, roles=ROLES)


def test_oracle_recovers_and_nulls_do_not():
    panel = _panel()
    support = panel.support_mask()
    post = FakePosterior(np.where(TRUTH > 0, 0.9, 0.1) * support)
    res = graph_swap(
        jax.random.key(0),
        LinearVAR1(),
        panel,
        truth=TRUTH,
        graphs={"posterior": post},
        n_windows=8,
        n_samples=30,
        n_null=6,
        history=4,
        method="jvp",  # exact derivatives: equal influences tie exactly (float32 finite pulses round)
    )
    assert isinstance(res, GraphSwapResult)
    assert res.graph_inputs == [
        "posterior",
        "posterior_median",
        "oracle",
        "empty",
        "full",
        "random",
        "permuted",
    ]
    assert res.value("oracle") == pytest.approx(1.0, abs=1e-12)
    assert res.value("posterior_median") == pytest.approx(1.0, abs=1e-12)
    assert res.value("empty") == pytest.approx(0.0, abs=1e-12)  # zero influence: all pairs tie
    assert res.value("full") == pytest.approx(0.0, abs=1e-12)  # every support pair equally influential
    np.testing.assert_array_equal(res.influence["empty"][0][~np.eye(D, dtype=bool)], 0.0)
    # posterior samples: mostly the truth, sometimes one edge missing / one extra
    assert 0.5 < res.value("posterior") < 1.0
    # random graphs with the truth's density: chance level on average, with spread
    assert -0.6 < res.value("random") < 0.6
    assert np.std(res.draws["random"]["nauprc"]) > 0
    # nAUPRC of the oracle is exactly what metrics gives for its influence
    from dice_prob.diagnostics import metrics

    assert metrics.nauprc(res.influence["oracle"][0], TRUTH, support) == pytest.approx(1.0)
    # MSE: the empty and oracle inputs give the same own-dynamics forecast of the channels,
    # and the mse_by_horizon averages to mse_target
    for gi in res.graph_inputs:
        np.testing.assert_allclose(
            res.mse_by_horizon[gi].mean(axis=1), res.draws[gi]["mse_target"], rtol=1e-10
        )


def test_table_columns_and_draw_counts():
    panel = _panel()
    post = FakePosterior(np.where(TRUTH > 0, 0.8, 0.2) * panel.support_mask())
    res = graph_swap(
        jax.random.key(1),
        LinearVAR1(),
        panel,
        truth=TRUTH,
        graphs={"posterior": post, "full": None, "mine": TRUTH.T.copy() * 0},
        n_windows=5,
        n_samples=12,
        n_null=4,
        history=4,
    )
    tab = res.table
    assert list(tab.columns) == ["graph_input", "metric", "mean", "sd", "hdi_low", "hdi_high", "n_draws"]
    assert "full" not in set(tab.graph_input) and "mine" in set(tab.graph_input)
    assert set(tab.metric) == set(METRICS)
    n = tab.groupby("graph_input").n_draws.first().to_dict()
    assert n == {
        "posterior": 12,
        "posterior_median": 1,
        "oracle": 1,
        "empty": 1,
        "random": 4,
        "permuted": 4,
        "mine": 1,
    }
    row = tab[(tab.graph_input == "random") & (tab.metric == "nauprc")].iloc[0]
    v = res.draws["random"]["nauprc"]
    assert row["mean"] == pytest.approx(v.mean()) and row["sd"] == pytest.approx(v.std(ddof=1))
    assert row.hdi_low <= row["mean"] <= row.hdi_high
    one = tab[(tab.graph_input == "oracle") & (tab.metric == "mse_target")].iloc[0]
    assert one.hdi_low == one.hdi_high == one["mean"] and one.sd == 0.0
    # same key -> same numbers
    res2 = graph_swap(
        jax.random.key(1),
        LinearVAR1(),
        panel,
        truth=TRUTH,
        graphs={"posterior": post, "full": None, "mine": TRUTH.T.copy() * 0},
        n_windows=5,
        n_samples=12,
        n_null=4,
        history=4,
    )
    np.testing.assert_array_equal(res2.table[["mean", "sd"]].to_numpy(), tab[["mean", "sd"]].to_numpy())


def test_bypass_decoder_scores_the_same_under_every_input():
    panel = _panel()
    for method in ("finite", "jvp"):
        res = graph_swap(
            jax.random.key(2),
            DenseIgnoring(),
            panel,
            truth=TRUTH,
            n_windows=6,
            n_null=3,
            history=4,
            method=method,
        )
        for metric in ("mse_target", "nauprc"):
            vals = [res.value(gi, metric) for gi in res.graph_inputs]
            assert max(vals) - min(vals) < 1e-12  # the graph input changes nothing
        assert res.info["uses_graph"] is False
    assert res.value("oracle") == pytest.approx(0.0, abs=1e-12)  # jvp: channel influences tie exactly


def test_per_shop_truth_is_scored_per_shop():
    panel = _panel(n_shops=2, n_steps=50)
    truth = np.stack([TRUTH, np.zeros((D, D))])
    truth[1, 2, 4] = truth[1, 3, 4] = 1.0  # shop 1: the other two channels
    res = graph_swap(
        jax.random.key(3),
        LinearVAR1(),
        panel,
        truth=truth,
        graphs={"shop0": truth[0]},
        n_windows=None,
        n_null=3,
        history=4,
    )
    assert res.value("oracle") == pytest.approx(1.0)
    assert res.info["n_scored_shops"] == 2
    # shop 0's graph everywhere: perfect in shop 0 (1); in shop 1 its true edges score 0 and rank last, so
    # AP = base rate there (nAUPRC 0) -> mean over shops 0.5
    assert res.value("shop0") == pytest.approx(0.5)
    assert res.to_arviz().constant_data["truth"].dims == ("shop", "source", "target")


def test_null_graph_generators():
    support = np.zeros((D, D), dtype=bool)
    support[:4, 4] = True
    g = density_matched_random(jax.random.key(0), TRUTH, support, 50)
    assert g.shape == (50, D, D)
    assert np.all(g.sum(axis=(1, 2)) == 2) and np.all(g[:, ~support] == 0)
    assert len({tuple(x.ravel()) for x in g}) > 1
    p = permuted_graphs(jax.random.key(0), TRUTH, 10)
    assert p.shape == (10, D, D) and np.all(p.sum(axis=(1, 2)) == 2)
    assert np.all((p != TRUTH).any(axis=(1, 2)))
    np.testing.assert_array_equal(p, permuted_graphs(jax.random.key(0), TRUTH, 10))
    shops = np.stack([TRUTH, TRUTH.T])
    ps = permuted_graphs(jax.random.key(1), shops, 3)
    assert ps.shape == (3, 2, D, D)


def test_errors():
    panel = _panel()
    with pytest.raises(DataValidationError, match="truth"):
        graph_swap(
            jax.random.key(0), LinearVAR1(), panel, truth=np.stack([TRUTH] * 3), n_windows=2, history=4
        )
    with pytest.raises(ValueError, match="binary"):
        graph_swap(jax.random.key(0), LinearVAR1(), panel, truth=TRUTH * 0.5, n_windows=2, history=4)
    with pytest.raises(ConfigError):
        graph_swap(jax.random.key(0), LinearVAR1(), panel, truth=TRUTH, n_null=0, history=4)
