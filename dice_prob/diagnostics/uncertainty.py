"""Uncertainty through ArviZ: converters with named dims, HDIs, summaries and netCDF I/O.

This is the ONE module of ``dice_prob`` that imports ArviZ (lazily, on first use). It works with arviz 0.23
(``InferenceData``) and arviz 1.x (``xarray.DataTree``): every ArviZ call goes through the small compatibility
layer at the top of this file (``_az``, ``_make_idata``, ``_groups``, ``_hdi_kw``), and only functions that exist
in both major versions are used (``az.hdi``, ``az.summary``, ``az.ess``, ``az.rhat``). Datasets are built here
with xarray directly (no ``az.from_dict``, whose signature changed in 1.x), and netCDF files are written and read
group by group with xarray, so files written under one ArviZ version load under the other.

Dims used throughout: ``chain``, ``draw``, ``source``, ``target`` (adjacency ``[source, target]``), ``shop`` /
``group`` (per-shop or per-group posteriors), ``graph_input`` and ``horizon``.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from dice_prob.errors import DataValidationError, InputTypeError
from dice_prob.models.stage1 import per_source_sites

__all__ = [
    "ess",
    "graph_swap_to_arviz",
    "hdi",
    "influence_to_arviz",
    "load_netcdf",
    "posterior_to_arviz",
    "rhat",
    "save_netcdf",
    "summary_frame",
]


# ----------------------------------------------------------------------------------------------- compat layer


def _az():
    """Import ArviZ lazily (silencing its import-time FutureWarning about the 1.x refactor)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        import arviz as az
    return az


def _az_major() -> int:
    return int(str(_az().__version__).split(".")[0])


def _hdi_kw(prob: float) -> dict:
    """``az.hdi`` probability keyword: ``hdi_prob`` in 0.x, ``prob`` in 1.x."""
    return {"hdi_prob": prob} if _az_major() < 1 else {"prob": prob}


def _summary_kw(prob: float) -> dict:
    """``az.summary`` HDI keywords: ``hdi_prob`` in 0.x; ``ci_kind='hdi', ci_prob`` in 1.x."""
    return {"hdi_prob": prob} if _az_major() < 1 else {"ci_kind": "hdi", "ci_prob": prob}


def _make_idata(groups: dict[str, xr.Dataset]):
    """An ``az.InferenceData`` (0.x) or ``xarray.DataTree`` (1.x) holding ``groups``."""
    az = _az()
    if hasattr(az, "InferenceData") and _az_major() < 1:
        return az.InferenceData(**groups)
    return xr.DataTree.from_dict({f"/{name}": ds for name, ds in groups.items()})


def _groups(idata) -> dict[str, xr.Dataset]:
    """Group name -> Dataset, for an InferenceData, a DataTree or a bare Dataset (as ``posterior``)."""
    if isinstance(idata, xr.Dataset):
        return {"posterior": idata}
    if isinstance(idata, xr.DataTree):
        return {name: node.to_dataset() for name, node in idata.children.items()}
    if hasattr(idata, "groups") and callable(idata.groups):
        return {name: getattr(idata, name) for name in idata.groups()}
    raise InputTypeError(
        f"idata: expected an ArviZ InferenceData, an xarray DataTree or Dataset, got {type(idata).__name__}"
    )


def _posterior(idata) -> xr.Dataset:
    groups = _groups(idata)
    if "posterior" not in groups:
        raise DataValidationError(f"idata: has no 'posterior' group (groups: {sorted(groups)})")
    return groups["posterior"]


# ----------------------------------------------------------------------------------------------- HDI


def hdi(values, prob: float = 0.94, *, axis: int = 0) -> np.ndarray:
    """Highest-density interval over the draws along ``axis`` (via ``az.hdi``).

    Parameters
    ----------
    values : array-like
        Draws; NaNs are dropped for 1-D input.
    prob : float
        Probability mass of the interval.
    axis : int
        The draw axis.

    Returns
    -------
    ndarray, shape (*other_dims, 2)
        ``[..., 0]`` lower and ``[..., 1]`` upper bound. One draw gives ``[v, v]``; no draw gives NaN.

    Examples
    --------
    >>> hdi(np.arange(101.0), 0.9).round(1).tolist()
    [0.0, 90.0]
    """
    if not 0.0 < prob < 1.0:
        raise DataValidationError(f"prob: must be in (0, 1), got {prob}")
    a = np.moveaxis(np.asarray(values, dtype=np.float64), axis, 0)
    if a.ndim == 1:
        a = a[~np.isnan(a)]
    if a.shape[0] == 0:
        return np.full(a.shape[1:] + (2,), np.nan)
    if a.shape[0] == 1:
        return np.stack([a[0], a[0]], axis=-1)
    other = [f"dim_{k}" for k in range(a.ndim - 1)]
    ds = xr.Dataset({"x": (("chain", "draw", *other), a[None])})
    out = _az().hdi(ds, **_hdi_kw(prob))["x"]
    extra = [dim for dim in out.dims if dim not in other]
    return np.asarray(out.transpose(*other, *extra).values, dtype=np.float64)


# ----------------------------------------------------------------------------------------------- converters


def _coords(nodes, d: int) -> list:
    return list(nodes) if nodes is not None else [f"x{k}" for k in range(d)]


def posterior_to_arviz(post):
    """ArviZ data of a Stage-1 ``GraphPosterior``.

    Groups: ``posterior`` — every entry of ``post.samples`` with dims ``(chain, draw, ...)``; the per-draw
    inclusion probabilities as ``inclusion_prob`` with dims ``(chain, draw, [shop|group,] source, target)``;
    edge-indexed sites get an ``edge`` dim labelled ``"src->dst"``, ``W`` a trailing ``lag`` dim.
    ``constant_data`` — ``pip`` (``[shop|group,] source, target``) and ``support_mask`` (``source, target``).
    Convergence scalars go to the attributes.

    Returns
    -------
    az.InferenceData (arviz 0.x) or xarray.DataTree (arviz 1.x)

    Examples
    --------
    Any object with the ``GraphPosterior`` attributes works; here a hand-built stand-in with four draws of
    per-pair inclusion probabilities (normally ``post = dp.fit_graph(...)``, or ``post.to_arviz()``):

    >>> import types
    >>> import numpy as np
    >>> from dice_prob.diagnostics.uncertainty import posterior_to_arviz
    >>> post = types.SimpleNamespace(
    ...     nodes=("tv", "search", "sales"),
    ...     samples={},
    ...     draw_probs=np.random.default_rng(0).uniform(size=(4, 3, 3)),
    ...     pip=np.array([[0.0, 0.9, 0.2], [0.0, 0.0, 0.7], [0.0, 0.0, 0.0]]),
    ...     support_mask=np.triu(np.ones((3, 3), dtype=bool), 1),
    ... )
    >>> idata = posterior_to_arviz(post)
    >>> dict(idata.posterior["inclusion_prob"].sizes)
    {'chain': 1, 'draw': 4, 'source': 3, 'target': 3}
    >>> idata.constant_data["pip"].sel(source="tv", target="search").item()
    0.9
    """
    nodes = list(post.nodes)
    d = len(nodes)
    sharing = getattr(post, "sharing", "shared")
    unit = {"shop": "shop", "group": "group"}.get(sharing)
    samples = dict(getattr(post, "samples", {}) or {})
    draw_probs = np.asarray(post.draw_probs)
    if "inclusion_prob" not in samples:
        first = next(iter(samples.values()), None)
        n_chain = 1 if first is None else int(np.shape(first)[0])
        samples["inclusion_prob"] = draw_probs.reshape((n_chain, -1) + draw_probs.shape[1:])
    n_units = int(np.asarray(post.pip).shape[0]) if np.asarray(post.pip).ndim == 3 else None
    edges = getattr(post, "edges", None)
    edge_labels = None if edges is None else [f"{nodes[i]}->{nodes[j]}" for i, j in np.asarray(edges)]
    # sites with one value per source node of a candidate edge (mmm mode): Hill curves, and the carryover
    # kernel when it is shared per source; labelled by node name on a "source_node" dim
    src_labels = None if edges is None else [nodes[i] for i in np.unique(np.asarray(edges)[:, 0])]
    per_source = per_source_sites(getattr(post, "config", None))
    coords: dict = {"source": nodes, "target": nodes}
    data_vars = {}
    for name, value in samples.items():
        v = np.asarray(value)
        if v.ndim < 2:
            continue
        trailing = list(v.shape[2:])
        dims: list[str] = []
        k = 0
        if unit is not None and n_units is not None and trailing and trailing[0] == n_units:
            dims.append(unit)
            k = 1
        rest = trailing[k:]
        if name == "inclusion_prob" and rest == [d, d]:
            dims += ["source", "target"]
        else:
            for pos, size in enumerate(rest):
                if name in per_source and src_labels is not None and size == len(src_labels) and pos == 0:
                    dims.append("source_node")
                elif edge_labels is not None and size == len(edge_labels) and "edge" not in dims:
                    dims.append("edge")
                elif name == "W" and pos == len(rest) - 1:
                    dims.append("lag")
                else:
                    dims.append(f"{name}_dim_{pos}")
        data_vars[name] = (("chain", "draw", *dims), v)
        for dim, size in zip(dims, v.shape[2:], strict=True):
            if dim == "edge":
                coords["edge"] = edge_labels
            elif dim == "source_node":
                coords["source_node"] = src_labels
            elif dim in ("shop", "group"):
                coords[dim] = list(range(size))
            elif dim == "lag":
                coords["lag"] = list(range(1, size + 1))
    first = next(iter(data_vars.values()))[1]
    coords["chain"] = list(range(first.shape[0]))
    coords["draw"] = list(range(first.shape[1]))
    posterior = xr.Dataset(data_vars, coords=coords, attrs=_attrs(post, "graph_posterior"))
    pip = np.asarray(post.pip, dtype=np.float64)
    pip_dims = ("source", "target") if pip.ndim == 2 else (unit or "shop", "source", "target")
    const = xr.Dataset(
        {
            "pip": (pip_dims, pip),
            "support_mask": (("source", "target"), np.asarray(post.support_mask, dtype=bool)),
        },
        coords={k: v for k, v in coords.items() if k in ("source", "target", "shop", "group")},
    )
    if pip.ndim == 3 and pip_dims[0] not in const.coords:
        const = const.assign_coords({pip_dims[0]: list(range(pip.shape[0]))})
    return _make_idata({"posterior": posterior, "constant_data": const})


def _attrs(post, kind: str) -> dict:
    attrs = {"dice_prob_kind": kind, "sharing": str(getattr(post, "sharing", ""))}
    conv = getattr(post, "convergence", {}) or {}
    for key in ("max_r_hat", "min_ess", "n_divergences", "ok"):
        if key in conv and np.isscalar(conv[key]):
            val = conv[key]
            attrs[f"convergence_{key}"] = int(val) if isinstance(val, (bool, np.bool_)) else val
    return attrs


def influence_to_arviz(stack, nodes=None, name: str = "ar_cig"):
    """ArviZ data of an influence stack (one influence graph per graph draw).

    Parameters
    ----------
    stack : array (n, d, d) or (n, H, d, d), or an ``InfluenceResult``
        ``(n, d, d)`` becomes dims ``(chain=1, draw=n, source, target)``; ``(n, H, d, d)`` (per horizon) becomes
        ``(chain, draw, horizon, source, target)``. An ``InfluenceResult`` gives both (``name`` and
        ``name + "_by_horizon"``).
    nodes : sequence of str, optional
    name : str
        Variable name.

    Examples
    --------
    >>> idata = influence_to_arviz(np.zeros((4, 3, 3)), ["a", "b", "y"], "cig")
    >>> dict(idata.posterior["cig"].sizes)
    {'chain': 1, 'draw': 4, 'source': 3, 'target': 3}
    """
    arrays = {}
    if hasattr(stack, "scores") and hasattr(stack, "by_horizon"):
        arrays[name] = np.asarray(stack.scores)
        arrays[f"{name}_by_horizon"] = np.asarray(stack.by_horizon)
    else:
        arrays[name] = np.asarray(stack, dtype=np.float64)
    data_vars = {}
    coords: dict = {}
    for var, a in arrays.items():
        if a.ndim == 3:
            dims = ("chain", "draw", "source", "target")
        elif a.ndim == 4:
            dims = ("chain", "draw", "horizon", "source", "target")
            coords["horizon"] = list(range(1, a.shape[1] + 1))
        else:
            raise DataValidationError(f"stack: expected shape (n, d, d) or (n, H, d, d), got {a.shape}")
        if a.shape[-1] != a.shape[-2]:
            raise DataValidationError(f"stack: the last two axes must be (d, d), got {a.shape}")
        data_vars[var] = (dims, a[None])
        d = a.shape[-1]
        coords["source"] = coords["target"] = _coords(nodes, d)
        coords["draw"] = list(range(a.shape[0]))
    coords["chain"] = [0]
    ds = xr.Dataset(data_vars, coords=coords, attrs={"dice_prob_kind": "influence"})
    return _make_idata({"posterior": ds})


def graph_swap_to_arviz(result):
    """ArviZ data of a :class:`~dice_prob.diagnostics.graph_swap.GraphSwapResult`.

    ``posterior`` holds one variable per metric with dims ``(chain=1, draw, graph_input)``; graph inputs with
    fewer draws than the largest are padded with NaN (their true count is ``constant_data.n_draws``).
    ``mse_by_horizon`` has dims ``(chain, draw, graph_input, horizon)`` and ``ar_cig``
    ``(chain, draw, graph_input, source, target)``. ``constant_data`` holds ``n_draws``, ``truth`` and
    ``support_mask``.
    """
    inputs = list(result.draws)
    n_max = max(len(next(iter(m.values()))) for m in result.draws.values())
    metrics = list(next(iter(result.draws.values())))
    data_vars = {}
    for metric in metrics:
        arr = np.full((n_max, len(inputs)), np.nan)
        for k, gi in enumerate(inputs):
            v = np.asarray(result.draws[gi][metric], dtype=np.float64)
            arr[: v.size, k] = v
        data_vars[metric] = (("chain", "draw", "graph_input"), arr[None])
    coords: dict = {"chain": [0], "draw": list(range(n_max)), "graph_input": inputs}
    if getattr(result, "mse_by_horizon", None):
        h = next(iter(result.mse_by_horizon.values())).shape[-1]
        arr = np.full((n_max, len(inputs), h), np.nan)
        for k, gi in enumerate(inputs):
            v = np.asarray(result.mse_by_horizon[gi])
            arr[: v.shape[0], k] = v
        data_vars["mse_by_horizon"] = (("chain", "draw", "graph_input", "horizon"), arr[None])
        coords["horizon"] = list(range(1, h + 1))
    nodes = list(result.nodes)
    d = len(nodes)
    if getattr(result, "influence", None):
        arr = np.full((n_max, len(inputs), d, d), np.nan)
        for k, gi in enumerate(inputs):
            v = np.asarray(result.influence[gi])
            arr[: v.shape[0], k] = v
        data_vars["ar_cig"] = (("chain", "draw", "graph_input", "source", "target"), arr[None])
        coords["source"] = coords["target"] = nodes
    posterior = xr.Dataset(data_vars, coords=coords, attrs={"dice_prob_kind": "graph_swap"})
    truth = np.asarray(result.truth, dtype=np.float64)
    t_dims = ("source", "target") if truth.ndim == 2 else ("shop", "source", "target")
    const_vars = {
        "n_draws": (
            ("graph_input",),
            np.array([len(result.draws[g][metrics[0]]) for g in inputs], dtype=np.int64),
        ),
        "truth": (t_dims, truth),
        "support_mask": (("source", "target"), np.asarray(result.support_mask, dtype=bool)),
    }
    c_coords = {"graph_input": inputs, "source": nodes, "target": nodes}
    if truth.ndim == 3:
        c_coords["shop"] = list(range(truth.shape[0]))
    const = xr.Dataset(const_vars, coords=c_coords)
    return _make_idata({"posterior": posterior, "constant_data": const})


# ----------------------------------------------------------------------------------------------- summaries


def summary_frame(
    idata, var_names=None, *, hdi_prob: float = 0.94, diagnostics: bool = False
) -> pd.DataFrame:
    """``az.summary`` of the posterior as a pandas frame with stable column names.

    Columns: ``mean``, ``sd``, ``hdi_low``, ``hdi_high`` (plus ``ess_bulk``, ``ess_tail``, ``r_hat`` with
    ``diagnostics=True``; those need at least 2 chains x 4 draws to be meaningful). Rows are ArviZ's labels
    (``var[coord, ...]``).

    Examples
    --------
    >>> idata = influence_to_arviz(np.random.default_rng(0).normal(size=(50, 2, 2)), ["a", "y"])
    >>> list(summary_frame(idata).columns)
    ['mean', 'sd', 'hdi_low', 'hdi_high']
    """
    az = _az()
    data = _make_idata({"posterior": _posterior(idata)})
    kind = "all" if diagnostics else "stats"
    out = az.summary(data, var_names=var_names, kind=kind, **_summary_kw(hdi_prob))
    out = pd.DataFrame(out)
    hdi_cols = [c for c in out.columns if str(c).startswith("hdi") or str(c).startswith("eti")]
    if len(hdi_cols) < 2:
        raise DataValidationError(f"arviz summary returned no HDI columns ({list(out.columns)})")
    rename = {hdi_cols[0]: "hdi_low", hdi_cols[1]: "hdi_high"}
    out = out.rename(columns=rename)
    keep = ["mean", "sd", "hdi_low", "hdi_high"]
    if diagnostics:
        keep += [c for c in ("ess_bulk", "ess_tail", "r_hat") if c in out.columns]
    return out[keep]


def ess(idata, var_names=None) -> xr.Dataset:
    """Bulk effective sample size of the posterior variables (``az.ess``).

    Examples
    --------
    >>> import numpy as np
    >>> from dice_prob.diagnostics.uncertainty import ess, influence_to_arviz
    >>> stack = np.random.default_rng(0).normal(size=(200, 3, 3))  # 200 independent influence draws
    >>> e = ess(influence_to_arviz(stack, ["tv", "search", "sales"]))
    >>> dict(e["ar_cig"].sizes), bool((e["ar_cig"] > 100).all())
    ({'source': 3, 'target': 3}, True)
    """
    return _az().ess(_make_idata({"posterior": _posterior(idata)}), var_names=var_names)


def rhat(idata, var_names=None) -> xr.Dataset:
    """Split R-hat of the posterior variables (``az.rhat``); needs >= 2 chains.

    Examples
    --------
    A bare ``xarray.Dataset`` with ``(chain, draw)`` dims counts as the posterior group:

    >>> import numpy as np
    >>> import xarray as xr
    >>> from dice_prob.diagnostics.uncertainty import rhat
    >>> draws = np.random.default_rng(1).normal(size=(4, 250))  # 4 well-mixed chains
    >>> r = rhat(xr.Dataset({"mu": (("chain", "draw"), draws)}))
    >>> bool(r["mu"] < 1.05)
    True
    """
    return _az().rhat(_make_idata({"posterior": _posterior(idata)}), var_names=var_names)


# ----------------------------------------------------------------------------------------------- netCDF


def save_netcdf(idata, path) -> Path:
    """Write every group to one netCDF-4 file, atomically (temporary file, then ``os.replace``).

    Works for arviz 0.x ``InferenceData``, 1.x ``DataTree`` and a bare Dataset (saved as ``posterior``).

    Examples
    --------
    >>> import os
    >>> import tempfile
    >>> import numpy as np
    >>> from dice_prob.diagnostics.uncertainty import influence_to_arviz, save_netcdf
    >>> idata = influence_to_arviz(np.random.default_rng(0).normal(size=(20, 3, 3)), ["tv", "search", "sales"])
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     path = save_netcdf(idata, os.path.join(tmp, "ar_cig.nc"))
    ...     print(path.name, path.exists())
    ar_cig.nc True
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    groups = _groups(idata)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        for k, (name, ds) in enumerate(groups.items()):
            ds.to_netcdf(tmp, mode="w" if k == 0 else "a", group=name, engine="h5netcdf")
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return path


def load_netcdf(path):
    """Read a file written by :func:`save_netcdf` (or ArviZ's ``to_netcdf``) fully into memory.

    Returns an ``InferenceData`` (arviz 0.x) or ``DataTree`` (arviz 1.x); the file is closed afterwards.

    Examples
    --------
    >>> import os
    >>> import tempfile
    >>> import numpy as np
    >>> from dice_prob.diagnostics.uncertainty import influence_to_arviz, load_netcdf, save_netcdf
    >>> stack = np.random.default_rng(0).normal(size=(20, 3, 3))
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     back = load_netcdf(save_netcdf(influence_to_arviz(stack, ["tv", "search", "sales"]), f"{tmp}/a.nc"))
    >>> dict(back.posterior["ar_cig"].sizes)  # fully in memory: usable after the directory is gone
    {'chain': 1, 'draw': 20, 'source': 3, 'target': 3}
    >>> bool(np.allclose(back.posterior["ar_cig"].values[0], stack))
    True
    """
    path = Path(path)
    if not path.exists():
        raise DataValidationError(f"path: {path} does not exist")
    opened = xr.open_groups(path, engine="h5netcdf")
    groups = {}
    try:
        for name, ds in opened.items():
            key = name.strip("/")
            if key and len(ds.variables):
                groups[key] = ds.load()
    finally:
        for ds in opened.values():
            ds.close()
    return _make_idata(groups)
