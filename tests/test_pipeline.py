"""End-to-end pipeline on a tiny simulation: every artefact, save/load round trip, atomic save, config I/O."""

from __future__ import annotations

import importlib
import json
import warnings

import jax
import numpy as np
import pytest

from dice_prob import pipeline as pl
from dice_prob.config import DecoderConfig, DiagnosticsConfig, PipelineConfig, Stage1Config
from dice_prob.data import simulate
from dice_prob.data.windows import forecast_windows, test_start
from dice_prob.errors import (
    ConfigError,
    ConvergenceWarning,
    DataValidationError,
    ForecastSkillWarning,
    InputTypeError,
)
from dice_prob.report import SECTIONS

#: Tiny settings: 2 shops x 60 steps, NUTS 50 + 50 on one chain, a 3-epoch decoder.
TINY = PipelineConfig(
    stage1=Stage1Config(n_lags=2, num_warmup=50, num_samples=50, num_chains=1, progress_bar=False),
    decoder=DecoderConfig(
        hidden_size=8, message_size=4, embed_size=4, history=10, max_epochs=3, patience=3, progress_bar=False
    ),
    diagnostics=DiagnosticsConfig(n_graph_samples=8, n_windows=8),
    comparison_decoders=("empty",),  # one comparison decoder keeps the file short; the demo test runs all
)

EXPECTED_FILES = {
    "summary.json",
    "draws.nc",
    "posterior.nc",
    "graph_swap.nc",
    "data.csv",
    "config.toml",
    "forecast.json",
    "edges.csv",
    "edges_summary.csv",
    "influence.csv",
    "comparison.csv",
    "forecast.csv",
    "graph_swap.csv",
    "report.html",
    "decoder/model.eqx",
    "decoder/decoder.json",
    "figures/pip_heatmap.png",
    "figures/network.png",
    "figures/forecast.png",
    "figures/influence.png",
    "figures/graph_swap.png",
}


@pytest.fixture(scope="module")
def sim():
    return simulate.funnel(jax.random.key(0), n_shops=2, n_steps=60, n_lags=2, mode="linear")


@pytest.fixture(scope="module")
def result(sim):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # 50 draws on one chain: expected to be flagged
        return pl.run_pipeline(jax.random.key(7), sim.panel, config=TINY, truth=sim.graph)


@pytest.fixture(scope="module")
def saved(result, tmp_path_factory):
    return result.save(tmp_path_factory.mktemp("res") / "out")


def test_result_shapes_and_headline(result, sim):
    d = sim.panel.n_nodes
    s = TINY.diagnostics.n_graph_samples
    assert result.pip.shape == (2, d, d)
    assert result.graph_samples.shape == (s, 2, d, d)
    assert result.cig.shape == result.ar_cig.shape == (s, d, d)
    assert result.mse7.shape == (s,) and np.all(np.isfinite(result.mse7))
    assert np.asarray(result.forecast["draws"]).shape == (s, TINY.diagnostics.horizon)
    h = result.summary["headline"]
    assert {"mse7", "mse7_persistence", "ar_cig_nauprc", "pip_scores", "attribution"} <= set(h)
    # the reference forecasts sit beside the decoder, and the skill flags agree with the numbers
    beats = h["beats_reference_forecasts"]
    for key, mse in (
        ("persistence", h["mse7_persistence"]),
        ("flat_mean", h["mse7_flat_mean"]),
        ("ls_ar", h["mse7_ls_ar"]),
    ):
        assert beats[key] == (float(result.mse7.mean()) < mse)
    labels = list(result.tables["comparison"]["decoder"])
    assert labels[-3:] == ["persistence", "flat mean", f"least-squares AR({h['ls_ar_lags']})"]
    assert h["mse7"]["hdi_low"] <= h["mse7"]["mean"] <= h["mse7"]["hdi_high"]
    assert h["attribution"]["verdict"] in ("follows", "weak", "does not follow", "undetermined")
    assert 0.0 <= h["pip_scores"]["auroc"] <= 1.0
    # PIPs are zero off the role support (nothing flows into a channel)
    assert np.all(result.pip[:, ~result.support_mask] == 0)


def test_reference_forecasts_match_numpy(sim):
    """Persistence, shop means and an LS AR(p) with shop intercepts, fitted before the test region, vs NumPy."""
    panel, horizon, p = sim.panel, 7, 3
    w = forecast_windows(panel.scaled, history=12, horizon=horizon, split="test")
    ref = pl._reference_forecasts(panel, w, horizon, p)
    ti = panel.target_index
    fit = panel.scaled[:, : test_start(panel.n_steps, 0.2, horizon), ti]
    eye = np.eye(panel.n_shops)
    rows = [np.r_[eye[s], y[t - p : t][::-1]] for s, y in enumerate(fit) for t in range(p, y.size)]
    ys = [y[t] for y in fit for t in range(p, y.size)]
    coef = np.linalg.lstsq(np.asarray(rows), np.asarray(ys), rcond=None)[0]
    ar = np.zeros((len(w), horizon))
    for n in range(len(w)):
        buf = list(w.history[n, -p:, ti][::-1])
        for h in range(horizon):
            ar[n, h] = coef[w.shop[n]] + float(np.dot(coef[panel.n_shops :], buf[:p]))
            buf.insert(0, ar[n, h])
    fut = w.future[..., ti]
    assert ref["ls_ar_lags"] == p
    np.testing.assert_allclose(ref["ls_ar"], ((ar - fut) ** 2).mean(), rtol=1e-4)
    np.testing.assert_allclose(
        ref["flat_mean"], ((fit.mean(axis=1)[w.shop][:, None] - fut) ** 2).mean(), rtol=1e-5
    )
    np.testing.assert_allclose(ref["persistence"], ((w.history[:, -1:, ti] - fut) ** 2).mean(), rtol=1e-6)


def test_forecast_skill_warns_only_when_a_reference_wins():
    ref = {"persistence": 0.9, "flat_mean": 0.6, "ls_ar": 0.5, "ls_ar_lags": 7}
    notes = []
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert pl._forecast_skill(0.4, ref, 7, notes) == {
            "persistence": True,
            "flat_mean": True,
            "ls_ar": True,
        }
    assert notes == []
    with pytest.warns(ForecastSkillWarning, match=r"AR\(7\)"):
        beats = pl._forecast_skill(0.55, ref, 7, notes)
    assert beats == {"persistence": True, "flat_mean": True, "ls_ar": False}
    assert len(notes) == 1 and "0.55" in notes[0] and "training mean" not in notes[0]


def test_summary_records_seeds_versions_timings_convergence(result):
    s = result.summary
    assert s["seeds"]["root"] == [int(x) for x in np.asarray(jax.random.key_data(jax.random.key(7)))]
    assert len({tuple(v) for v in s["seeds"].values()}) == len(s["seeds"])  # one distinct key per stage
    assert {"jax", "numpyro", "equinox", "arviz", "dice-prob", "python"} <= set(s["versions"])
    assert {"stage1", "decoder", "diagnostics", "comparison", "graph_swap", "total"} <= set(s["timings_s"])
    assert all(v >= 0 for v in s["timings_s"].values())
    assert {"max_r_hat", "min_ess", "n_divergences", "ok"} <= set(s["convergence"])
    assert PipelineConfig.from_dict(s["config"]) == TINY


def test_empty_graph_decoder_has_exactly_no_cross_influence(result):
    # a graph-safe decoder trained and run under the empty graph cannot route a pulse to another node
    ar = result.comparison_ar_cig["empty"]
    off = ~np.eye(ar.shape[-1], dtype=bool)
    assert np.all(ar[:, off] == 0.0)
    rows = result.tables["comparison"].set_index("decoder")
    assert {"posterior", "empty", "persistence"} <= set(rows.index)
    assert rows.loc["empty", "ar_cig_nauprc"] == pytest.approx(0.0, abs=1e-9)


def test_save_writes_every_artefact(saved):
    files = {str(p.relative_to(saved)) for p in saved.rglob("*") if p.is_file()}
    assert EXPECTED_FILES <= files, EXPECTED_FILES - files
    summary = json.loads((saved / "summary.json").read_text())
    assert set(summary["files"]) >= EXPECTED_FILES - {"summary.json"}
    assert not [p for p in saved.parent.iterdir() if p.name.startswith(".")]  # no temp folder left
    html = (saved / "report.html").read_text()
    for heading in SECTIONS:
        assert heading in html
    assert html.count("data:image/png;base64,") == 5


def test_load_round_trip(result, saved):
    back = pl.load_result(saved)
    assert back.config == result.config
    np.testing.assert_array_equal(back.panel.values, result.panel.values)
    assert back.panel.roles == result.panel.roles and back.panel.train_steps == result.panel.train_steps
    np.testing.assert_array_equal(back.panel.context, result.panel.context)
    for name in ("pip", "cig", "ar_cig", "mse7", "graph_samples", "truth", "support_mask"):
        np.testing.assert_allclose(
            np.asarray(getattr(back, name), float), np.asarray(getattr(result, name), float)
        )
    np.testing.assert_allclose(back.forecast["draws"], result.forecast["draws"])
    for name in ("empty",):
        np.testing.assert_allclose(back.comparison_ar_cig[name], result.comparison_ar_cig[name])
    assert set(back.tables) == set(result.tables)
    np.testing.assert_allclose(back.tables["edges"]["pip"], result.tables["edges"]["pip"])
    assert back.summary["headline"] == json.loads(json.dumps(pl._jsonable(result.summary["headline"])))
    # the decoder checkpoint gives identical forecasts
    x = np.asarray(result.panel.scaled[0, :10], np.float32)
    g = np.asarray(result.graph_samples[0, 0])
    np.testing.assert_array_equal(
        np.asarray(back.decoder.rollout(x, 3, g, result.panel.context[0])),
        np.asarray(result.decoder.rollout(x, 3, g, result.panel.context[0])),
    )
    assert set(back.figures) == {"pip_heatmap", "network", "forecast", "influence", "graph_swap"}


def test_interrupted_save_leaves_no_summary(result, tmp_path, monkeypatch):
    report_mod = importlib.import_module("dice_prob.report")  # the module, even if dp re-exports report()

    def boom(*args, **kwargs):
        raise RuntimeError("disk full while writing the report")

    out = tmp_path / "out"
    monkeypatch.setattr(
        report_mod, "report", boom
    )  # fails after netCDF, CSV, figures and decoder are written
    with pytest.raises(RuntimeError, match="disk full"):
        result.save(out)
    assert not out.exists()
    assert list(tmp_path.rglob("summary.json")) == []
    assert list(tmp_path.iterdir()) == []  # the temporary folder is gone too


def test_failed_overwrite_keeps_previous_complete_result(result, saved, tmp_path, monkeypatch):
    import shutil

    import dice_prob.pipeline as pipeline_mod

    out = tmp_path / "out"
    shutil.copytree(saved, out)
    before = (out / "summary.json").read_text()

    def boom(*args, **kwargs):
        raise OSError("no space left")

    monkeypatch.setattr(pipeline_mod, "_save_netcdf", boom)
    with pytest.raises(OSError, match="no space"):
        result.save(out)
    assert (out / "summary.json").read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_save_replaces_a_previous_result(result, saved, tmp_path):
    import shutil

    out = tmp_path / "out"
    shutil.copytree(saved, out)
    (out / "stale.csv").write_text("from an older run")
    result.save(out, report=False)
    assert not (out / "stale.csv").exists() and (out / "summary.json").exists()
    assert not (out / "report.html").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_save_refuses_a_foreign_folder(result, tmp_path):
    (tmp_path / "mine.txt").write_text("user data")
    with pytest.raises(DataValidationError, match="not a dice_prob result folder"):
        result.save(tmp_path)
    assert (tmp_path / "mine.txt").read_text() == "user data"


def test_run_pipeline_validates_inputs(sim):
    with pytest.raises(InputTypeError, match="rng_key"):
        pl.run_pipeline(None, sim.panel, config=TINY)
    with pytest.raises(InputTypeError, match="panel"):
        pl.run_pipeline(jax.random.key(0), sim.panel.values, config=TINY)
    with pytest.raises(DataValidationError, match="time steps"):
        pl.run_pipeline(
            jax.random.key(0), sim.panel, config=TINY.replace(decoder=TINY.decoder.replace(history=60))
        )
    with pytest.raises(ValueError, match="truth"):
        pl.run_pipeline(jax.random.key(0), sim.panel, config=TINY, truth=np.zeros((3, 3)))


@pytest.mark.parametrize("val_fraction", [0.2, 0.8])
def test_a_too_long_history_names_a_history_that_passes_validation(sim, val_fraction):
    """The error suggests a history that leaves enough training origins for this val_fraction's hold-out."""
    import re

    from dice_prob.data.windows import max_history

    horizon = max(TINY.decoder.horizon, TINY.diagnostics.horizon)
    one_origin = max_history(
        sim.panel.n_steps, horizon
    )  # leaves a single training origin: nothing to hold out
    cfg = TINY.replace(decoder=TINY.decoder.replace(history=one_origin, val_fraction=val_fraction))
    with pytest.raises(DataValidationError, match=r"DecoderConfig.history: .* <= (\d+)") as err:
        pl._validate_inputs(sim.panel, cfg, None)
    fits = int(re.search(r"<= (\d+)", str(err.value)).group(1))
    pl._validate_inputs(sim.panel, cfg.replace(decoder=cfg.decoder.replace(history=fits)), None)
    with pytest.raises(DataValidationError, match="DecoderConfig.history"):
        pl._validate_inputs(sim.panel, cfg.replace(decoder=cfg.decoder.replace(history=fits + 1)), None)


@pytest.mark.parametrize("suffix", [".toml", ".json"])
def test_config_round_trip(tmp_path, suffix):
    cfg = TINY.replace(stage1=TINY.stage1.replace(graph_sharing="group", groups=(0, 1, 1)), n_decoder_seeds=2)
    path = pl.save_config(cfg, tmp_path / f"cfg{suffix}")
    assert pl.load_config(path) == cfg
    assert pl.load_config(pl.save_config(PipelineConfig(), tmp_path / f"d{suffix}")) == PipelineConfig()


def test_load_config_errors_name_the_problem(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[stage1]\nnum_chain = 2\n")
    with pytest.raises(ConfigError, match="num_chain"):
        pl.load_config(bad)
    broken = tmp_path / "broken.toml"
    broken.write_text("[stage1\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        pl.load_config(broken)
    with pytest.raises(ConfigError, match="not found"):
        pl.load_config(tmp_path / "missing.toml")
    with pytest.raises(ConfigError, match=r"\.toml or \.json"):
        pl.load_config(bad.rename(tmp_path / "cfg.yaml"))


def test_attribution_check_detects_bypass():
    rng = np.random.default_rng(1)
    pip = np.zeros((5, 5))
    pip[0, 4] = pip[1, 4] = 0.95
    pip[2, 4] = pip[3, 4] = 0.05
    mask = np.zeros((5, 5), bool)
    mask[:4, 4] = True
    follows = np.stack([pip + rng.uniform(0, 0.01, (5, 5)) for _ in range(20)])
    bypass = np.stack([rng.uniform(0, 1, (5, 5)) * np.array([0.1, 0.1, 1, 1, 0])[:, None] for _ in range(20)])
    assert pl.attribution_check(follows, pip, mask)["verdict"] == "follows"
    assert pl.attribution_check(bypass, pip, mask)["verdict"] == "does not follow"


def test_reference_forecasts_fit_fewer_lags_on_a_short_training_region(sim):
    """A short training region lowers the AR's lag count instead of failing at the end of a long run."""
    short = sim.panel.subset([0])
    trimmed = type(short)(short.values[:, :14], short.nodes, short.roles, train_steps=11)
    w = forecast_windows(trimmed.scaled, history=4, horizon=3, split="test")
    ref = pl._reference_forecasts(trimmed, w, 3, 7)
    # 14 steps: the test region starts at 14 - max(3, ceil(2.8)) = 11; one shop needs 11 - p >= p + 1, so p <= 4
    assert ref["ls_ar_lags"] == 4 and np.isfinite(ref["ls_ar"])
    tiny = type(short)(short.values[:, :5], short.nodes, short.roles, train_steps=2)
    w_tiny = forecast_windows(tiny.scaled, history=1, horizon=3, split="test")
    ref_tiny = pl._reference_forecasts(tiny, w_tiny, 3, 7)  # 2 fitting steps: not even AR(1) fits
    assert ref_tiny["ls_ar"] is None and ref_tiny["ls_ar_lags"] is None
    assert pl._forecast_skill(0.0, ref_tiny, 3, []) == {"persistence": True, "flat_mean": True}  # no AR key
