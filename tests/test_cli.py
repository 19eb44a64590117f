"""``dice-prob`` CLI: bad input gives one actionable line and a non-zero exit; CSV runs match the Python API."""

from __future__ import annotations

import io
import subprocess
import sys
import warnings
from pathlib import Path

import jax
import numpy as np
import pytest

from dice_prob import cli
from dice_prob.config import DecoderConfig, DiagnosticsConfig, PipelineConfig, Stage1Config
from dice_prob.data import Panel, simulate
from dice_prob.data.io import write_csv
from dice_prob.errors import ConvergenceWarning
from dice_prob.pipeline import load_config, load_result, run_pipeline, save_config

#: tests/test_pipeline.py's tiny settings (same shapes and sizes, so the compiled programs that file leaves in the
#: test run's JAX compilation cache are loaded here, not compiled again), without the comparison decoder.
TINY = PipelineConfig(
    stage1=Stage1Config(n_lags=2, num_warmup=50, num_samples=50, num_chains=1, progress_bar=False),
    decoder=DecoderConfig(
        hidden_size=8, message_size=4, embed_size=4, history=10, max_epochs=3, patience=3, progress_bar=False
    ),
    diagnostics=DiagnosticsConfig(n_graph_samples=8, n_windows=8),
    comparison_decoders=(),
)
ROLE_ARGS = ["--channels", "ch0", "ch1", "ch2", "ch3", "ch4", "--intermediates", "mid0", "mid1"]


@pytest.fixture(scope="module")
def sim():
    return simulate.funnel(jax.random.key(3), n_shops=2, n_steps=60, n_lags=2, mode="linear")


@pytest.fixture
def wide_csv(sim, tmp_path):
    return write_csv(sim.panel, tmp_path / "data.csv", layout="wide")


def _run_args(csv, out, *extra):
    return [
        "run",
        str(csv),
        "--time",
        "time",
        "--shop",
        "shop",
        "--target",
        "target",
        *ROLE_ARGS,
        "--out",
        str(out),
        *extra,
    ]


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip() and not line.startswith("[dice-prob")]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    assert lines[0].startswith("dice-prob: error: ")
    return lines[0]


def test_missing_file(tmp_path, capsys):
    rc = cli.main(_run_args(tmp_path / "nope.csv", tmp_path / "out"))
    assert rc != 0
    line = _one_error_line(capsys)
    assert "nope.csv" in line and "not found" in line
    assert not (tmp_path / "out").exists()


def test_unknown_column(wide_csv, tmp_path, capsys):
    args = _run_args(wide_csv, tmp_path / "out")
    args[args.index("--target") + 1] = "revenue"
    assert cli.main(args) != 0
    line = _one_error_line(capsys)
    assert "revenue" in line and "--target" in line


def test_unknown_shop_column(wide_csv, tmp_path, capsys):
    args = _run_args(wide_csv, tmp_path / "out")
    args[args.index("--shop") + 1] = "store"
    assert cli.main(args) != 0
    assert "store" in _one_error_line(capsys)


def test_nan_in_data(sim, tmp_path, capsys):
    df = sim.panel.to_frame("wide")
    df.loc[17, "mid0"] = np.nan
    path = tmp_path / "nan.csv"
    df.to_csv(path, index=False)
    assert cli.main(_run_args(path, tmp_path / "out")) != 0
    line = _one_error_line(capsys)
    assert "mid0" in line and "missing" in line


def test_too_few_rows(sim, tmp_path, capsys):
    short = sim.panel.to_frame("wide")
    short = short[short["time"] < 20]
    path = tmp_path / "short.csv"
    short.to_csv(path, index=False)
    assert cli.main(_run_args(path, tmp_path / "out")) != 0
    line = _one_error_line(capsys)
    assert "20 time steps" in line and "history" in line


def test_bad_config_key(wide_csv, tmp_path, capsys):
    cfg = tmp_path / "cfg.toml"
    cfg.write_text("[decoder]\nhiden_size = 8\n")
    assert cli.main(_run_args(wide_csv, tmp_path / "out", "--config", str(cfg))) != 0
    line = _one_error_line(capsys)
    assert "hiden_size" in line and "hidden_size" in line


def test_bad_config_value(wide_csv, tmp_path, capsys):
    cfg = tmp_path / "cfg.json"
    cfg.write_text('{"stage1": {"num_chains": 0}}')
    assert cli.main(_run_args(wide_csv, tmp_path / "out", "--config", str(cfg))) != 0
    assert "num_chains" in _one_error_line(capsys)


def test_report_of_missing_folder(tmp_path, capsys):
    assert cli.main(["report", str(tmp_path / "none")]) != 0
    assert "not found" in _one_error_line(capsys)


def test_out_folder_with_foreign_files_is_refused_before_running(wide_csv, tmp_path, capsys, monkeypatch):
    from dice_prob import pipeline

    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    monkeypatch.setattr(pipeline, "run_pipeline", lambda *a, **k: pytest.fail("must not run"))
    assert cli.main(_run_args(wide_csv, out)) != 0
    assert "not a dice_prob result folder" in _one_error_line(capsys)
    assert (out / "notes.txt").read_text() == "keep me"


def test_debug_shows_the_traceback(tmp_path):
    with pytest.raises(ValueError, match="not found"):
        cli.main(["--debug", *_run_args(tmp_path / "nope.csv", tmp_path / "out")])


def test_bench_lists_and_rejects(capsys, monkeypatch):
    assert cli.main(["bench"]) == 0
    assert "demo_timing" in capsys.readouterr().out
    assert cli.main(["bench", "no_such_benchmark"]) != 0
    assert "no_such_benchmark" in _one_error_line(capsys)
    monkeypatch.setattr(cli, "benchmarks_dir", lambda: None)
    assert cli.main(["bench", "demo_timing"]) != 0
    assert "no benchmarks/ folder" in _one_error_line(capsys)


def test_bench_lists_the_suite_and_rejects_out_for_old_scripts(capsys):
    assert cli.main(["bench"]) == 0
    out = capsys.readouterr().out
    assert "all" in out and all(n in out for n in cli.BENCH_SUITE)
    assert cli.main(["bench", "demo_timing", "--out", "somewhere"]) == 2
    assert "--out is only understood by the suite" in _one_error_line(capsys)


_STUB = """import json, pathlib, sys
args = sys.argv[1:]
out = pathlib.Path(args[args.index("--out") + 1]) if "--out" in args else None
if out is not None:
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "calls.jsonl", "a") as fh:
        fh.write(json.dumps({"name": pathlib.Path(sys.argv[0]).stem, "args": args}) + "\\n")
FAIL
"""


def _stub_suite(tmp_path, failing=()):
    bdir = tmp_path / "benchmarks"
    bdir.mkdir()
    for name in (*cli.BENCH_SUITE, "unrelated"):
        body = "raise RuntimeError('boom')" if name in failing else "print('target not met: reported only')"
        (bdir / f"{name}.py").write_text(_STUB.replace("FAIL", body))
    return bdir


def _calls(out):
    import json

    return [json.loads(line) for line in (out / "calls.jsonl").read_text().splitlines()]


def test_bench_all_runs_the_suite_in_order_with_fast_and_out(tmp_path, monkeypatch, capsys):
    bdir = _stub_suite(tmp_path)
    monkeypatch.setattr(cli, "benchmarks_dir", lambda: bdir)
    out = tmp_path / "res"
    assert cli.main(["bench", "all", "--fast", "--out", str(out)]) == 0
    calls = _calls(out)
    assert [c["name"] for c in calls] == list(cli.BENCH_SUITE)  # "unrelated" is not part of the suite
    assert all(c["args"] == ["--fast", "--out", str(out.resolve())] for c in calls)
    assert "bench all:" in capsys.readouterr().err


def test_bench_resume_reaches_only_the_scripts_that_save_seeds(tmp_path, monkeypatch, capsys):
    bdir = _stub_suite(tmp_path)
    monkeypatch.setattr(cli, "benchmarks_dir", lambda: bdir)
    out = tmp_path / "res"
    assert cli.main(["bench", "all", "--resume", "--out", str(out)]) == 0
    got = {c["name"]: c["args"] for c in _calls(out)}
    assert list(got) == list(cli.BENCH_SUITE)
    for name, a in got.items():
        assert ("--resume" in a) == (name in cli.BENCH_RESUMABLE), (name, a)
    assert "recovery_rdt" not in cli.BENCH_RESUMABLE and "speed" not in cli.BENCH_RESUMABLE
    capsys.readouterr()
    # a single script that cannot resume is refused with the way to continue it
    assert cli.main(["bench", "recovery_rdt", "--resume"]) == 2
    assert "--merge" in _one_error_line(capsys)


def test_bench_all_fails_on_an_exception_but_runs_the_rest(tmp_path, monkeypatch, capfd):
    bdir = _stub_suite(tmp_path, failing=("graph_swap",))
    monkeypatch.setattr(cli, "benchmarks_dir", lambda: bdir)
    out = tmp_path / "res"
    assert cli.main(["bench", "all", "--out", str(out)]) == 1
    assert [c["name"] for c in _calls(out)] == list(cli.BENCH_SUITE)  # every script started
    err = capfd.readouterr().err
    assert "failed: graph_swap (exit 1)" in err
    assert "Traceback" in err  # the failing script's own traceback stays visible


_TIMED_STUB = """import json, os, pathlib, sys, time
args = sys.argv[1:]
out = pathlib.Path(args[args.index("--out") + 1])
out.mkdir(parents=True, exist_ok=True)
t0 = time.time()
time.sleep(0.4)
with open(out / "calls.jsonl", "a") as fh:
    fh.write(json.dumps({"name": pathlib.Path(sys.argv[0]).stem, "start": t0, "end": time.time(),
                         "jobs": os.environ.get("DICE_PROB_BENCH_JOBS"),
                         "cache": os.environ.get("JAX_COMPILATION_CACHE_DIR")}) + "\\n")
print("done", pathlib.Path(sys.argv[0]).stem)
"""


def _run_timed_suite(tmp_path, monkeypatch, *flags):
    bdir = tmp_path / "benchmarks"
    bdir.mkdir()
    for name in cli.BENCH_SUITE:
        (bdir / f"{name}.py").write_text(_TIMED_STUB)
    monkeypatch.setattr(cli, "benchmarks_dir", lambda: bdir)
    monkeypatch.delenv("JAX_COMPILATION_CACHE_DIR", raising=False)
    out = tmp_path / "res"
    assert cli.main(["bench", "all", *flags, "--jobs", "2", "--out", str(out)]) == 0
    calls = {c["name"]: c for c in _calls(out)}
    assert set(calls) == set(cli.BENCH_SUITE)
    # one temporary compilation cache for all of them, removed afterwards
    caches = {c["cache"] for c in calls.values()}
    assert len(caches) == 1 and not Path(caches.pop()).exists()
    return calls


def _check_two_at_a_time(calls, names):
    spans = [(calls[n]["start"], calls[n]["end"]) for n in names]
    assert any(a[0] < b[1] and b[0] < a[1] for i, a in enumerate(spans) for b in spans[i + 1 :])
    for t in (s for s, _ in spans):
        assert sum(s <= t < e for s, e in spans) <= 2
    return spans


def test_bench_all_jobs_runs_scripts_side_by_side_and_speed_alone(tmp_path, monkeypatch, capsys):
    """A full run: two at a time, longest first, and speed (wall times, peak memory) alone at the end."""
    assert sorted(cli.BENCH_JOBS_ORDER) == sorted(cli.BENCH_SUITE)
    calls = _run_timed_suite(tmp_path, monkeypatch)
    shared = [n for n in cli.BENCH_SUITE if n not in cli.BENCH_SOLO]
    spans = _check_two_at_a_time(calls, shared)
    # speed runs alone after every other script; graph_swap waits for sparse_target (whose programs it loads)
    assert calls["speed"]["start"] >= max(e for _, e in spans)
    assert calls["graph_swap"]["start"] >= calls["sparse_target"]["end"]
    # the two longest start first
    first_two = sorted(shared, key=lambda n: calls[n]["start"])[:2]
    assert set(first_two) == set(cli.BENCH_JOBS_ORDER[:2])
    # the side-by-side scripts know it (their tables say their timings were contended); speed does not
    assert {calls[n]["jobs"] for n in shared} == {"2"} and calls["speed"]["jobs"] is None
    err = capsys.readouterr().err
    assert all(f"done {n}" in err for n in shared)  # each script's output is printed when it ends
    assert "bench all:" in err


def test_bench_all_fast_jobs_runs_speed_beside_the_others(tmp_path, monkeypatch, capsys):
    """--fast is a smoke run: speed does not wait for the others, and its table is told it was contended."""
    calls = _run_timed_suite(tmp_path, monkeypatch, "--fast")
    _check_two_at_a_time(calls, cli.BENCH_SUITE)
    assert calls["speed"]["start"] < max(c["end"] for n, c in calls.items() if n != "speed")
    assert calls["graph_swap"]["start"] >= calls["sparse_target"]["end"]
    assert {c["jobs"] for c in calls.values()} == {"2"}
    assert "bench all:" in capsys.readouterr().err


def test_bench_jobs_is_validated(capsys):
    assert cli.main(["bench", "all", "--jobs", "0"]) == 2
    assert "--jobs 0" in _one_error_line(capsys)
    assert cli.main(["bench", "recovery_rdt", "--jobs", "2"]) == 2
    assert "only with 'all'" in _one_error_line(capsys)


def test_bench_all_needs_every_suite_script(tmp_path, monkeypatch, capsys):
    bdir = _stub_suite(tmp_path)
    (bdir / "speed.py").unlink()
    monkeypatch.setattr(cli, "benchmarks_dir", lambda: bdir)
    assert cli.main(["bench", "all", "--fast"]) == 2
    assert "['speed']" in _one_error_line(capsys)


def test_console_script_bad_input_has_no_traceback(tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "dice_prob.cli",
            "run",
            str(tmp_path / "x.csv"),
            "--time",
            "t",
            "--target",
            "y",
            "--out",
            str(tmp_path / "o"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [
        f"dice-prob: error: DATA: file '{tmp_path / 'x.csv'}' not found; pass the path of an existing CSV file"
    ]


@pytest.mark.slow
def test_run_on_csv_matches_python_api(sim, tmp_path, capsys):
    """Long and wide CSVs through ``dice-prob run`` give the same PIPs as run_pipeline with the same key."""
    cfg_path = save_config(TINY, tmp_path / "cfg.toml")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        api = run_pipeline(jax.random.key(11), sim.panel, config=TINY)
    # wide runs with the CLI's default shop centring, long with --centre pooled (the API's default); Stage 1 has an
    # intercept per shop, so its PIPs are the same either way
    for layout, centre in (("wide", "shop"), ("long", "pooled")):
        csv = write_csv(sim.panel, tmp_path / f"{layout}.csv", layout=layout)
        out = tmp_path / f"out_{layout}"
        args = _run_args(
            csv, out, "--config", str(cfg_path), "--seed", "11", "--context", "context0", "context1"
        )
        if centre == "pooled":
            args += ["--centre", "pooled"]
        assert cli.main(args) == 0, capsys.readouterr().err
        res = load_result(out)
        assert res.panel.centre == centre  # saved and restored with the result
        shop_means = res.panel.scaled[:, : res.panel.train_steps].mean(axis=1)
        assert np.allclose(shop_means, 0.0, atol=1e-9) == (centre == "shop")
        np.testing.assert_allclose(res.pip, api.pip, atol=1e-6)
        np.testing.assert_array_equal(res.panel.values, sim.panel.values)
        assert res.panel.train_steps == sim.panel.train_steps
        assert "no true graph" in " ".join(res.summary["notes"])
        assert "dice-prob summary" in capsys.readouterr().out
    # `report DIR` rebuilds the HTML from the saved folder
    (out / "report.html").unlink()
    assert cli.main(["report", str(out)]) == 0
    assert "Attribution check" in (out / "report.html").read_text()


@pytest.mark.slow
def test_demo_fast_writes_a_complete_report(tmp_path):
    out = tmp_path / "demo"
    proc = subprocess.run(
        [sys.executable, "-m", "dice_prob.cli", "demo", "--fast", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "dice-prob summary" in proc.stdout
    html = (out / "report.html").read_text()
    for heading in ("What was run", "Posterior graph", "Forecast", "Graph swap", "Attribution check"):
        assert heading in html
    assert (out / "summary.json").exists()


def _summary_of(conv: dict) -> str:
    """print_summary's text for a result that holds only a summary (no fit needed to test the formatting)."""
    from types import SimpleNamespace

    res = SimpleNamespace(
        summary={"convergence": conv, "data": {"shape": [1, 100, 4], "target": "y"}},
        config=SimpleNamespace(diagnostics=SimpleNamespace(hdi_prob=0.94, horizon=7)),
        panel=SimpleNamespace(shape=(1, 100, 4), target="y"),
        tables={},
    )
    buf = io.StringIO()
    cli.print_summary(res, None, file=buf)
    return buf.getvalue()


def test_summary_reports_flip_move_acceptance_only_when_moves_ran():
    base = {"ok": False, "max_r_hat": 1.2, "min_ess": 40.0, "n_divergences": 0}
    with_moves = _summary_of({**base, "flip_accept_rate": 0.137, "flip_accept_min_node": 0.021})
    assert (
        "max r_hat 1.200, min ESS 40, divergences 0; flip moves accepted 0.14 (lowest node 0.02)"
        in with_moves
    )
    without = _summary_of({**base, "flip_accept_rate": None, "flip_accept_min_node": None})
    assert "convergence  POOR: max r_hat 1.200" in without and "flip" not in without


def test_summary_names_chains_that_settled_in_different_modes():
    base = {"ok": False, "max_r_hat": 4.2e8, "min_ess": 2.0, "n_divergences": 0}
    split = {"n_graphs": 6, "graphs": [1, 4], "pi_by_chain": [[0.86, 0.04]], "slab_by_chain": [[0.04, 1.8]]}
    text = _summary_of({**base, "chain_split": split})
    assert "different modes on 2 of 6 graph(s) (graph 1: pi by chain 0.86/0.04, slab sd 0.04/1.8)" in text
    assert "different modes" not in _summary_of({**base, "chain_split": None})
    edge = {"n_edges": 2, "edges": [{"graph": 0, "source": "tv", "target": "sales", "by_chain": [0.0, 1.0]}]}
    text = _summary_of({**base, "chain_split": None, "edge_split": edge})
    assert "disagree on 2 edge(s) (graph 0, tv -> sales: inclusion by chain 0.00/1.00)" in text


def test_run_without_config_reads_non_negative_channels_as_spends(sim, tmp_path, monkeypatch, capsys):
    """No --config: spend channels (all >= 0) get the demo's Stage 1 setting (log1p, lag_decay=1), a channel
    with a negative value the package defaults; the choice is logged. An explicit --config is used as given."""
    import dice_prob.pipeline as pipeline

    seen = []

    def fake_run(rng_key, panel, *, config, truth=None, log=None):
        seen.append(config)
        raise KeyboardInterrupt  # stop before any fitting: only the chosen config is under test

    monkeypatch.setattr(pipeline, "run_pipeline", fake_run)
    values = np.asarray(sim.panel.values)
    channels = [i for i, r in enumerate(sim.panel.roles) if r == "channel"]
    assert values[:, :, channels].min() < 0  # the linear funnel's channels are not spends
    spends = values.copy()
    spends[:, :, channels] = np.abs(spends[:, :, channels])
    spend_panel = Panel(spends, sim.panel.nodes, sim.panel.roles, sim.panel.context)
    panels = {"signed": sim.panel, "spend": spend_panel}
    for name, panel in panels.items():
        csv = write_csv(panel, tmp_path / f"{name}.csv", layout="wide")
        assert cli.main(_run_args(csv, tmp_path / f"out_{name}")) == cli.EXIT_INTERRUPTED
    signed, spend = seen
    assert (signed.stage1.channel_transform, signed.stage1.lag_decay) == ("none", 0.0)
    assert (spend.stage1.channel_transform, spend.stage1.lag_decay, spend.stage1.mode) == (
        "log1p",
        1.0,
        "linear",
    )
    default = PipelineConfig().decoder.replace(progress_bar=False)  # no terminal here: bars off
    assert signed.decoder == spend.decoder == default
    err = capsys.readouterr().err
    assert "negative values" in err and "log1p channels" in err
    cfg_path = save_config(TINY, tmp_path / "cfg.toml")
    csv = tmp_path / "spend.csv"
    assert cli.main(_run_args(csv, tmp_path / "out_cfg", "--config", str(cfg_path))) == cli.EXIT_INTERRUPTED
    assert seen[-1].stage1.channel_transform == "none" and seen[-1].stage1.n_lags == TINY.stage1.n_lags


@pytest.mark.parametrize("n_steps", [20, 26, 36, 44, 100])
def test_run_without_config_shortens_the_decoder_history_on_a_short_series(n_steps):
    """Without --config a short series gets the longest history that keeps 8 training windows per shop (never
    below ar_lags); a series long enough for the default, or too short even for ar_lags, keeps history 21."""
    import re

    from dice_prob.data.windows import window_origins
    from dice_prob.errors import DataValidationError
    from dice_prob.pipeline import _validate_inputs

    x = np.abs(np.random.default_rng(0).normal(size=(2, n_steps, 3)))
    panel = Panel(x, roles=["channel", "channel", "target"])
    cfg, note = cli.run_config(panel)
    dec = cfg.decoder
    default = PipelineConfig().decoder

    def n_train(history):
        return window_origins(n_steps, history=history, horizon=dec.horizon, split="train").size

    assert cfg.stage1 == PipelineConfig().stage1.replace(**cli.SPEND_STAGE1)  # only the history may change
    assert dec.replace(history=default.history) == default
    if dec.history == default.history:
        assert "history" not in note
    else:
        assert re.search(
            rf"history {dec.history} instead of 21, .* keep {n_train(dec.history)} training", note
        )
        assert dec.ar_lags <= dec.history < default.history
        assert n_train(dec.history) >= 8 or dec.history == dec.ar_lags
        assert n_train(dec.history + 1) < 8  # the longest history that keeps 8 windows
    expected = {20: 21, 26: 7, 36: 14, 44: 21, 100: 21}[n_steps]
    assert dec.history == expected
    if n_steps == 20:
        # even ar_lags leaves too few windows: the pipeline names the field and a value that fits
        with pytest.raises(
            DataValidationError, match=r"DecoderConfig.history: 20 time steps .* <= (\d+)"
        ) as err:
            _validate_inputs(panel, cfg, None)
        fits = int(re.search(r"<= (\d+)", str(err.value)).group(1))
        assert n_train(fits) >= 2 and n_train(fits + 1) < 2
        _validate_inputs(panel, cfg.replace(decoder=dec.replace(history=fits)), None)
    else:
        _validate_inputs(panel, cfg, None)
    if n_steps == 36:  # the default history would fail before Stage 1 runs
        with pytest.raises(
            DataValidationError, match="DecoderConfig.history: 36 time steps leave 1 training"
        ):
            _validate_inputs(panel, PipelineConfig(), None)


def test_the_readme_recipe_for_a_fixed_slab_refit_keeps_the_run_s_spend_setting(tmp_path):
    """README: edit DIR/config.toml (written as save_config writes it) to the fixed slab grid and pass it back."""
    x = np.abs(np.random.default_rng(0).normal(size=(2, 60, 3)))
    cfg, _ = cli.run_config(Panel(x, roles=["channel", "channel", "target"]))
    text = save_config(cfg, tmp_path / "config.toml").read_text()
    assert text.count("learn_slab = true") == 1 and text.count("slab_grid = [1.0]") == 1
    edited = text.replace("learn_slab = true", "learn_slab = false").replace(
        "slab_grid = [1.0]", "slab_grid = [0.1, 0.3, 1.0]"
    )
    (tmp_path / "edited.toml").write_text(edited)
    refit = load_config(tmp_path / "edited.toml")
    assert refit.stage1 == cfg.stage1.replace(learn_slab=False, slab_grid=(0.1, 0.3, 1.0))
    assert (refit.stage1.channel_transform, refit.stage1.lag_decay) == ("log1p", 1.0)
    assert refit.decoder == cfg.decoder
