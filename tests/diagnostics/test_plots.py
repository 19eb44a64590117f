"""Plots return Figures with the expected axes, and the tidy data behind them."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import equinox as eqx  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from dice_prob.data.panel import Panel  # noqa: E402
from dice_prob.diagnostics import plots  # noqa: E402
from dice_prob.diagnostics.graph_swap import GraphSwapResult  # noqa: E402

NODES = ["tv", "search", "mid", "sales"]
D = len(NODES)
TRUTH = np.zeros((D, D))
TRUTH[0, 2] = TRUTH[2, 3] = 1.0


class LinearVAR1(eqx.Module):
    def rollout(self, x_history, horizon, graph, context=None):
        d = x_history.shape[-1]
        m = 0.4 * jnp.asarray(graph) * (1.0 - jnp.eye(d)) + 0.6 * jnp.eye(d)

        def body(x, _):
            y = x @ m
            return y, y

        _, ys = jax.lax.scan(body, x_history[-1], None, length=horizon)
        return ys


class FakePosterior:
    def __init__(self):
        self.nodes = tuple(NODES)
        self.pip = np.clip(TRUTH * 0.9 + 0.05, 0, 1) * (1 - np.eye(D))
        self.support_mask = np.ones((D, D), dtype=bool) & ~np.eye(D, dtype=bool)

    def sample_graphs(self, rng_key, n):
        return (np.asarray(jax.random.uniform(rng_key, (n, D, D))) < self.pip).astype(float)


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def test_pip_heatmap_outlines_truth():
    fig, df = plots.plot_pip(FakePosterior(), truth=TRUTH, return_data=True)
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    assert ax.get_xlabel() == "target" and ax.get_ylabel() == "source"
    assert [t.get_text() for t in ax.get_xticklabels()] == NODES
    assert len(ax.patches) == int(TRUTH.sum())  # one outline per true edge
    assert list(df.columns) == ["source", "target", "pip", "true_edge", "in_support"]
    assert len(df) == D * (D - 1) and df.true_edge.sum() == 2
    row = df[(df.source == "tv") & (df.target == "mid")].iloc[0]
    assert row.pip == pytest.approx(0.95)
    assert isinstance(plots.plot_pip(np.stack([TRUTH, TRUTH]), nodes=NODES), Figure)  # per-shop PIPs averaged


def test_posterior_graph_edge_widths():
    fig, df = plots.plot_posterior_graph(FakePosterior(), threshold=0.5, truth=TRUTH, return_data=True)
    assert isinstance(fig, Figure) and len(fig.axes) == 1
    assert df.pip.tolist() == pytest.approx([0.95, 0.95])
    assert set(zip(df.source, df.target, strict=True)) == {("tv", "mid"), ("mid", "sales")}
    assert fig.axes[0].get_title().startswith("Posterior graph")


def test_influence_heatmap_and_hdi_panel():
    stack = np.random.default_rng(0).uniform(size=(40, D, D))
    fig, df = plots.plot_influence(stack, nodes=NODES, truth=TRUTH, title="AR-CIG", return_data=True)
    heat = [a for a in fig.axes if a.get_title()]  # colorbars have no title
    assert [a.get_title() for a in heat] == ["AR-CIG: posterior mean", "94% HDI width"]
    assert list(df.columns) == ["source", "target", "mean", "hdi_low", "hdi_high", "hdi_width"]
    np.testing.assert_allclose(df["mean"].to_numpy().reshape(D, D), stack.mean(0))
    assert (
        np.all(df.hdi_width >= 0) and np.all(df.hdi_low <= df["mean"]) and np.all(df["mean"] <= df.hdi_high)
    )
    fig2, axes = plt.subplots(1, 2)
    assert plots.plot_influence(stack, ax=axes) is fig2


def test_graph_swap_forest():
    rng = np.random.default_rng(0)
    sizes = {"posterior": 30, "oracle": 1, "empty": 1, "permuted": 5}
    draws = {
        g: {m: rng.normal(size=n) for m in ("nauprc", "auroc", "mse_target", "mse_all")}
        for g, n in sizes.items()
    }
    res = GraphSwapResult(draws, {}, {}, tuple(NODES), TRUTH, TRUTH > 0, 7, 0.94, {})
    fig, df = res.plot(return_data=True)
    assert len(fig.axes) == 2
    assert fig.axes[0].get_xlabel() == "AR-CIG nAUPRC" and fig.axes[1].get_xlabel() == "MSE@7 (target)"
    ticks = {t.get_text(): t.get_position()[1] for t in fig.axes[0].get_yticklabels()}
    assert sorted(ticks, key=ticks.get, reverse=True) == list(sizes)  # first graph input on top
    assert set(df.metric) == {"nauprc", "mse_target"} and len(df) == 8
    from dice_prob.errors import ConfigError

    with pytest.raises(ConfigError):
        plots.plot_graph_swap(res, metrics=("nope",))


def test_forecast_fan_chart():
    x = np.random.default_rng(0).normal(size=(2, 40, D)) * 3.0 + 10.0
    panel = Panel(x, nodes=NODES, roles=["channel", "channel", "intermediate", "target"])
    post = FakePosterior()
    with pytest.raises(Exception, match="rng_key"):
        plots.forecast_fan_data(LinearVAR1(), panel, post, history=6)
    fig, df = plots.plot_forecast_fan(
        LinearVAR1(),
        panel,
        post,
        rng_key=jax.random.key(0),
        shop=1,
        history=6,
        n_samples=25,
        return_data=True,
    )
    assert isinstance(fig, Figure) and len(fig.axes) == 1
    hist = df[df.kind == "history"]
    fc = df[df.kind == "forecast"]
    assert len(hist) == 6 and len(fc) == 7 and int(fc.n_graphs.iloc[0]) == 25
    np.testing.assert_allclose(hist.observed.to_numpy(), x[1, hist.step.to_numpy(), 3])  # raw units
    np.testing.assert_allclose(fc.observed.to_numpy(), x[1, fc.step.to_numpy(), 3])
    assert np.all(fc.hdi_low <= fc["median"] + 1e-9) and np.all(fc["median"] <= fc.hdi_high + 1e-9)
    assert "sales" in fig.axes[0].get_title()
