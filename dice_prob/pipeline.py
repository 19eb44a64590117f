"""End-to-end pipeline: data -> Stage 1 graph posterior -> Stage 2 decoder -> diagnostics -> saved result.

``run_pipeline(rng_key, panel, config=PipelineConfig())`` runs every stage and returns a
:class:`PipelineResult`; ``PipelineResult.save(dir)`` writes it atomically (netCDF with every draw,
``summary.json``, tidy CSV tables, PNG figures, the decoder checkpoint) and :func:`load_result` reads it back
without pickle. ``summary.json`` is written last, inside a temporary folder that is renamed into place, so its
presence means the folder is complete.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import importlib
import importlib.metadata
import io
import json
import math
import os
import platform
import sys
import time
import tomllib
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from dice_prob._io_atomic import COMPLETE_MARKER, atomic_directory, atomic_write_text
from dice_prob.config import PipelineConfig
from dice_prob.data.panel import Panel
from dice_prob.data.windows import (
    DEFAULT_TEST_FRACTION,
    holdout_origins,
    max_history,
    min_train_origins,
    test_start,
    window_origins,
)
from dice_prob.errors import (
    ConfigError,
    DataValidationError,
    DiceProbError,
    ForecastSkillWarning,
    InputTypeError,
)
from dice_prob.graph import validate_adjacency

__all__ = [
    "PipelineResult",
    "load_config",
    "load_result",
    "run_pipeline",
    "save_config",
]

RESULT_FORMAT = 1
_VERSION_PACKAGES = (
    "dice-prob",
    "jax",
    "jaxlib",
    "numpyro",
    "equinox",
    "optax",
    "arviz",
    "xarray",
    "numpy",
    "pandas",
    "matplotlib",
    "networkx",
    "scikit-learn",
)


# ====================================================================================== config I/O
def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v) or math.isinf(v):
            raise ConfigError(f"config: {v!r} cannot be written to TOML; use a finite number")
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)  # a JSON string is a valid TOML basic string
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise ConfigError(f"config: value {v!r} of type {type(v).__name__} cannot be written to TOML")


def _to_toml(data: dict, prefix: str = "") -> str:
    """A minimal TOML writer for nested dicts of scalars and lists (``None`` values are omitted)."""
    lines = []
    tables = []
    for k, v in data.items():
        if v is None:
            continue
        if isinstance(v, dict):
            tables.append((k, v))
        else:
            lines.append(f"{k} = {_toml_value(v)}")
    out = ""
    if prefix and (lines or not tables):
        out += f"[{prefix}]\n"
    out += "".join(line + "\n" for line in lines)
    for k, v in tables:
        name = f"{prefix}.{k}" if prefix else k
        out += ("\n" if out else "") + _to_toml(v, name)
    return out


def save_config(config: PipelineConfig, path: str | os.PathLike) -> Path:
    """Write ``config`` to ``path`` as TOML (``.toml``) or JSON (any other suffix), atomically.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from dice_prob.config import PipelineConfig
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "cfg.toml"
    >>> cfg = PipelineConfig().replace(n_decoder_seeds=2)
    >>> load_config(save_config(cfg, p)) == cfg
    True
    """
    if not isinstance(config, PipelineConfig):
        raise InputTypeError(f"config: expected a PipelineConfig, got {type(config).__name__}")
    path = Path(path)
    if path.suffix.lower() == ".toml":
        text = _to_toml(config.to_dict())
    else:
        text = config.to_json() + "\n"
    return atomic_write_text(path, text)


def load_config(path: str | os.PathLike) -> PipelineConfig:
    """Read a :class:`PipelineConfig` from a TOML (``.toml``) or JSON (``.json``) file.

    Missing keys take their defaults; unknown keys and out-of-range values raise
    :class:`~dice_prob.errors.ConfigError` naming the key.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "c.toml"
    >>> _ = p.write_text("[stage1]\\nnum_chains = 1\\n")
    >>> load_config(p).stage1.num_chains
    1
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config: file {str(path)!r} not found; pass an existing .toml or .json file")
    suffix = path.suffix.lower()
    text = path.read_text(encoding="utf-8")
    if suffix == ".toml":
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config: {path.name} is not valid TOML ({exc})") from exc
    elif suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"config: {path.name} is not valid JSON ({exc})") from exc
    else:
        raise ConfigError(f"config: {path.name} must end in .toml or .json")
    return PipelineConfig.from_dict(data)


# ====================================================================================== small helpers
def _key_data(key) -> list[int]:
    """The raw uint32 words of a key (typed ``jax.random.key`` or legacy ``PRNGKey``)."""
    k = jnp.asarray(key) if not hasattr(key, "dtype") else key
    if jnp.issubdtype(k.dtype, jax.dtypes.prng_key):
        k = jax.random.key_data(k)
    return [int(x) for x in np.asarray(k).reshape(-1)]


def _check_key(rng_key):
    if rng_key is None:
        raise InputTypeError("rng_key: pass a key, e.g. jax.random.key(0); nothing random runs without one")
    try:
        dtype = rng_key.dtype
    except AttributeError:
        raise InputTypeError(
            f"rng_key: expected a jax.random.key/PRNGKey, got {type(rng_key).__name__}"
        ) from None
    if not (jnp.issubdtype(dtype, jax.dtypes.prng_key) or (dtype == jnp.uint32 and rng_key.shape == (2,))):
        raise InputTypeError(f"rng_key: expected a jax.random.key/PRNGKey, got dtype {dtype}")
    return rng_key


def package_versions() -> dict[str, str]:
    """Versions of Python, the platform and the scientific packages the result depends on.

    Examples
    --------
    >>> "jax" in package_versions()
    True
    """
    out = {"python": sys.version.split()[0], "platform": platform.platform()}
    for name in _VERSION_PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "not installed"
    out["jax_backend"] = jax.default_backend()
    return out


def _jsonable(o):
    if isinstance(o, dict):
        return {str(k): _jsonable(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_jsonable(v) for v in o]
    if isinstance(o, (np.bool_, bool)):
        return bool(o)
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, (np.floating, float)):
        f = float(o)
        return f if math.isfinite(f) else None
    if isinstance(o, np.ndarray):
        return _jsonable(o.tolist())
    if isinstance(o, jax.Array):
        return _jsonable(np.asarray(o).tolist())
    if o is None or isinstance(o, (str, int)):
        return o
    return str(o)


def _hdi(draws, prob: float) -> tuple[np.ndarray, np.ndarray]:
    """Highest-density interval over the first axis (ArviZ, through ``diagnostics.uncertainty.hdi``)."""
    from dice_prob.diagnostics import uncertainty

    x = np.asarray(draws, dtype=np.float64)
    h = uncertainty.hdi(x, prob, axis=0)
    return np.asarray(h[..., 0]), np.asarray(h[..., 1])


def _summ(draws, prob: float) -> dict[str, float]:
    x = np.asarray(draws, dtype=np.float64).reshape(-1)
    x = x[np.isfinite(x)]
    if x.size == 0:
        return {"mean": float("nan"), "sd": float("nan"), "hdi_low": float("nan"), "hdi_high": float("nan")}
    lo, hi = _hdi(x, prob)
    return {
        "mean": float(x.mean()),
        "sd": float(x.std(ddof=1)) if x.size > 1 else 0.0,
        "hdi_low": float(lo),
        "hdi_high": float(hi),
    }


def _rankdata(x: np.ndarray) -> np.ndarray:
    """Average ranks along the last axis (ties share their mean rank)."""
    from scipy.stats import rankdata

    return rankdata(x, axis=-1)


def _spearman(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Spearman rank correlation along the last axis (NaN when either side is constant)."""
    ra, rb = _rankdata(a), _rankdata(b)
    ra = ra - ra.mean(axis=-1, keepdims=True)
    rb = rb - rb.mean(axis=-1, keepdims=True)
    den = np.sqrt((ra**2).sum(-1) * (rb**2).sum(-1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, (ra * rb).sum(-1) / np.where(den > 0, den, 1.0), np.nan)


def _report_module():
    """``dice_prob.report`` the module (the package may re-export the ``report`` function under that name)."""
    return importlib.import_module("dice_prob.report")


def _stage(log: Callable[[str], None] | None, msg: str) -> None:
    if log is not None:
        log(msg)


# ====================================================================================== result
@dataclasses.dataclass
class PipelineResult:
    """Everything a pipeline run produced.

    The array/table fields are the saved record (they round-trip through :meth:`save` / :func:`load_result`);
    ``posterior``, ``decoder`` and ``swap`` hold the live objects of a fresh run (``decoder`` is also restored
    by :func:`load_result` from its checkpoint; ``posterior`` and ``swap`` are ``None`` after loading — their
    draws live in the netCDF files and tables).

    Attributes
    ----------
    config : PipelineConfig
    panel : Panel
    truth : ndarray or None
        The true graph ``(d, d)`` or ``(R, d, d)`` when known.
    pip : ndarray
        Posterior inclusion probabilities, ``(d, d)`` (shared graph) or ``(R|G, d, d)``.
    support_mask : ndarray of bool, shape (d, d)
    graph_samples : ndarray, shape (S, d, d) or (S, R, d, d)
        The posterior graph samples every diagnostic was computed under.
    cig, ar_cig : ndarray, shape (S, d, d)
        Influence graphs of the posterior-trained decoder, one per graph sample (per-shop posteriors are
        averaged over shops within a draw).
    mse7 : ndarray, shape (S,)
        Target MSE@H of the posterior-trained decoder on the test windows, one per graph sample.
    forecast : dict
        Fan-chart data of the target: ``time``, ``observed`` (raw units), ``origin`` index, ``draws`` (S, H).
    tables : dict of DataFrame
        ``edges``, ``influence``, ``graph_swap``, ``comparison``, ``forecast``.
    summary : dict
        Headline figures, config, versions, seeds, timings, convergence (the content of ``summary.json``).
    """

    config: PipelineConfig
    panel: Panel
    truth: np.ndarray | None
    pip: np.ndarray
    support_mask: np.ndarray
    graph_samples: np.ndarray
    cig: np.ndarray
    ar_cig: np.ndarray
    mse7: np.ndarray
    forecast: dict
    tables: dict
    summary: dict
    posterior: Any = None
    decoder: Any = None
    swap: Any = None
    comparison_ar_cig: dict = dataclasses.field(default_factory=dict)
    figures: dict = dataclasses.field(default_factory=dict)

    # ------------------------------------------------------------------ convenience
    @property
    def nodes(self) -> tuple[str, ...]:
        return tuple(self.panel.nodes)

    @property
    def has_truth(self) -> bool:
        return self.truth is not None

    @property
    def headline(self) -> dict:
        return self.summary.get("headline", {})

    def render_figures(self) -> dict[str, bytes]:
        """PNG bytes of every report figure (rendered once, then cached in ``figures``)."""
        if not self.figures:
            self.figures = _report_module().render_figures(self)
        return self.figures

    def __repr__(self) -> str:
        h = self.headline
        return (
            f"PipelineResult(data={tuple(self.panel.shape)}, draws={self.graph_samples.shape[0]}, "
            f"mse7={(h.get('mse7') or {}).get('mean')}, truth={'yes' if self.has_truth else 'no'})"
        )

    # ------------------------------------------------------------------ save
    def save(self, path: str | os.PathLike, *, report: bool = True) -> Path:
        """Write the result to folder ``path`` atomically.

        Files: ``draws.nc`` (every draw: graph samples, CIG, AR-CIG, MSE@H, forecast draws, PIPs),
        ``posterior.nc`` and ``graph_swap.nc`` (ArviZ groups, when the live objects are present), tables
        ``*.csv``, ``data.csv`` (the panel, wide), ``config.toml``, ``figures/*.png``, ``decoder/`` (checkpoint),
        ``report.html`` (with ``report=True``) and, last, ``summary.json``. Everything is built in a hidden
        temporary sibling folder and renamed into place; on any error the temporary folder is removed and
        ``path`` is left as it was.

        Returns
        -------
        pathlib.Path
            The result folder.
        """
        target = Path(path)
        with atomic_directory(target) as tmp:
            _write_result(self, tmp, report=report)
        return target.absolute()


# ====================================================================================== writing / reading
def _draws_dataset(res: PipelineResult):
    import xarray as xr

    nodes = list(res.nodes)
    n_draw = np.asarray(res.ar_cig).shape[0]
    coords = {
        "draw": np.arange(n_draw),
        "sample": np.arange(res.graph_samples.shape[0]),
        "source": nodes,
        "target": nodes,
    }
    data = {
        "cig": (("draw", "source", "target"), np.asarray(res.cig, dtype=np.float64)),
        "ar_cig": (("draw", "source", "target"), np.asarray(res.ar_cig, dtype=np.float64)),
        "mse7": (("draw",), np.asarray(res.mse7, dtype=np.float64)),
        "support_mask": (("source", "target"), np.asarray(res.support_mask, dtype=np.int8)),
    }
    g = np.asarray(res.graph_samples, dtype=np.int8)
    if g.ndim == 3:
        data["graph_samples"] = (("sample", "source", "target"), g)
    else:
        coords["unit"] = np.arange(g.shape[1])
        data["graph_samples"] = (("sample", "unit", "source", "target"), g)
    pip = np.asarray(res.pip, dtype=np.float64)
    if pip.ndim == 2:
        data["pip"] = (("source", "target"), pip)
    else:
        coords["pip_unit"] = np.arange(pip.shape[0])
        data["pip"] = (("pip_unit", "source", "target"), pip)
    if res.truth is not None:
        t = np.asarray(res.truth, dtype=np.int8)
        if t.ndim == 2:
            data["truth"] = (("source", "target"), t)
        else:
            coords["shop"] = np.arange(t.shape[0])
            data["truth"] = (("shop", "source", "target"), t)
    fd = np.asarray(res.forecast["draws"], dtype=np.float64)
    coords["horizon"] = np.arange(1, fd.shape[1] + 1)
    data["forecast_draws"] = (("draw", "horizon"), fd)
    for label, arr in res.comparison_ar_cig.items():
        a = np.asarray(arr, dtype=np.float64)
        dim = f"draw_{label}"
        coords[dim] = np.arange(a.shape[0])
        data[f"ar_cig_{label}"] = ((dim, "source", "target"), a)
    return xr.Dataset(data, coords=coords, attrs={"dice_prob_result_format": RESULT_FORMAT})


def _save_netcdf(obj, path: Path) -> None:
    """Write an xarray Dataset (h5netcdf) or an ArviZ InferenceData (via ``diagnostics.uncertainty``)."""
    import xarray as xr

    if isinstance(obj, xr.Dataset):
        obj.to_netcdf(path, engine="h5netcdf")
        return
    from dice_prob.diagnostics import uncertainty

    uncertainty.save_netcdf(obj, path)


def _write_result(res: PipelineResult, out: Path, *, report: bool) -> None:
    (out / "figures").mkdir()
    ds = _draws_dataset(res)
    _save_netcdf(ds, out / "draws.nc")
    if res.posterior is not None and hasattr(res.posterior, "to_arviz"):
        _save_netcdf(res.posterior.to_arviz(), out / "posterior.nc")
    if res.swap is not None and hasattr(res.swap, "to_arviz"):
        _save_netcdf(res.swap.to_arviz(), out / "graph_swap.nc")
    for name, table in res.tables.items():
        if isinstance(table, pd.DataFrame):
            table.to_csv(out / f"{name}.csv", index=False)
    res.panel.to_frame("wide").to_csv(out / "data.csv", index=False)
    (out / "config.toml").write_text(_to_toml(res.config.to_dict()), encoding="utf-8")
    (out / "forecast.json").write_text(json.dumps(_jsonable(res.forecast), indent=1), encoding="utf-8")
    for name, png in res.render_figures().items():
        (out / "figures" / f"{name}.png").write_bytes(png)
    if res.decoder is not None:
        res.decoder.save(out / "decoder")
    if report:
        _report_module().report(res, out / "report.html")
    # LAST: its presence marks a complete result
    summary = dict(res.summary)
    summary["files"] = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    summary["saved_at"] = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
    (out / COMPLETE_MARKER).write_text(json.dumps(_jsonable(summary), indent=2), encoding="utf-8")


def load_result(path: str | os.PathLike) -> PipelineResult:
    """Read a result folder written by :meth:`PipelineResult.save` (no pickle).

    Raises
    ------
    DataValidationError
        When ``path`` is not a complete result folder (no ``summary.json``).

    Examples
    --------
    >>> res = load_result("demo-out")  # doctest: +SKIP
    >>> res.pip.shape, res.summary["headline"]["mse7"]  # doctest: +SKIP
    """
    import xarray as xr

    root = Path(path)
    if not (root / COMPLETE_MARKER).is_file():
        raise DataValidationError(
            f"result: {root} is not a complete dice_prob result (no {COMPLETE_MARKER}); "
            "run `dice-prob demo` or `dice-prob run` to create one"
        )
    summary = json.loads((root / COMPLETE_MARKER).read_text(encoding="utf-8"))
    config = PipelineConfig.from_dict(summary["config"])
    info = summary["data"]
    frame = pd.read_csv(root / "data.csv")
    nodes = list(info["nodes"])
    r, t, d = info["shape"]
    values = frame[nodes].to_numpy(dtype=np.float64).reshape(r, t, d)
    ctx = None
    ctx_cols = [f"context{c}" for c in range(int(info.get("n_context", 0)))]
    if ctx_cols:
        ctx = frame[ctx_cols].to_numpy(dtype=np.float64).reshape(r, t, -1)[:, 0, :]
    panel = Panel(
        values,
        nodes,
        info["roles"],
        ctx,
        train_steps=info["train_steps"],
        centre=info.get("centre", "pooled"),  # results saved before the option existed are pooled
        shop_ids=list(frame["shop"].to_numpy()[::t]),
        time_index=list(frame["time"].to_numpy()[:t]),
    )
    with xr.open_dataset(root / "draws.nc", engine="h5netcdf") as ds:
        ds = ds.load()
    truth = ds["truth"].values.astype(np.float64) if "truth" in ds else None
    comparison = {
        name[len("ar_cig_") :]: ds[name].values
        for name in ds.data_vars
        if name.startswith("ar_cig_") and name != "ar_cig"
    }
    forecast = json.loads((root / "forecast.json").read_text(encoding="utf-8"))
    forecast["draws"] = np.asarray(forecast["draws"], dtype=np.float64)
    tables = {}
    for name in summary.get("tables", []):
        p = root / f"{name}.csv"
        if p.is_file():
            tables[name] = pd.read_csv(p)
    figures = {p.stem: p.read_bytes() for p in sorted((root / "figures").glob("*.png"))}
    decoder = None
    if (root / "decoder").exists():
        try:
            from dice_prob.inference.train import TrainedDecoder

            decoder = TrainedDecoder.load(root / "decoder")
        except Exception as exc:  # a checkpoint from another version must not block reading the rest
            warnings.warn(
                f"decoder checkpoint could not be loaded ({exc}); result.decoder is None", stacklevel=2
            )
    return PipelineResult(
        config=config,
        panel=panel,
        truth=truth,
        pip=ds["pip"].values,
        support_mask=ds["support_mask"].values.astype(bool),
        graph_samples=ds["graph_samples"].values.astype(np.float32),
        cig=ds["cig"].values,
        ar_cig=ds["ar_cig"].values,
        mse7=ds["mse7"].values,
        forecast=forecast,
        tables=tables,
        summary=summary,
        decoder=decoder,
        comparison_ar_cig=comparison,
        figures=figures,
    )


# ====================================================================================== pipeline stages
def _validate_inputs(panel, config, truth):
    if not isinstance(panel, Panel):
        raise InputTypeError(f"panel: expected a dice_prob.Panel, got {type(panel).__name__}")
    if not isinstance(config, PipelineConfig):
        raise InputTypeError(f"config: expected a dice_prob.PipelineConfig, got {type(config).__name__}")
    d = panel.n_nodes
    s1, dec, diag = config.stage1, config.decoder, config.diagnostics
    panel.require_steps(s1.n_lags + 2, f"Stage 1 with n_lags {s1.n_lags}")
    horizon = max(dec.horizon, diag.horizon)
    # enough training windows for the early-stopping hold-out (and so a test window) must exist under the one split
    # convention; checked here so that a too-long history fails before Stage 1 runs, naming the field to change
    n_train = max_history(panel.n_steps, horizon) - dec.history + 1
    if n_train - holdout_origins(n_train, dec.val_fraction) < 1:
        fits = max_history(panel.n_steps, horizon, min_origins=min_train_origins(dec.val_fraction))
        fix = f"set DecoderConfig.history <= {fits}" if fits >= 1 else "use a longer series"
        raise DataValidationError(
            f"DecoderConfig.history: {panel.n_steps} time steps leave {max(n_train, 0)} training window "
            f"origin(s) for history {dec.history} and horizon {horizon} (the last "
            f"{panel.n_steps - test_start(panel.n_steps, DEFAULT_TEST_FRACTION, horizon)} steps are the test "
            f"region), too few to hold out val_fraction {dec.val_fraction} for early stopping; {fix}"
        )
    window_origins(panel.n_steps, history=dec.history, horizon=horizon, split="test")
    if s1.mode == "mmm" or s1.channel_transform == "log1p":
        panel.require_nonnegative("channel")
    if truth is not None:
        truth = validate_adjacency(truth, d, name="truth", allow_batch=True)
        if truth.ndim == 3 and truth.shape[0] != panel.n_shops:
            raise DataValidationError(
                f"truth: {truth.shape[0]} graphs for {panel.n_shops} shops; give one (d, d) graph or one per shop"
            )
        if truth.ndim > 3:
            raise DataValidationError(f"truth: expected (d, d) or (R, d, d), got shape {truth.shape}")
        truth = (truth != 0).astype(np.float64)
    if s1.graph_sharing == "group" and s1.groups is not None and len(s1.groups) != panel.n_shops:
        raise ConfigError(
            f"Stage1Config.groups: {len(s1.groups)} group labels for {panel.n_shops} shops; give one per shop"
        )
    return truth


def _shop_graphs(graphs: np.ndarray, posterior, n_shops: int) -> np.ndarray:
    """Map posterior graph samples to one graph per shop: (S, d, d) -> (S, 1, d, d); (S, G, d, d) -> (S, R, d, d)."""
    g = np.asarray(graphs, dtype=np.float32)
    if g.ndim == 3:
        return g[:, None]
    if getattr(posterior, "sharing", "shop") == "group" and g.shape[1] != n_shops:
        groups = np.asarray(posterior.groups, dtype=int)
        return g[:, groups]
    return g


def _truth_per_shop(truth: np.ndarray | None, n_shops: int) -> np.ndarray | None:
    if truth is None:
        return None
    t = np.asarray(truth)
    return np.broadcast_to(t, (n_shops, *t.shape[-2:])) if t.ndim == 2 else t


def _influence(decoder, panel: Panel, graphs, cfg, rng_key, *, horizon: int):
    """One jitted influence computation: scores, per-window scores, forecasts and windows."""
    from dice_prob.diagnostics.influence import influence

    return influence(
        decoder,
        panel,
        graphs,
        horizon=horizon,
        delta=cfg.delta,
        method=cfg.method,
        n_windows=cfg.n_windows,
        rng_key=rng_key,
    )


def _reference_forecasts(panel: Panel, windows, horizon: int, n_lags: int) -> dict:
    """Target MSE@h of the reference forecasts on the decoder's own test windows (standardised units).

    The shop means and the least-squares AR(p) (shared lags, an intercept per shop, since shops differ in level)
    are fitted on the steps before the test region, which the test windows forecast into, so neither sees what it
    is scored on. ``p`` is ``n_lags`` or, on a short training region, the most lags it can fit; the AR is skipped
    (None) when even one lag cannot be fitted.
    """
    from dice_prob.models import forecast_baselines as fb

    ti = panel.target_index
    fit = np.asarray(panel.scaled[:, : test_start(panel.n_steps, DEFAULT_TEST_FRACTION, horizon), ti])
    hist = np.asarray(windows.history[..., ti])
    fut = np.asarray(windows.future[..., ti])
    shop = np.asarray(windows.shop)
    n_shops, n_fit = fit.shape

    def mse(forecast) -> float:
        return float(((np.asarray(forecast) - fut) ** 2).mean())

    out = {
        "persistence": mse(fb.persistence_forecast(hist, horizon)),
        "flat_mean": mse(fb.mean_forecast(fit, shop, horizon)),
        "ls_ar": None,
        "ls_ar_lags": None,
    }
    fits = [p for p in range(min(int(n_lags), hist.shape[1]), 0, -1) if n_shops * (n_fit - p) >= p + n_shops]
    if fits:
        intercept, coef = (np.asarray(a) for a in fb.fit_ar(fit, fits[0]))
        out["ls_ar"] = mse(fb.ar_forecast(intercept[shop], coef, hist, horizon))
        out["ls_ar_lags"] = fits[0]
    return out


def _forecast_skill(mse7: float, ref: dict, horizon: int, notes: list[str]) -> dict:
    """Whether the posterior-trained decoder beats each reference forecast; warn and note when it does not."""
    beats = {k: bool(mse7 < ref[k]) for k in ("persistence", "flat_mean", "ls_ar") if ref[k] is not None}
    from dice_prob.models.forecast_baselines import reference_label

    missed = [k for k, ok in beats.items() if not ok]
    if missed:
        what = ", ".join(f"{reference_label(k, ref['ls_ar_lags'])} ({ref[k]:.4g})" for k in missed)
        msg = (
            f"decoder[posterior]: target MSE@{horizon} {mse7:.4g} does not beat {what}; the channels and the graph "
            "add no forecast skill on these test windows, so read its influence scores with care (more data, a "
            "smaller decoder or a different DecoderConfig may help)"
        )
        warnings.warn(msg, ForecastSkillWarning, stacklevel=3)
        notes.append(msg)
    return beats


def _by_shop(res, n_shops: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-shop influence (S, R, d, d) from per-window scores, and which shops have a window."""
    bw = np.asarray(res.by_window)
    shop = np.asarray(res.windows.shop)
    out = np.zeros((bw.shape[0], n_shops, *bw.shape[2:]))
    present = np.zeros(n_shops, dtype=bool)
    for r in range(n_shops):
        sel = shop == r
        if sel.any():
            out[:, r] = bw[:, sel].mean(axis=1)
            present[r] = True
    return out, present


def _score_influence(res, truth_shop: np.ndarray | None, mask: np.ndarray, n_shops: int) -> dict:
    """nAUPRC / AUROC per draw of influence against the truth.

    A shared truth is scored against the window-averaged influence; per-shop truths against each shop's own
    windows, averaged over shops (shops whose truth has no positive or no negative pair are skipped).
    """
    if truth_shop is None:
        return {}
    from dice_prob.diagnostics import metrics

    t = np.asarray(truth_shop)
    out: dict = {}
    shared = t.shape[0] == 1 or bool(np.all(t == t[:1]))
    per_shop, present = (None, None) if shared else _by_shop(res, n_shops)
    for name, fn in (("nauprc", metrics.nauprc), ("auroc", metrics.auroc)):
        if shared:
            try:
                out[name] = np.atleast_1d(np.asarray(fn(res.scores, t[0], mask), dtype=np.float64))
            except Exception as exc:  # MetricError: no positive or no negative pair
                out[f"{name}_error"] = str(exc)
            continue
        vals = []
        for r in np.flatnonzero(present):
            try:
                vals.append(np.atleast_1d(np.asarray(fn(per_shop[:, r], t[r], mask), dtype=np.float64)))
            except Exception:  # noqa: S112 - a shop whose truth is degenerate is skipped
                continue
        if vals:
            out[name] = np.mean(vals, axis=0)
    return out


def _edge_table(posterior, pip: np.ndarray, mask: np.ndarray, nodes, truth, hdi_prob: float) -> pd.DataFrame:
    """One row per candidate edge (per shop/group when the posterior has one graph each)."""
    effects = _edge_effect_draws(posterior, len(nodes))
    rows = []
    p = pip if pip.ndim == 3 else pip[None]
    t = None if truth is None else (truth if truth.ndim == 3 else np.broadcast_to(truth, p.shape))
    src, dst = np.nonzero(mask & ~np.eye(len(nodes), dtype=bool))
    for u in range(p.shape[0]):
        if effects is not None:
            e = effects if effects.ndim == 3 else effects[:, u]
            lo, hi = _hdi(e, hdi_prob)
            mean = e.mean(axis=0)
        for i, j in zip(src, dst, strict=True):
            row = {"source": nodes[i], "target": nodes[j]}
            if pip.ndim == 3:
                row["unit"] = u
            row["pip"] = float(p[u, i, j])
            if effects is not None:
                row["effect_mean"] = float(mean[i, j])
                row["effect_hdi_low"] = float(lo[i, j])
                row["effect_hdi_high"] = float(hi[i, j])
            if t is not None and (pip.ndim == 2 or t.shape[0] == p.shape[0]):
                row["true_edge"] = int(t[u, i, j] if t.ndim == 3 else t[i, j])
            rows.append(row)
    df = pd.DataFrame(rows)
    return df.sort_values("pip", ascending=False, kind="stable").reset_index(drop=True)


def _edge_summary(
    posterior, pip: np.ndarray, mask: np.ndarray, nodes, truth, hdi_prob: float
) -> pd.DataFrame:
    """One row per candidate edge, pooled over shops/groups: mean PIP, number of shops with PIP > 0.5, and the
    effect's mean and HDI over the pooled draws of every shop (the across-shop posterior mixture)."""
    p = pip if pip.ndim == 3 else pip[None]
    effects = _edge_effect_draws(posterior, len(nodes))
    if effects is not None and effects.ndim == 4:
        effects = effects.reshape(-1, *effects.shape[2:])
    lo = hi = mean = None
    if effects is not None:
        lo, hi = _hdi(effects, hdi_prob)
        mean = effects.mean(axis=0)
    t = None if truth is None else np.asarray(truth)
    rows = []
    src, dst = np.nonzero(mask & ~np.eye(len(nodes), dtype=bool))
    for i, j in zip(src, dst, strict=True):
        row = {
            "source": nodes[i],
            "target": nodes[j],
            "pip": float(p[:, i, j].mean()),
            "units_pip_gt_05": int((p[:, i, j] > 0.5).sum()),
            "n_units": int(p.shape[0]),
        }
        if mean is not None:
            row["effect_mean"] = float(mean[i, j])
            row["effect_hdi_low"] = float(lo[i, j])
            row["effect_hdi_high"] = float(hi[i, j])
        if t is not None:
            row["true_edge_share"] = float(t[..., i, j].mean())
        rows.append(row)
    return pd.DataFrame(rows).sort_values("pip", ascending=False, kind="stable").reset_index(drop=True)


def _edge_effect_draws(posterior, d: int) -> np.ndarray | None:
    """Posterior draws of each edge's total effect as (S, d, d) or (S, U, d, d) from the Stage-1 samples.

    ``mmm`` mode: ``beta`` (the total effect of one sd of the source's input, for a channel its z-scored Hill
    curve); ``linear`` mode: ``W`` summed over lags (one sd of the source). Both in target sds. Sites are stored
    per candidate edge (``posterior.edges`` holds the (src, dst) pairs).
    """
    samples = getattr(posterior, "samples", None) or {}
    edges = getattr(posterior, "edges", None)
    if edges is None:
        return None
    edges = np.asarray(edges, dtype=int)
    n_e = edges.shape[0]
    for name, lagged in (("beta", False), ("W", True)):
        if name not in samples:
            continue
        a = np.asarray(samples[name], dtype=np.float64)
        a = a.reshape(-1, *a.shape[2:])  # merge chain and draw
        if lagged:
            a = a.sum(axis=-1)
        if a.shape[-1] != n_e:
            return None
        lead = a.shape[1:-1]  # () or (U,)
        out = np.zeros((a.shape[0], *lead, d, d))
        out[..., edges[:, 0], edges[:, 1]] = a
        if len(lead) == 1 and lead[0] == 1 and getattr(posterior, "sharing", "") == "shared":
            out = out[:, 0]
        return out
    return None


def _train(key, panel, graph, cfg, label, log):
    from dice_prob.inference.train import train_decoder

    _stage(log, f"Stage 2: training decoder '{label}' ({cfg.architecture}, up to {cfg.max_epochs} epochs)")
    return train_decoder(key, panel, graph=graph, config=cfg, label=label.split(" ")[0])


def run_pipeline(
    rng_key,
    panel: Panel,
    *,
    config: PipelineConfig | None = None,
    truth=None,
    log: Callable[[str], None] | None = None,
) -> PipelineResult:
    """Run Stage 1, Stage 2 and every diagnostic on ``panel``.

    Parameters
    ----------
    rng_key : jax key
        Split once into one key per stage (recorded in ``summary["seeds"]``); the same key gives the same
        numbers.
    panel : Panel
    config : PipelineConfig, optional
    truth : array, shape (d, d) or (R, d, d), optional
        The true graph when known (simulations): enables the ``oracle`` comparison decoder and the
        truth-based scores (AUROC / nAUPRC of PIPs and of AR-CIG).
    log : callable, optional
        Called with a short progress message at the start of each stage.

    Returns
    -------
    PipelineResult

    Examples
    --------
    >>> import jax, dice_prob as dp
    >>> from dice_prob.pipeline import run_pipeline
    >>> sim = dp.simulate.funnel(jax.random.key(0), n_shops=1, n_steps=60)  # doctest: +SKIP
    >>> res = run_pipeline(jax.random.key(1), sim.panel, truth=sim.graph)  # doctest: +SKIP
    >>> res.save("out")  # doctest: +SKIP
    """
    from dice_prob.inference.stage1 import fit_graph

    config = PipelineConfig() if config is None else config
    _check_key(rng_key)
    truth = _validate_inputs(panel, config, truth)
    s1, dcfg, diag = config.stage1, config.decoder, config.diagnostics
    k_stage1, k_dec, k_comp, k_graphs, k_diag, k_swap = jax.random.split(rng_key, 6)
    seeds = {
        "root": _key_data(rng_key),
        "stage1": _key_data(k_stage1),
        "decoder": _key_data(k_dec),
        "comparison": _key_data(k_comp),
        "graph_samples": _key_data(k_graphs),
        "diagnostics": _key_data(k_diag),
        "graph_swap": _key_data(k_swap),
    }
    timings: dict[str, float] = {}
    notes: list[str] = []
    t_all, c_all = time.perf_counter(), time.process_time()
    cpu: dict[str, float] = {}

    # ---------------------------------------------------------------- Stage 1
    _stage(log, f"Stage 1: graph posterior (NUTS, {s1.num_chains} chain(s) x {s1.num_samples} draws)")
    t0, c0 = time.perf_counter(), time.process_time()
    posterior = fit_graph(k_stage1, panel, config=s1)
    timings["stage1"] = time.perf_counter() - t0
    cpu["stage1"] = time.process_time() - c0
    pip = np.asarray(posterior.pip, dtype=np.float64)
    mask = np.asarray(posterior.support_mask, dtype=bool)
    convergence = _jsonable(dict(posterior.convergence))

    # ---------------------------------------------------------------- Stage 2
    t0, c0 = time.perf_counter(), time.process_time()
    dec_keys = jax.random.split(k_dec, config.n_decoder_seeds)
    decoders = [
        _train(dec_keys[s], panel, posterior, dcfg, f"posterior (seed {s})", log)
        for s in range(config.n_decoder_seeds)
    ]
    decoder = decoders[0]
    timings["decoder"] = time.perf_counter() - t0
    cpu["decoder"] = time.process_time() - c0

    # ---------------------------------------------------------------- graph samples, forecasts, influence
    _stage(log, f"Diagnostics: CIG and AR-CIG under {diag.n_graph_samples} posterior graph samples")
    t0, c0 = time.perf_counter(), time.process_time()
    graphs = np.asarray(posterior.sample_graphs(k_graphs, diag.n_graph_samples), dtype=np.float32)
    graphs_shop = _shop_graphs(graphs, posterior, panel.n_shops)  # (S, 1|R, d, d)
    horizon = diag.horizon
    ti = panel.target_index
    truth_shop = _truth_per_shop(truth, panel.n_shops)
    ar_res = [_influence(dec, panel, graphs_shop, diag, k_diag, horizon=horizon) for dec in decoders]
    ar = np.concatenate([r.scores for r in ar_res])
    # CIG is the h = 1 slice of the same pulse experiment (same windows, same pulse, one-step prediction)
    cig = np.concatenate([np.asarray(r.by_horizon)[:, 0] for r in ar_res])
    windows = ar_res[0].windows
    fc = np.concatenate([r.forecast for r in ar_res])  # (S * seeds, N, H, d), standardised
    fut = np.asarray(windows.future)
    mse7 = ((fc[..., ti] - fut[None, ..., ti]) ** 2).mean(axis=(1, 2))
    mse7_all = ((fc - fut[None]) ** 2).mean(axis=(1, 2, 3))
    reference = _reference_forecasts(panel, windows, horizon, dcfg.ar_lags)
    persistence = reference["persistence"]
    # fan chart: the latest test window of the first evaluated shop, in raw units
    shop = int(windows.shop[np.argmax(windows.origin)])
    sel = np.flatnonzero(windows.shop == shop)
    last = int(sel[np.argmax(windows.origin[sel])])
    origin = int(windows.origin[last])
    fan = panel.inverse_transform(fc[:, last, :, ti], node=ti, shop=shop)
    forecast = {
        "shop": shop,
        "shop_id": str(panel.shop_ids[shop]),
        "node": panel.target,
        "time": [str(x) for x in panel.time_index],
        "observed": panel.values[shop, :, ti].tolist(),
        "origin": origin,
        "start": max(0, origin - 4 * horizon),
        "draws": fan,
    }
    sc_main = _score_influence(ar_res[0], truth_shop, mask, panel.n_shops)
    if len(ar_res) > 1 and "nauprc" in sc_main:
        for r in ar_res[1:]:
            more = _score_influence(r, truth_shop, mask, panel.n_shops)
            for k in ("nauprc", "auroc"):
                if k in more and k in sc_main:
                    sc_main[k] = np.concatenate([sc_main[k], more[k]])
    timings["diagnostics"] = time.perf_counter() - t0
    cpu["diagnostics"] = time.process_time() - c0

    # ---------------------------------------------------------------- comparison decoders
    t0, c0 = time.perf_counter(), time.process_time()
    comparison_rows = []
    comparison_ar = {}
    labels = list(config.comparison_decoders)
    comp_keys = dict(zip(labels, jax.random.split(k_comp, max(1, len(labels))), strict=False))
    offdiag = mask & ~np.eye(panel.n_nodes, dtype=bool)
    for label in labels:
        if label == "oracle" and truth is None:
            notes.append("oracle comparison decoder skipped: no true graph is known for this data")
            continue
        cfg_l = dcfg
        if label == "oracle":
            graph_in, eval_g = truth, truth_shop[None]
        elif label == "empty":
            graph_in, eval_g = "empty", np.zeros((1, 1, *offdiag.shape))
        elif label == "full":
            graph_in, eval_g = "full", offdiag.astype(np.float64)[None, None]
        elif label == "hard":
            cfg_l = dcfg.replace(graph_mode="hard")
            graph_in = posterior
            med = (pip > 0.5).astype(np.float64)
            eval_g = _shop_graphs(med[None], posterior, panel.n_shops)
        else:  # dense / ar_only baselines ignore the graph
            cfg_l = dcfg.replace(architecture=label)
            graph_in, eval_g = None, np.zeros((1, 1, *offdiag.shape))
        dec_l = _train(comp_keys[label], panel, graph_in, cfg_l, label, log)
        res_l = _influence(dec_l, panel, eval_g, diag, k_diag, horizon=horizon)
        comparison_ar[label] = res_l.scores
        fut_l = np.asarray(res_l.windows.future)
        row = {
            "decoder": label,
            "graph_input": label,
            "mse7": float(((res_l.forecast[0][..., ti] - fut_l[..., ti]) ** 2).mean()),
        }
        sc = _score_influence(res_l, truth_shop, mask, panel.n_shops)
        if "nauprc" in sc:
            row["ar_cig_nauprc"] = float(np.mean(sc["nauprc"]))
        if "auroc" in sc:
            row["ar_cig_auroc"] = float(np.mean(sc["auroc"]))
        comparison_rows.append(row)
    main_row = {"decoder": "posterior", "graph_input": "posterior samples", "mse7": float(mse7.mean())}
    if "nauprc" in sc_main:
        main_row["ar_cig_nauprc"] = float(np.mean(sc_main["nauprc"]))
    if "auroc" in sc_main:
        main_row["ar_cig_auroc"] = float(np.mean(sc_main["auroc"]))
    comparison_rows.insert(0, main_row)
    comparison_rows += [
        {"decoder": "persistence", "graph_input": "(last value)", "mse7": persistence},
        {"decoder": "flat mean", "graph_input": "(shop's training mean)", "mse7": reference["flat_mean"]},
    ]
    if reference["ls_ar"] is not None:
        comparison_rows.append(
            {
                "decoder": f"least-squares AR({reference['ls_ar_lags']})",
                "graph_input": "(target's own lags)",
                "mse7": reference["ls_ar"],
            }
        )
    timings["comparison"] = time.perf_counter() - t0
    cpu["comparison"] = time.process_time() - c0

    # ---------------------------------------------------------------- graph swap
    _stage(log, "Graph swap: one frozen decoder under alternative graph inputs")
    t0, c0 = time.perf_counter(), time.process_time()
    swap, swap_table = _run_graph_swap(k_swap, decoder, panel, posterior, truth, diag, notes)
    timings["graph_swap"] = time.perf_counter() - t0
    cpu["graph_swap"] = time.process_time() - c0

    # ---------------------------------------------------------------- summary
    hdi_prob = diag.hdi_prob
    edges = _edge_table(posterior, pip, mask, list(panel.nodes), truth, hdi_prob)
    influence_df = _influence_table(cig, ar, list(panel.nodes), mask, hdi_prob)
    tables = {
        "edges": edges,
        "edges_summary": _edge_summary(posterior, pip, mask, list(panel.nodes), truth, hdi_prob),
        "influence": influence_df,
        "comparison": pd.DataFrame(comparison_rows),
        "forecast": _forecast_table(forecast, hdi_prob),
    }
    if swap_table is not None:
        tables["graph_swap"] = swap_table
    attribution = attribution_check(ar, pip, mask, hdi_prob=hdi_prob)
    headline = {
        "mse7": _summ(mse7, hdi_prob),
        "mse7_all_nodes": _summ(mse7_all, hdi_prob),
        "mse7_persistence": persistence,
        "mse7_flat_mean": reference["flat_mean"],
        "mse7_ls_ar": reference["ls_ar"],
        "ls_ar_lags": reference["ls_ar_lags"],
        "beats_reference_forecasts": _forecast_skill(float(mse7.mean()), reference, horizon, notes),
        "n_edges_pip_gt_05": int(((pip > 0.5) & mask).sum()),
        "n_edges_pip_gt_05_per_unit": (
            [int(x) for x in ((pip > 0.5) & mask).sum(axis=(-1, -2))] if pip.ndim == 3 else None
        ),
        "attribution": attribution,
    }
    if "nauprc" in sc_main:
        headline["ar_cig_nauprc"] = _summ(sc_main["nauprc"], hdi_prob)
    if truth is not None:
        headline["pip_scores"] = _pip_scores(pip, truth, mask)
    else:
        notes.append("no true graph: truth-based scores (AUROC/nAUPRC of PIPs and AR-CIG) are skipped")
    timings["total"] = time.perf_counter() - t_all
    cpu["total"] = time.process_time() - c_all
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dhist = getattr(decoder, "history", {}) or {}
    summary = {
        "dice_prob_result_format": RESULT_FORMAT,
        "created_at": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "headline": headline,
        "data": {
            "shape": list(panel.shape),
            "nodes": list(panel.nodes),
            "roles": list(panel.roles),
            "target": panel.target,
            "train_steps": int(panel.train_steps),
            "centre": panel.centre,
            "n_context": 0 if panel.context is None else int(panel.context.shape[1]),
            "has_truth": truth is not None,
            "n_test_windows": len(windows),
        },
        "config": config.to_dict(),
        "versions": package_versions(),
        "seeds": seeds,
        "timings_s": timings,
        "cpu_s": cpu,
        "convergence": convergence,
        "decoder_training": {
            k: (v[-1] if isinstance(v, (list, tuple)) and v else v)
            for k, v in dhist.items()
            if isinstance(v, (list, tuple, int, float)) and not isinstance(v, bool)
        },
        "posterior_sharing": getattr(posterior, "sharing", None),
        "notes": notes,
        "tables": sorted(tables),
    }
    return PipelineResult(
        config=config,
        panel=panel,
        truth=truth,
        pip=pip,
        support_mask=mask,
        graph_samples=graphs,
        cig=cig,
        ar_cig=ar,
        mse7=mse7,
        forecast=forecast,
        tables=tables,
        summary=_jsonable(summary),
        posterior=posterior,
        decoder=decoder,
        swap=swap,
        comparison_ar_cig=comparison_ar,
    )


def _run_graph_swap(key, decoder, panel, posterior, truth, diag, notes):
    """Frozen graph swap of the posterior-trained decoder.

    With a true graph: inputs posterior samples, posterior median, oracle, empty, full, density-matched random
    and node-permuted oracle, scored against the truth. Without one, the oracle is dropped and nAUPRC/AUROC are
    scored against the posterior median graph (PIP > 0.5) instead, which asks "does the decoder's influence
    follow the graph it is given?" rather than "is it right?"; the table's ``reference`` column says which.
    """
    from dice_prob.diagnostics.graph_swap import graph_swap

    graphs: dict[str, Any] = {"posterior": posterior}
    reference = "true graph"
    ref = truth
    if truth is None:
        ref = np.asarray(posterior.median_graph(), dtype=np.float64)
        groups = getattr(posterior, "groups", None)
        if ref.ndim == 3 and groups is not None and ref.shape[0] != panel.n_shops:
            ref = ref[np.asarray(groups, dtype=int)]
        graphs["oracle"] = None
        reference = "posterior median graph (no true graph)"
    try:
        swap = graph_swap(
            key,
            decoder,
            panel,
            truth=ref,
            graphs=graphs,
            horizon=diag.horizon,
            n_windows=diag.n_windows,
            n_samples=diag.n_graph_samples,
            n_null=min(20, diag.n_graph_samples),
            method=diag.method,
            delta=diag.delta,
            hdi_prob=diag.hdi_prob,
        )
    except DiceProbError as exc:  # e.g. a median graph with no edge: nothing to score against
        notes.append(f"graph swap skipped: {exc}")
        return None, None
    table = swap.table.copy()
    table.insert(2, "reference", reference)
    if truth is None:
        notes.append(
            "graph swap without a true graph: nAUPRC/AUROC are scored against the posterior median graph "
            "(PIP > 0.5), i.e. whether influence follows the graph input, not whether it is correct"
        )
    return swap, table


def _influence_table(cig, ar, nodes, mask, hdi_prob) -> pd.DataFrame:
    rows = []
    off = mask | ~np.eye(len(nodes), dtype=bool)
    for kind, arr in (("cig", cig), ("ar_cig", ar)):
        lo, hi = _hdi(arr, hdi_prob)
        mean = arr.mean(axis=0)
        for i, a in enumerate(nodes):
            for j, b in enumerate(nodes):
                if i == j or not off[i, j]:
                    continue
                rows.append(
                    {
                        "kind": kind,
                        "source": a,
                        "target": b,
                        "candidate": bool(mask[i, j]),
                        "mean": float(mean[i, j]),
                        "hdi_low": float(lo[i, j]),
                        "hdi_high": float(hi[i, j]),
                    }
                )
    return pd.DataFrame(rows)


def _forecast_table(forecast: dict, hdi_prob: float) -> pd.DataFrame:
    draws = np.asarray(forecast["draws"])
    lo, hi = _hdi(draws, hdi_prob)
    o = forecast["origin"]
    times = forecast["time"]
    obs = forecast["observed"]
    rows = []
    for h in range(draws.shape[1]):
        t = o + 1 + h
        rows.append(
            {
                "horizon": h + 1,
                "time": times[t] if t < len(times) else None,
                "observed": obs[t] if t < len(obs) else None,
                "mean": float(draws[:, h].mean()),
                "hdi_low": float(lo[h]),
                "hdi_high": float(hi[h]),
            }
        )
    return pd.DataFrame(rows)


def _pip_scores(pip, truth, mask) -> dict:
    from dice_prob.diagnostics import metrics

    t = np.asarray(truth)
    p = np.asarray(pip)
    out = {}
    for name, fn in (("auroc", metrics.auroc), ("nauprc", metrics.nauprc)):
        try:
            if p.ndim == 3 and t.ndim == 3 and p.shape[0] == t.shape[0]:
                vals = []
                for k in range(p.shape[0]):
                    try:
                        vals.append(float(fn(p[k], t[k], mask)))
                    except Exception:  # noqa: S112 - degenerate truth for this shop
                        continue
                out[name] = float(np.mean(vals)) if vals else None
            elif p.ndim == 2 and t.ndim == 2:
                out[name] = float(fn(p, t, mask))
            else:
                tt = t if t.ndim == 2 else (t.mean(axis=0) > 0.5)
                pp = p if p.ndim == 2 else p.mean(axis=0)
                out[name] = float(fn(pp, tt, mask))
        except Exception as exc:  # MetricError: truth without positives/negatives
            out[name] = None
            out[f"{name}_error"] = str(exc)
    return out


def attribution_check(ar_cig, pip, mask, *, hdi_prob: float = 0.94) -> dict:
    """Does the decoder's influence follow the posterior graph?

    Spearman rank correlation, over the candidate (support-mask, off-diagonal) pairs, between each draw's AR-CIG
    and the PIP (averaged over shops/groups when per shop), summarised with its HDI band; plus the share of
    AR-CIG mass on pairs with PIP > 0.5.

    Returns
    -------
    dict with ``spearman`` (mean, sd, hdi_low, hdi_high), ``mass_on_posterior_edges`` (same), ``share_edges``
    (the share of candidate pairs with PIP > 0.5: the mass share expected when influence ignores the graph),
    ``verdict`` (``follows`` | ``weak`` | ``does not follow`` | ``undetermined``) and ``sentence``.

    Examples
    --------
    >>> import numpy as np
    >>> pip = np.array([[0, .9, .1], [0, 0, .8], [0, 0, 0]])
    >>> ar = np.stack([pip + 0.01 * k for k in range(5)])
    >>> attribution_check(ar, pip, pip > -1)["verdict"]
    'follows'
    """
    ar = np.asarray(ar_cig, dtype=np.float64)
    p = np.asarray(pip, dtype=np.float64)
    p = p if p.ndim == 2 else p.mean(axis=0)
    m = np.asarray(mask, dtype=bool) & ~np.eye(p.shape[0], dtype=bool)
    sel_pip = p[m]
    sel_ar = ar[:, m]
    rho = _spearman(sel_ar, np.broadcast_to(sel_pip, sel_ar.shape))
    on = sel_pip > 0.5
    tot = np.abs(sel_ar).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mass = np.where(tot > 0, np.abs(sel_ar[:, on]).sum(axis=1) / np.where(tot > 0, tot, 1.0), np.nan)
    share = float(on.mean()) if on.size else float("nan")
    rs, ms = _summ(rho, hdi_prob), _summ(mass, hdi_prob)
    pct = int(round(100 * hdi_prob))
    if not np.isfinite(rs["mean"]):
        verdict = "undetermined"
        sentence = (
            "The attribution check is undetermined: the PIPs or the influence scores are constant over the "
            "candidate edges, so their ranks cannot be compared."
        )
    else:
        if rs["hdi_low"] > 0.3 and (not np.isfinite(ms["mean"]) or ms["mean"] > share):
            verdict = "follows"
        elif rs["hdi_low"] > 0:
            verdict = "weak"
        else:
            verdict = "does not follow"
        what = {
            "follows": "follows the posterior graph",
            "weak": "follows the posterior graph only weakly",
            "does not follow": "does not follow the posterior graph",
        }[verdict]
        sentence = (
            f"The decoder's multi-step influence (AR-CIG) {what}: across posterior graph samples the rank "
            f"correlation between AR-CIG and PIP over the {int(m.sum())} candidate edges is "
            f"{rs['mean']:.2f} ({pct}% HDI {rs['hdi_low']:.2f} to {rs['hdi_high']:.2f})"
        )
        if np.isfinite(ms["mean"]):
            sentence += (
                f", and {100 * ms['mean']:.0f}% ({pct}% HDI {100 * ms['hdi_low']:.0f}–{100 * ms['hdi_high']:.0f}%)"
                f" of the influence mass falls on the {int(on.sum())} edges with PIP > 0.5 "
                f"({100 * share:.0f}% of the candidate pairs)"
            )
        sentence += "."
    return {
        "spearman": rs,
        "mass_on_posterior_edges": ms,
        "share_edges": share,
        "n_candidate_pairs": int(m.sum()),
        "verdict": verdict,
        "sentence": sentence,
    }


def _bytes_png(fig) -> bytes:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()
