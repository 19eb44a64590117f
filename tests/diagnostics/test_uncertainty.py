"""ArviZ converters (named dims), HDI, summaries and a lossless netCDF round trip."""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import pytest
import xarray as xr

import dice_prob as dp
from dice_prob.diagnostics import uncertainty as unc
from dice_prob.diagnostics.graph_swap import GraphSwapResult
from dice_prob.diagnostics.influence import InfluenceResult

NODES = ("tv", "search", "mid", "sales")
D = len(NODES)


@dataclasses.dataclass
class FakePosterior:
    """Just the GraphPosterior attributes the converter reads (contract names)."""

    nodes: tuple
    sharing: str
    pip: np.ndarray
    draw_probs: np.ndarray
    samples: dict
    support_mask: np.ndarray
    edges: np.ndarray | None = None
    convergence: dict = dataclasses.field(default_factory=dict)


def _posterior(sharing="shared", n_units=3, chains=2, draws=25, seed=0):
    rng = np.random.default_rng(seed)
    support = np.zeros((D, D), dtype=bool)
    support[[0, 1, 0, 1, 2], [2, 2, 3, 3, 3]] = True
    edges = np.argwhere(support)
    unit = () if sharing == "shared" else (n_units,)
    incl = rng.uniform(size=(chains, draws, *unit, D, D)) * support
    samples = {
        "W": rng.normal(size=(chains, draws, *unit, len(edges), 7)).astype(np.float32),
        "pi": rng.uniform(size=(chains, draws, *unit)),
        "edge_prob": rng.uniform(size=(chains, draws, *unit, len(edges))),
        "inclusion_prob": incl,
    }
    draw_probs = incl.reshape((chains * draws, *unit, D, D))
    return FakePosterior(
        NODES,
        sharing,
        draw_probs.mean(0),
        draw_probs,
        samples,
        support,
        edges,
        {"max_r_hat": 1.01, "min_ess": 230.0, "n_divergences": 0, "ok": True},
    )


def test_posterior_to_arviz_named_dims_shared():
    post = _posterior()
    idata = unc.posterior_to_arviz(post)
    p = idata.posterior
    assert p["inclusion_prob"].dims == ("chain", "draw", "source", "target")
    assert p["W"].dims == ("chain", "draw", "edge", "lag")
    assert p["edge_prob"].dims == ("chain", "draw", "edge")
    assert list(p["source"].values) == list(NODES)
    assert p["edge"].values[0] == "tv->mid"
    assert dict(p.sizes)["chain"] == 2 and dict(p.sizes)["draw"] == 25
    np.testing.assert_allclose(
        idata.constant_data["pip"].values, p["inclusion_prob"].mean(("chain", "draw")).values, atol=1e-12
    )
    assert idata.constant_data["support_mask"].dtype == bool
    assert p.attrs["convergence_max_r_hat"] == pytest.approx(1.01)


def test_posterior_to_arviz_labels_per_source_sites_by_node():
    """mmm-mode sites with one value per source node (Hill curves; the carryover kernel when shared per source)
    get a "source_node" dim labelled with node names; a per-edge kernel keeps the "edge" dim."""
    post = _posterior("shop", n_units=3)
    rng = np.random.default_rng(1)
    n_src, n_edge = len(np.unique(post.edges[:, 0])), len(post.edges)
    post.samples["hill_half"] = rng.uniform(size=(2, 25, 3, n_src))
    post.samples["retention"] = rng.uniform(size=(2, 25, 3, n_edge))
    p = unc.posterior_to_arviz(post).posterior
    assert p["hill_half"].dims == ("chain", "draw", "shop", "source_node")
    assert list(p["source_node"].values) == [NODES[i] for i in np.unique(post.edges[:, 0])]
    assert p["retention"].dims == ("chain", "draw", "shop", "edge")
    post.config = dp.Stage1Config(mode="mmm", carryover_sharing="source")
    post.samples["retention"] = rng.uniform(size=(2, 25, 3, n_src))
    p = unc.posterior_to_arviz(post).posterior
    assert p["retention"].dims == ("chain", "draw", "shop", "source_node")
    np.testing.assert_array_equal(p["retention"].values, post.samples["retention"])


def test_posterior_to_arviz_per_shop_has_shop_dim():
    post = _posterior("shop", n_units=3)
    idata = unc.posterior_to_arviz(post)
    assert idata.posterior["inclusion_prob"].dims == ("chain", "draw", "shop", "source", "target")
    assert idata.posterior["W"].dims == ("chain", "draw", "shop", "edge", "lag")
    assert idata.constant_data["pip"].dims == ("shop", "source", "target")


@pytest.mark.slow
def test_posterior_to_arviz_real_stage1_if_available():
    stage1 = pytest.importorskip("dice_prob.inference.stage1")
    import jax

    import dice_prob as dp

    rng = np.random.default_rng(0)
    x = rng.normal(size=(1, 60, 3))
    x[0, 1:, 2] += 0.8 * x[0, :-1, 0]
    panel = dp.Panel(x, roles=["channel", "channel", "target"])
    cfg = dp.Stage1Config(
        n_lags=1, num_warmup=60, num_samples=40, num_chains=1, progress_bar=False, graph_sharing="shared"
    )
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a short chain may warn about convergence; not what this test checks
        post = stage1.fit_graph(jax.random.key(0), panel, config=cfg)
    idata = unc.posterior_to_arviz(post)
    assert idata.posterior["inclusion_prob"].dims == ("chain", "draw", "source", "target")
    assert dict(idata.posterior.sizes)["draw"] == 40


def test_influence_to_arviz_dims():
    stack = np.random.default_rng(0).uniform(size=(6, D, D))
    idata = unc.influence_to_arviz(stack, NODES, "cig")
    assert idata.posterior["cig"].dims == ("chain", "draw", "source", "target")
    np.testing.assert_array_equal(idata.posterior["cig"].values[0], stack)
    per_h = np.random.default_rng(1).uniform(size=(6, 7, D, D))
    idata = unc.influence_to_arviz(per_h, NODES)
    assert idata.posterior["ar_cig"].dims == ("chain", "draw", "horizon", "source", "target")
    assert list(idata.posterior["horizon"].values) == list(range(1, 8))
    res = InfluenceResult(stack, None, per_h, None, None, None, 7, "finite", 1.0)
    idata = unc.influence_to_arviz(res, NODES)
    assert set(idata.posterior.data_vars) == {"ar_cig", "ar_cig_by_horizon"}


def _swap_result():
    rng = np.random.default_rng(0)
    sizes = {"posterior": 10, "oracle": 1, "random": 4}
    draws = {
        g: {m: rng.normal(size=n) for m in ("nauprc", "auroc", "mse_target", "mse_all")}
        for g, n in sizes.items()
    }
    truth = np.zeros((D, D))
    truth[0, 3] = 1
    return GraphSwapResult(
        draws=draws,
        influence={g: rng.uniform(size=(n, D, D)) for g, n in sizes.items()},
        mse_by_horizon={g: rng.uniform(size=(n, 7)) for g, n in sizes.items()},
        nodes=NODES,
        truth=truth,
        support_mask=truth > 0,
        horizon=7,
        hdi_prob=0.94,
        info={},
    )


def test_graph_swap_to_arviz_dims_and_padding():
    res = _swap_result()
    idata = unc.graph_swap_to_arviz(res)
    p = idata.posterior
    assert p["nauprc"].dims == ("chain", "draw", "graph_input")
    assert p["mse_by_horizon"].dims == ("chain", "draw", "graph_input", "horizon")
    assert p["ar_cig"].dims == ("chain", "draw", "graph_input", "source", "target")
    assert list(p["graph_input"].values) == ["posterior", "oracle", "random"]
    np.testing.assert_array_equal(idata.constant_data["n_draws"].values, [10, 1, 4])
    oracle = p["nauprc"].sel(graph_input="oracle").values[0]
    assert oracle[0] == res.draws["oracle"]["nauprc"][0] and np.all(np.isnan(oracle[1:]))


def _brute_hdi(x, prob):
    x = np.sort(x)
    n = len(x)
    k = int(np.floor(prob * n))
    widths = x[k:] - x[: n - k]
    i = int(np.argmin(widths))
    return x[i], x[i + k]


def test_hdi_matches_minimum_width_interval():
    x = np.random.default_rng(0).gamma(2.0, size=400)
    lo, hi = unc.hdi(x, 0.9)
    blo, bhi = _brute_hdi(x, 0.9)
    assert lo == pytest.approx(blo) and hi == pytest.approx(bhi)
    assert 0.89 <= np.mean((x >= lo) & (x <= hi)) <= 0.91
    multi = unc.hdi(np.stack([x, 2 * x], axis=1), 0.9)  # draws on axis 0
    assert multi.shape == (2, 2)
    np.testing.assert_allclose(multi[1], 2 * multi[0])
    np.testing.assert_array_equal(unc.hdi([3.0], 0.9), [3.0, 3.0])
    np.testing.assert_array_equal(unc.hdi([np.nan, 1.0], 0.9), [1.0, 1.0])


def test_summary_frame_matches_numpy():
    stack = np.random.default_rng(2).normal(size=(200, 2, 2))
    df = unc.summary_frame(unc.influence_to_arviz(stack, ["a", "y"]))
    assert list(df.columns) == ["mean", "sd", "hdi_low", "hdi_high"]
    assert len(df) == 4
    np.testing.assert_allclose(df["mean"].to_numpy(), stack.reshape(200, 4).mean(0), atol=1e-3)
    post = _posterior()
    full = unc.summary_frame(unc.posterior_to_arviz(post), var_names=["pi"], diagnostics=True)
    assert {"ess_bulk", "r_hat"} <= set(full.columns)


def _assert_same(a, b):
    ga, gb = unc._groups(a), unc._groups(b)
    assert set(ga) == set(gb)
    for name in ga:
        xr.testing.assert_identical(ga[name], gb[name])
        for var in ga[name].data_vars:
            assert ga[name][var].dtype == gb[name][var].dtype, (name, var)
        assert ga[name].attrs == gb[name].attrs


@pytest.mark.parametrize("which", ["posterior", "influence", "swap"])
def test_netcdf_round_trip_is_lossless(tmp_path, which):
    idata = {
        "posterior": lambda: unc.posterior_to_arviz(_posterior("shop")),
        "influence": lambda: unc.influence_to_arviz(np.random.default_rng(0).uniform(size=(5, D, D)), NODES),
        "swap": lambda: _swap_result().to_arviz(),
    }[which]()
    path = tmp_path / "sub" / "x.nc"
    out = unc.save_netcdf(idata, path)
    assert out == path and path.exists()
    assert [f for f in os.listdir(path.parent) if f.endswith(".tmp")] == []
    back = unc.load_netcdf(path)
    _assert_same(idata, back)
    unc.save_netcdf(back, path)  # overwrite in place (the loaded file is closed)
    _assert_same(idata, unc.load_netcdf(path))


def test_errors(tmp_path):
    from dice_prob.errors import DataValidationError, InputTypeError

    with pytest.raises(DataValidationError):
        unc.load_netcdf(tmp_path / "missing.nc")
    with pytest.raises(DataValidationError):
        unc.influence_to_arviz(np.zeros((2, 3)), None)
    with pytest.raises(InputTypeError):
        unc.save_netcdf(object(), tmp_path / "x.nc")
    with pytest.raises(DataValidationError):
        unc.hdi([1.0, 2.0], 1.5)
