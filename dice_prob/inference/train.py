"""Stage 2 training: optax loop for the graph-safe decoder and the bypass baselines.

``train_decoder(rng_key, panel, graph=..., config=DecoderConfig())`` builds forecast windows from the TRAIN
split of ``panel.scaled`` (:func:`dice_prob.data.windows.forecast_windows`), holds out the latest
``val_fraction`` of the training origins for early stopping (test windows are never touched), and minimises

    teacher-forced one-step MSE over the history  +  rollout_weight * free-running MSE over the horizon

with AdamW, global-norm gradient clipping and a warmup-cosine learning-rate schedule, starting from the
least-squares VAR restricted to the training graph (the decoder's linear part; the network starts at zero; for the
dense baseline the unrestricted VAR over all nodes) so that early stopping on validation can only keep or
improve that forecast: by default it minimises the target's rollout MSE (``DecoderConfig.select_on``) and keeps
the warm start unless a checkpoint beats it by one cluster-robust standard error (``select_se``). The VAR's ridge penalty is chosen per node by blocked cross-validation over time
(``DecoderConfig.ls_ridge="auto"``), so a full graph on a short panel does not start from an overfitted VAR.
The whole early-stopping loop (epochs of shuffled mini-batches mixing shops, validation, best-parameter
tracking) is one module-level compiled ``lax.while_loop``: a second call with the same shapes and settings reuses
the compiled program.

Graph inputs (``graph=``):

- a Stage-1 posterior (anything with ``draw_probs`` (S, d, d) or (S, R|G, d, d) and ``median_graph()``):
  ``config.graph_mode="posterior"`` draws, inside the jitted step, a fresh Bernoulli graph for every training
  window from a random posterior draw of that window's shop (or group); ``"hard"`` uses ``median_graph()``;
- an array ``(d, d)`` (one graph, binary or weighted) or ``(R, d, d)`` (one per shop);
- ``"empty"`` (no edges) or ``"full"`` (``config.full_graph``: the role support mask, or every off-diagonal pair);
- ``None`` for the graph-free baselines (``architecture="dense"`` or ``"ar_only"``).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import tempfile
import time
import warnings
from pathlib import Path
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm.auto import tqdm

from dice_prob._progress import progress_enabled
from dice_prob.config import DecoderConfig
from dice_prob.data.panel import Panel
from dice_prob.data.windows import forecast_windows, holdout_origins
from dice_prob.errors import (
    ConfigError,
    ConvergenceWarning,
    DataValidationError,
    GraphValidationError,
    InputTypeError,
)
from dice_prob.graph import offdiag_mask, validate_adjacency
from dice_prob.models.bypass import ARTargetDecoder, DenseDecoder
from dice_prob.models.decoder import GraphSafeDecoder, teacher_forced_and_rollout
from dice_prob.models.shop_linear import ShopOffsets, bind_shop, kernel_attribute, zero_offsets

__all__ = ["TrainedDecoder", "build_decoder", "evaluate_mse", "resolve_graph", "train_decoder"]

_ARCHITECTURES = {
    "GraphSafeDecoder": GraphSafeDecoder,
    "DenseDecoder": DenseDecoder,
    "ARTargetDecoder": ARTargetDecoder,
}
_FORMAT = "dice_prob.TrainedDecoder"
# 2: GraphSafeDecoder.edge_kernel (d, d, p) replaced the low-rank pair kernel; 3: DenseDecoder gained var_kernel
# (older dense checkpoints fail the leaf-shape check with a clear error)
_FORMAT_VERSION = 3
_DEFAULT = DecoderConfig()


# ---------------------------------------------------------------------------------------------- graph inputs
@dataclasses.dataclass(frozen=True)
class _GraphSource:
    """Training graphs as a bank ``probs`` (S, K, d, d) plus ``shop_to_k`` (R,): ``fixed`` uses ``probs[0, k]``,
    ``sample`` draws Bernoulli(``probs[s, k]``) for a random draw ``s``; ``none`` feeds zeros (baselines)."""

    mode: str
    probs: np.ndarray
    shop_to_k: np.ndarray
    label: str


def _is_posterior(obj) -> bool:
    return hasattr(obj, "draw_probs") and hasattr(obj, "median_graph")


def _bank(arr: np.ndarray, n_shops: int, groups, name: str) -> tuple[np.ndarray, np.ndarray]:
    """(K, d, d) bank and its shop -> k map from a (d, d) or (K, d, d) array."""
    if arr.ndim == 2:
        return arr[None], np.zeros(n_shops, dtype=np.int32)
    k = arr.shape[0]
    if k == n_shops and groups is None:
        return arr, np.arange(n_shops, dtype=np.int32)
    if groups is not None:
        g = np.asarray(groups, dtype=np.int64).reshape(-1)
        if g.size != n_shops or g.min() < 0 or g.max() >= k:
            raise GraphValidationError(
                f"{name}: {k} group graphs but groups {g.tolist()} do not map the panel's {n_shops} shops to "
                f"indices 0..{k - 1}"
            )
        return arr, g.astype(np.int32)
    raise GraphValidationError(
        f"{name}: a stack of {k} graphs does not match the panel's {n_shops} shops; pass one (d, d) graph or one "
        "per shop, shape (R, d, d)"
    )


def resolve_graph(panel: Panel, graph, config: DecoderConfig = _DEFAULT) -> _GraphSource:
    """Validate a training-graph input (see module docstring) and turn it into a graph bank.

    Raises
    ------
    GraphValidationError
        Wrong size, NaN/inf, self-loops, probabilities outside [0, 1], a stack not matching the shops.
    ConfigError
        An unknown string, or ``None`` for the graph-safe architecture.

    Examples
    --------
    >>> import jax
    >>> import numpy as np
    >>> import dice_prob as dp
    >>> from dice_prob.inference.train import resolve_graph
    >>> sim = dp.simulate.funnel(jax.random.key(0), n_shops=1, n_steps=40, n_channels=2, n_intermediate=1)
    >>> src = resolve_graph(sim.panel, sim.graph, dp.DecoderConfig())
    >>> src.mode, src.label, src.probs.shape  # one fixed graph, bank shape (S, K, d, d)
    ('fixed', 'array', (1, 1, 4, 4))
    >>> src = resolve_graph(sim.panel, "full", dp.DecoderConfig())  # every pair the roles allow
    >>> src.mode, src.label, int(src.probs.sum()) == int(sim.panel.support_mask().sum())
    ('fixed', 'full', True)
    >>> resolve_graph(sim.panel, np.eye(4), dp.DecoderConfig())  # doctest: +ELLIPSIS
    Traceback (most recent call last):
        ...
    dice_prob.errors.GraphValidationError: graph: has non-zero diagonal entries (self-loops)...
    """
    d, r = panel.n_nodes, panel.n_shops
    if config.architecture != "graph_safe":
        return _GraphSource("none", np.zeros((1, 1, d, d), np.float32), np.zeros(r, np.int32), "none")
    if graph is None:
        raise ConfigError(
            "graph: the graph-safe decoder needs a graph input (a GraphPosterior, a (d, d) or (R, d, d) array, "
            "'empty' or 'full'); use architecture='dense' or 'ar_only' for graph-free baselines"
        )
    if isinstance(graph, str):
        if graph == "empty":
            a = np.zeros((d, d))
        elif graph == "full":
            a = (panel.support_mask() if config.full_graph == "support" else offdiag_mask(d)).astype(float)
        else:
            raise ConfigError(
                f"graph: unknown graph name {graph!r}; use 'empty', 'full', an array or a GraphPosterior"
            )
        return _GraphSource("fixed", a[None, None].astype(np.float32), np.zeros(r, np.int32), graph)
    if _is_posterior(graph):
        groups = getattr(graph, "groups", None) if getattr(graph, "sharing", None) == "group" else None
        if config.graph_mode == "hard":
            hard = validate_adjacency(
                np.asarray(graph.median_graph()), d, name="posterior.median_graph()", allow_batch=True
            )
            if hard.ndim > 3:
                raise GraphValidationError(f"posterior.median_graph(): unexpected shape {hard.shape}")
            bank, s2k = _bank(hard, r, groups, "posterior.median_graph()")
            return _GraphSource("fixed", bank[None].astype(np.float32), s2k, "hard")
        probs = validate_adjacency(
            np.asarray(graph.draw_probs), d, name="posterior.draw_probs", allow_batch=True
        )
        if probs.ndim not in (3, 4):
            raise GraphValidationError(
                f"posterior.draw_probs: expected (S, d, d) or (S, R, d, d), got shape {probs.shape}"
            )
        if probs.min() < 0 or probs.max() > 1:
            raise GraphValidationError("posterior.draw_probs: edge probabilities must lie in [0, 1]")
        if probs.ndim == 3:
            return _GraphSource(
                "sample", probs[:, None].astype(np.float32), np.zeros(r, np.int32), "posterior"
            )
        _, s2k = _bank(probs[0], r, groups, "posterior.draw_probs")
        return _GraphSource("sample", probs.astype(np.float32), s2k, "posterior")
    a = validate_adjacency(graph, d, name="graph", allow_batch=True)
    if a.ndim > 3:
        raise GraphValidationError(f"graph: expected (d, d) or (R, d, d), got shape {a.shape}")
    bank, s2k = _bank(a, r, None, "graph")
    return _GraphSource("fixed", bank[None].astype(np.float32), s2k, "array")


def _window_graphs(mode: str, probs, s2k, shop, key):
    """Graphs (B, d, d) for windows of shops ``shop`` (B,) under a graph source of ``mode`` (traced)."""
    k = s2k[shop]
    if mode == "sample":
        k_s, k_b = jax.random.split(key)
        s = jax.random.randint(k_s, shop.shape, 0, probs.shape[0])
        return jax.random.bernoulli(k_b, probs[s, k]).astype(jnp.float32)
    return probs[0, k]


# ---------------------------------------------------------------------------------------------- the model
def build_decoder(
    key,
    n_nodes: int,
    *,
    config: DecoderConfig,
    context_size: int = 0,
    target_index: int = -1,
    context_mean=None,
    context_scale=None,
):
    """An untrained decoder of ``config.architecture`` (``key`` initialises the weights).

    Examples
    --------
    >>> import jax
    >>> import dice_prob as dp
    >>> from dice_prob.inference.train import build_decoder
    >>> cfg = dp.DecoderConfig(hidden_size=4, message_size=2, embed_size=2, ar_lags=2)
    >>> dec = build_decoder(jax.random.key(0), 4, config=cfg)  # architecture="dense"/"ar_only" -> baselines
    >>> type(dec).__name__, dec.n_nodes, dec.ar_lags
    ('GraphSafeDecoder', 4, 2)
    """
    # the context statistics are static fields of the module (tuples of floats), so they enter as static arguments
    cm = None if context_mean is None else tuple(float(v) for v in np.ravel(context_mean))
    cs = None if context_scale is None else tuple(float(v) for v in np.ravel(context_scale))
    return _build_decoder_jit(key, int(n_nodes), config, int(context_size), int(target_index), cm, cs)


def _build_decoder_eager(key, n_nodes, config, context_size, target_index, context_mean, context_scale):
    """:func:`build_decoder`'s body, not jitted (the reference its test compares against)."""
    common = dict(
        context_size=context_size,
        ar_lags=config.ar_lags,
        target_index=target_index,
        key=key,
    )
    if config.architecture == "graph_safe":
        return GraphSafeDecoder(
            n_nodes,
            hidden_size=config.hidden_size,
            message_size=config.message_size,
            embed_size=config.embed_size,
            hill_head=config.hill_head,
            context_mean=context_mean,
            context_scale=context_scale,
            **common,
        )
    if config.architecture == "dense":
        return DenseDecoder(
            n_nodes,
            hidden_size=config.dense_hidden_size,
            context_mean=context_mean,
            context_scale=context_scale,
            **common,
        )
    return ARTargetDecoder(n_nodes, hidden_size=config.hidden_size, embed_size=config.embed_size, **common)


# Why jitted: built eagerly, every weight matrix's random draw is its own small XLA program, compiled on first use in
# each process (14 threefry programs for the graph-safe decoder, ~0.3 s each on CPU, ~5 s per fresh process, each
# too short for the persistent compilation cache). Traced as one program it compiles once (2.5 s) and the
# persistent cache, where one is set, keeps it (0.7 s). Every argument but the key is static (hashable); the
# weights are bit-for-bit those of eager construction (tests/inference/test_train.py checks it).
_build_decoder_jit = eqx.filter_jit(_build_decoder_eager)


# ---------------------------------------------------------------------------------------------- result
@dataclasses.dataclass(frozen=True, eq=False)
class TrainedDecoder:
    """A frozen, trained decoder with its provenance.

    Attributes
    ----------
    model : equinox.Module
        The decoder (immutable); ``model.rollout`` / ``model.step`` / ``model(x, graph)``.
    config : DecoderConfig
    history : dict of lists
        Per epoch: ``train_loss``, ``val_loss`` (the training loss on validation), ``val_rollout_mse`` (all
        nodes), ``val_target_mse`` (target rollout), ``learning_rate``; plus ``init_val_loss`` /
        ``init_val_rollout_mse`` / ``init_val_target_mse`` (the least-squares warm start), ``best_epoch`` (-1 when
        the warm start was never clearly beaten on validation, see ``DecoderConfig.select_se``),
        ``best_val_loss`` (the early-stopping criterion, ``DecoderConfig.select_on``, of the kept weights),
        ``select_on``, ``epochs_run``, ``train_seconds`` (the whole call, compilation
        included), ``loop_seconds`` (the compiled loop), ``n_train_windows``, ``n_val_windows``; ``ls_ridge``
        (per node, the relative ridge of the least-squares warm start), ``ls_ridge_grid`` and ``ls_cv_mse``
        (per node and grid value, the cross-validated one-step MSE it was chosen by; None for a fixed ridge);
        ``ls_ridge_floor`` and ``ls_floor_cv_mse`` (``ls_ridge="rollout"``: the common floor and its blocked-CV
        forecast MSE per candidate ``(0, *ls_ridge_grid)``; 0 and None otherwise); ``ls_refit`` (whether the kept
        warm start was refitted on every training window, ``DecoderConfig.ls_refit``) with, when it was,
        ``ls_ridge_refit`` and ``ls_ridge_floor_refit`` (the refit's penalties). The validation figures above
        describe the model before that refit.
    nodes : tuple of str
    target_index : int
    train_graph_label : str
        ``posterior``, ``hard``, ``empty``, ``full``, ``array`` (or the ``label`` given to ``train_decoder``),
        ``none`` for the graph-free baselines.
    shop_offsets : ShopOffsets or None
        Per-shop offsets of the linear part (``DecoderConfig.shop_linear``); ``model`` is then the pooled
        (population) decoder and :meth:`for_shop` gives shop ``s``'s. With ``shop_linear`` the history also has
        ``shop_linear_penalty`` (per node, the chosen relative penalty of the offsets; None = no offsets),
        ``shop_linear_grid`` and ``shop_linear_cv_mse`` (per node, the blocked-CV one-step MSE of "no offsets"
        and of each grid value).
    """

    model: eqx.Module
    config: DecoderConfig
    history: dict
    nodes: tuple
    target_index: int
    train_graph_label: str
    shop_offsets: ShopOffsets | None = None

    @property
    def n_nodes(self) -> int:
        return len(self.nodes)

    @property
    def uses_graph(self) -> bool:
        return bool(self.model.uses_graph)

    def _graph(self, graph):
        return jnp.zeros((self.n_nodes, self.n_nodes)) if graph is None else graph

    def for_shop(self, shop):
        """The decoder module of shop ``shop`` (the pooled ``model`` plus the shop's offsets; ``model`` itself
        without offsets or with ``shop=None``). ``shop`` may be traced (vmap over windows of several shops)."""
        if shop is None or self.shop_offsets is None:
            return self.model
        if isinstance(shop, (int, np.integer)) and not 0 <= int(shop) < self.shop_offsets.n_shops:
            raise DataValidationError(
                f"shop: {shop} is not one of the {self.shop_offsets.n_shops} training shops; pass shop=None for "
                "the pooled decoder"
            )
        return bind_shop(self.model, self.shop_offsets, shop)

    def rollout(self, x_history, horizon: int, graph=None, context=None, shop=None):
        """Teacher-force through ``x_history`` (W, d) (standardised), free-run ``horizon`` steps -> (horizon, d).

        Pure and vmappable over ``x_history``, ``graph``, ``context`` and ``shop``; ``horizon`` is static.
        ``graph`` may be omitted for the graph-free baselines. ``shop``: the training shop whose offsets apply
        (``DecoderConfig.shop_linear``); None runs the pooled decoder.
        """
        return self.for_shop(shop).rollout(x_history, horizon, self._graph(graph), context)

    def predict(self, x, graph=None, context=None, shop=None):
        """Teacher-forced one-step predictions over a window ``x`` (W, d): row ``t`` predicts ``x[t + 1]``."""
        return self.for_shop(shop)(x, self._graph(graph), context)

    def __repr__(self) -> str:
        return (
            f"TrainedDecoder({type(self.model).__name__}, nodes={len(self.nodes)}, "
            f"graph={self.train_graph_label!r}, best_epoch={self.history.get('best_epoch')})"
        )

    # ------------------------------------------------------------------ checkpoints
    def save(self, path) -> Path:
        """Write ``path/model.eqx`` (Equinox leaf serialisation) and ``path/decoder.json`` (architecture,
        config, shapes, training curve) atomically; returns the directory. Never pickles."""
        p = Path(path)
        p.mkdir(parents=True, exist_ok=True)
        leaves = jax.tree_util.tree_leaves(eqx.filter(self.model, eqx.is_array))
        meta = {
            "format": _FORMAT,
            "format_version": _FORMAT_VERSION,
            "architecture": type(self.model).__name__,
            "model_kwargs": self.model.constructor_kwargs(),
            "config": self.config.to_dict(),
            "nodes": list(self.nodes),
            "target_index": int(self.target_index),
            "train_graph_label": self.train_graph_label,
            "leaf_shapes": [list(x.shape) for x in leaves],
            "history": _jsonable(self.history),
            "shop_offsets": None
            if self.shop_offsets is None
            else {"n_shops": self.shop_offsets.n_shops, "kernel_attr": self.shop_offsets.kernel_attr},
        }
        fd, tmp = tempfile.mkstemp(dir=p, prefix=".model.eqx.", suffix=".tmp")
        with os.fdopen(fd, "wb") as fh:
            eqx.tree_serialise_leaves(fh, self.model)
        os.replace(tmp, p / "model.eqx")
        stale = p / "shop_offsets.npz"
        if self.shop_offsets is not None:
            off = self.shop_offsets
            arrays = {"bias": np.asarray(off.bias), "coef": np.asarray(off.coef)}
            if off.kernel is not None:
                arrays["kernel"] = np.asarray(off.kernel)
            fd, tmp = tempfile.mkstemp(dir=p, prefix=".shop_offsets.", suffix=".npz")
            with os.fdopen(fd, "wb") as fh:
                np.savez(fh, **arrays)
            os.replace(tmp, stale)
        elif stale.exists():
            stale.unlink()  # a checkpoint of a decoder without offsets must not pick up an older one's
        fd, tmp = tempfile.mkstemp(dir=p, prefix=".decoder.json.", suffix=".tmp")
        with os.fdopen(fd, "w") as fh:
            json.dump(meta, fh, indent=2)
        os.replace(tmp, p / "decoder.json")
        return p

    @classmethod
    def load(cls, path) -> TrainedDecoder:
        """Read a checkpoint written by :meth:`save`."""
        p = Path(path)
        if not (p / "decoder.json").is_file() or not (p / "model.eqx").is_file():
            raise DataValidationError(
                f"path: {p} is not a decoder checkpoint (expected decoder.json and model.eqx written by save())"
            )
        try:
            meta = json.loads((p / "decoder.json").read_text())
        except json.JSONDecodeError as exc:
            raise DataValidationError(f"path: {p / 'decoder.json'} is not valid JSON ({exc})") from exc
        if meta.get("format") != _FORMAT or meta.get("architecture") not in _ARCHITECTURES:
            raise DataValidationError(f"path: {p / 'decoder.json'} is not a dice_prob decoder checkpoint")
        arch = _ARCHITECTURES[meta["architecture"]]
        skeleton = arch(**meta["model_kwargs"], key=jax.random.key(0))
        shapes = [list(x.shape) for x in jax.tree_util.tree_leaves(eqx.filter(skeleton, eqx.is_array))]
        if shapes != meta["leaf_shapes"]:
            raise DataValidationError(f"path: {p} leaf shapes do not match the recorded architecture")
        model = eqx.tree_deserialise_leaves(p / "model.eqx", skeleton)
        offsets = None
        off_meta = meta.get("shop_offsets")
        if off_meta is not None:
            if not (p / "shop_offsets.npz").is_file():
                raise DataValidationError(
                    f"path: {p} records per-shop offsets but shop_offsets.npz is missing"
                )
            with np.load(p / "shop_offsets.npz", allow_pickle=False) as z:
                arrays = {k: jnp.asarray(z[k]) for k in z.files}
            offsets = ShopOffsets(
                arrays["bias"], arrays["coef"], arrays.get("kernel"), off_meta.get("kernel_attr")
            )
            ref = zero_offsets(model, int(off_meta["n_shops"]))
            want = [x.shape for x in jax.tree_util.tree_leaves(ref)]
            if [x.shape for x in jax.tree_util.tree_leaves(offsets)] != want:
                raise DataValidationError(f"path: {p} shop_offsets.npz shapes do not match the decoder")
        return cls(
            model=model,
            config=DecoderConfig.from_dict(meta["config"]),
            history=meta["history"],
            nodes=tuple(meta["nodes"]),
            target_index=int(meta["target_index"]),
            train_graph_label=meta["train_graph_label"],
            shop_offsets=offsets,
        )


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (np.generic, jax.Array)):
        return np.asarray(obj).item()
    return obj


# ---------------------------------------------------------------------------------------------- training
def _split_train_val(win, val_fraction: float):
    origins = np.unique(win.origin)
    n_val = holdout_origins(origins.size, val_fraction)
    if origins.size - n_val < 1:
        raise DataValidationError(
            f"DecoderConfig.history: only {origins.size} training window origin(s); too few to hold out "
            f"val_fraction {val_fraction} for early stopping — use a longer series, a shorter "
            "DecoderConfig.history/horizon or a smaller val_fraction"
        )
    cut = origins[-n_val]
    return win.take(np.flatnonzero(win.origin < cut)), win.take(np.flatnonzero(win.origin >= cut))


def _graph_moments(src: _GraphSource) -> tuple[np.ndarray, np.ndarray]:
    """First and second moments of the training graph input per bank entry ``k``.

    Returns ``m1`` (K, d, d) with ``m1[k, j, i] = E[A[j, i]]`` and ``m2`` (K, i, j, j') with
    ``m2[k, i, j, j'] = E[A[j, i] A[j', i]]``: the graph itself for a fixed (binary or weighted) input; for
    posterior sampling (a random draw ``s``, then independent Bernoulli edges) the mean over draws, with
    ``E[A^2] = E[A]`` on the diagonal because a Bernoulli edge squares to itself. Zeros for ``none``.
    """
    probs = np.asarray(src.probs, dtype=np.float64)  # (S, K, d, d)
    if src.mode == "none":
        probs = np.zeros_like(probs[:1])
    if src.mode == "sample":
        m1 = probs.mean(axis=0)
        m2 = np.einsum("skji,skli->kijl", probs, probs) / probs.shape[0]
        d = probs.shape[-1]
        idx = np.arange(d)
        m2[:, :, idx, idx] = np.transpose(m1, (0, 2, 1))  # E[A_ji^2] = E[A_ji] for a Bernoulli edge
        return m1, m2
    a = probs[0]
    return a, np.einsum("kji,kli->kijl", a, a)


# Relative ridge grid (penalty = value * number of regression rows, on standardised data) searched by blocked
# cross-validation when ``DecoderConfig.ls_ridge == "auto"``: from ~no shrinkage to strong shrinkage (at 10 the
# slopes are pulled to a small fraction of their least-squares size). ``_BASE_RIDGE`` is the fixed value used
# before the search existed; it stays the default of the low-level functions and of the loss-weight AR fit.
_RIDGE_GRID = tuple(float(v) for v in np.logspace(-4, 1, 11))
_BASE_RIDGE = 1e-3
_N_FOLDS = 5


class _LSFit(NamedTuple):
    """Result of :func:`_ls_init` (see there)."""

    bias: np.ndarray
    coef: np.ndarray
    kernel: np.ndarray
    resid: np.ndarray
    ridge: np.ndarray
    cv_mse: np.ndarray | None
    grid: tuple
    floor: float = 0.0
    floor_cv: np.ndarray | None = None


def _row_layout(n: int, w: int, n_rows: int, p_eff: int, shop, origin, n_folds: int):
    """Which (window, row) regression rows to keep and their cross-validation fold.

    With ``shop``/``origin`` the absolute time of row ``r`` of window ``n`` is ``origin - w + 1 + p_eff + r``;
    overlapping windows repeat a (shop, time) row many times, so each is kept once (otherwise a row could sit in
    a training fold and in the held-out fold at once). Folds are contiguous blocks of time, shared by all shops.
    Without them every window is its own series and folds are contiguous blocks of windows.
    """
    if origin is None:
        time = np.broadcast_to(np.arange(n)[:, None], (n, n_rows))
        keep = np.ones((n, n_rows), bool)
    else:
        time = np.asarray(origin, np.int64)[:, None] - w + 1 + p_eff + np.arange(n_rows)[None]
        span = int(time.max() - time.min()) + 1
        key = np.asarray(shop, np.int64)[:, None] * span + (time - time.min())
        _, first = np.unique(key.ravel(), return_index=True)
        keep = np.zeros(n * n_rows, bool)
        keep[first] = True
        keep = keep.reshape(n, n_rows)
    t0 = int(time.min())
    span = int(time.max()) - t0 + 1
    n_f = max(1, min(int(n_folds), span))
    fold = ((time - t0) * n_f) // span
    return keep, fold, n_f


def _ls_init(
    hist: np.ndarray,
    fut: np.ndarray,
    group: np.ndarray,
    m1,
    m2,
    p: int,
    ridge: float | str = _BASE_RIDGE,
    *,
    shop=None,
    origin=None,
    n_folds: int = _N_FOLDS,
    grid: tuple = _RIDGE_GRID,
    rollout_cv: bool = False,
    score_node: int | None = None,
) -> _LSFit:
    """Least-squares warm start of the decoder's linear part: a graph-restricted VAR(p) on the training windows.

    Each node ``i`` is regressed on an intercept, its own ``p`` lags and, for every ``j != i``, ``A[j, i]`` times
    the ``p`` lags of ``x_j`` — exactly the decoder's own-lag skip plus its graph-gated linear path. When the graph
    is random (posterior sampling) the *expected* squared loss over graph draws is minimised, which only needs the
    moments ``m1``, ``m2`` of :func:`_graph_moments` (window ``n`` uses bank entry ``group[n]``). Pairs that never
    carry an edge get exactly 0. Every slope gets a ridge penalty ``ridge * n_rows``.

    ``ridge="auto"`` picks the penalty per node from ``grid`` by blocked ``n_folds``-fold cross-validation over
    time (the one-step squared error of each held-out block, fitted on the other blocks; for an autoregression
    with uncorrelated errors plain K-fold CV on the lagged rows is valid, Bergmeir, Hyndman & Koo 2018). A full
    graph over few shops and steps is an unrestricted VAR with ``d * p`` slopes per equation: the search shrinks
    it where the data cannot support it, and leaves a well-determined fit (almost) unpenalised. Ties go to the
    smaller penalty. With ``rollout_cv`` (and ``shop``/``origin``) the per-node choices are then raised to a
    common floor chosen by the same blocked CV of the free-running forecast over the windows' horizon
    (:func:`_rollout_floor`; scored on node ``score_node``, every node when None).

    Parameters
    ----------
    hist, fut : (N, W, d), (N, H, d)
        Windows; each is one series ``concat(hist, fut)``.
    group : (N,) int
        Graph bank entry of each window.
    m1, m2 : graph moments (:func:`_graph_moments`).
    p : int
        Lag order.
    ridge : float or "auto"
        Relative penalty (>= 0), or choose it per node by cross-validation.
    shop, origin : (N,) int, optional
        Window shop and origin: duplicated (shop, time) rows of overlapping windows are then used once and the
        folds are blocks of absolute time. Without them each window is its own series.

    Returns
    -------
    _LSFit
        ``bias`` (d,); ``coef`` (d, p) own-lag coefficients (lag 1 first, the decoder's buffer order);
        ``kernel`` (d, d, p) with ``kernel[j, i, l]`` the coefficient of ``A[j, i] * x_j(t - 1 - l)`` in the
        equation of node ``i``; ``resid`` (d,) the one-step residual variance of the own-lag-only AR(p) fit
        (graph-independent, penalty ``_BASE_RIDGE`` under "auto", so every graph variant is trained on the same
        per-node loss weights); ``ridge`` (d,) the penalty used per node; ``cv_mse`` (d, len(grid)) the
        cross-validated one-step MSE per grid value (None for a fixed ridge); ``grid``; ``floor`` the rollout
        floor (0 without ``rollout_cv``) and ``floor_cv`` its CV score per candidate ``(0, *grid)`` (or None).
    """
    auto = isinstance(ridge, str)
    if auto and ridge != "auto":
        raise ConfigError(f"ridge: must be a non-negative number or 'auto', got {ridge!r}")
    series = np.concatenate([hist, fut], axis=1).astype(np.float64)  # (N, W + H, d)
    n, length, d = series.shape
    p_eff = min(p, length - 1)
    n_rows = length - p_eff
    n_k = m1.shape[0]
    cols = 1 + d * p_eff  # intercept, then p lags of every node (node-major, lag 1 first)
    keep, fold, n_f = _row_layout(n, hist.shape[1], n_rows, p_eff, shop, origin, n_folds if auto else 1)
    group = np.asarray(group, dtype=np.int64)
    gram, rhs, yy, cnt = _accumulate(series, keep, fold, group, n_f, n_k, p_eff)
    yy, cnt = yy.sum(1), cnt.sum(1)
    total = cnt.sum()
    base = _BASE_RIDGE if auto else float(ridge)
    grid = tuple(float(v) for v in grid) if auto else (base,)
    bias, coef = np.zeros(d), np.zeros((d, p))
    kernel, resid = np.zeros((d, d, p)), np.ones(d)
    chosen = np.full(d, base)
    cv_mse = np.zeros((d, len(grid))) if auto else None
    g_all, r_all, yy_all = gram.sum((0, 1)), rhs.sum((0, 1)), yy.sum(0)
    block = np.r_[0, np.repeat(np.arange(1, d + 1), p_eff)]  # column -> block (0 intercept, 1 + j node j)
    eqs = []  # per node: the active columns and the per-fold (expected) normal equations
    for i in range(d):
        own = np.r_[True, block[1:] == i + 1]  # intercept and own lags: always in the equation
        # own-lag AR(p) alone: its residual variance weights the loss
        g_own, r_own = g_all[np.ix_(own, own)], r_all[own, i]
        beta = _ridge_solve(g_own, r_own, base * total)
        resid[i] = max(float(yy_all[i] - 2 * beta @ r_own + beta @ g_own @ beta) / total, 1e-12)
        # graph-restricted VAR: expected design scales the lags of x_j by A[j, i]
        scale1, scale2 = _expected_gates(m1, m2, i)
        eg_f = np.einsum("kab,fkab->fab", scale2[:, block][:, :, block], gram)  # per fold
        er_f = np.einsum("ka,fka->fa", scale1[:, block], rhs[..., i])
        active = own | (np.diag(eg_f.sum(0)) > 0)
        ix = np.ix_(active, active)
        eg_f, er_f = eg_f[:, ix[0], ix[1]], er_f[:, active]
        if auto:
            cv_mse[i] = _cv_ridge_curve(eg_f, er_f, yy[:, i], cnt, grid)
            chosen[i] = grid[int(np.argmin(cv_mse[i]))]  # first minimum: ties go to the smaller penalty
        eqs.append((active, eg_f, er_f))
    floor, floor_cv = 0.0, None
    if auto and rollout_cv and origin is not None and n_f > 1:
        floor, floor_cv = _rollout_floor(
            series,
            eqs,
            cnt,
            chosen,
            grid,
            fold,
            n_f,
            group,
            m1,
            block,
            hist.shape[1],
            fut.shape[1],
            score_node,
        )
        chosen = np.maximum(chosen, floor)
    for i, (active, eg_f, er_f) in enumerate(eqs):
        beta = np.zeros(cols)
        beta[active] = _ridge_solve(eg_f.sum(0), er_f.sum(0), chosen[i] * total)
        _store_equation(beta, i, bias, coef, kernel)
    return _LSFit(bias, coef, kernel, resid, chosen, cv_mse, grid, floor, floor_cv)


def _store_equation(beta, i: int, bias, coef, kernel) -> None:
    """Write node ``i``'s fitted equation into the linear part's arrays, in place.

    ``beta`` (..., 1 + d * p_eff): the intercept, then ``p_eff`` lags of every node (node-major, lag 1 first);
    ``bias`` (..., d), ``coef`` (..., d, p) (own lags) and ``kernel`` (..., d, d, p) (``[src, dst, lag]``, its
    diagonal left at 0: the diagonal is never an edge). Leading axes (e.g. shops) are shared by all four.
    """
    d = bias.shape[-1]
    lag = beta[..., 1:].reshape(*beta.shape[:-1], d, -1)
    p_eff = lag.shape[-1]
    bias[..., i] = beta[..., 0]
    coef[..., i, :p_eff] = lag[..., i, :]
    kernel[..., :, i, :p_eff] = lag
    kernel[..., i, i, :] = 0.0


def _accumulate(series, keep, fold, group, n_f: int, n_k: int, p_eff: int):
    """Normal-equation blocks of the lag regression (intercept, then ``p_eff`` lags of every node) per fold and group.

    Returns ``gram`` (F, K, c, c), ``rhs`` (F, K, c, d), ``yy`` (F, K, d) (sums of squared responses) and ``cnt``
    (F, K) (rows), over the kept rows (``keep``, ``fold`` from :func:`_row_layout`; ``group`` (N,) per window).
    """
    n, length, d = series.shape
    cols = 1 + d * p_eff
    gram = np.zeros((n_f, n_k, cols, cols))
    rhs = np.zeros((n_f, n_k, cols, d))
    yy = np.zeros((n_f, n_k, d))
    cnt = np.zeros((n_f, n_k))
    for start in range(0, n, 2048):  # chunks of windows bound the memory of the lag design
        z = series[start : start + 2048]
        lags = np.stack(
            [z[:, p_eff - 1 - k : length - 1 - k] for k in range(p_eff)], axis=-1
        )  # (n, rows, d, p)
        x = np.concatenate([np.ones((*lags.shape[:2], 1)), lags.reshape(*lags.shape[:2], -1)], axis=-1)
        kp = keep[start : start + 2048]
        xs, ys = x[kp], z[:, p_eff:][kp]  # (m, cols), (m, d)
        gs = np.broadcast_to(group[start : start + 2048, None], kp.shape)[kp]
        cell = fold[start : start + 2048][kp] * n_k + gs
        for c in np.unique(cell):
            f, k = divmod(int(c), n_k)
            sel = cell == c
            gram[f, k] += xs[sel].T @ xs[sel]
            rhs[f, k] += xs[sel].T @ ys[sel]
            yy[f, k] += np.einsum("nd,nd->d", ys[sel], ys[sel])
            cnt[f, k] += sel.sum()
    return gram, rhs, yy, cnt


def _expected_gates(m1, m2, i: int):
    """Expected gates of node ``i``'s equation per graph bank entry: ``scale1`` (K, d + 1) = E[gate_b] per block
    (block 0 the intercept, block ``1 + j`` the lags of node ``j``; own lags and intercept always open) and
    ``scale2`` (K, d + 1, d + 1) = E[gate_b gate_b'] (from the moments of :func:`_graph_moments`)."""
    n_k, d = m1.shape[0], m1.shape[-1]
    scale1 = np.ones((n_k, d + 1))
    scale1[:, 1:] = np.where(np.arange(d) == i, 1.0, m1[:, :, i])
    scale2 = scale1[:, :, None] * scale1[:, None, :]
    scale2[:, 1:, 1:] = m2[:, i]
    scale2[:, 1 + i, 1:] = scale1[:, 1:]
    scale2[:, 1:, 1 + i] = scale1[:, 1:]
    scale2[:, 1 + i, 1 + i] = 1.0
    return scale1, scale2


# Relative penalties (times the shop's regression rows) on a shop's deviation from the pooled fit, searched by
# blocked cross-validation when ``DecoderConfig.shop_linear``; "no offsets" is always a candidate and wins ties.
_SHOP_GRID = tuple(float(v) for v in np.logspace(1, -3, 9))  # strongest shrinkage first: it wins ties


class _ShopFit(NamedTuple):
    """Result of :func:`_ls_shop_offsets` (see there)."""

    bias: np.ndarray
    coef: np.ndarray
    kernel: np.ndarray
    penalty: np.ndarray
    cv_mse: np.ndarray
    grid: tuple


def _ls_shop_offsets(
    hist,
    fut,
    shop,
    origin,
    shop_group,
    m1,
    m2,
    p: int,
    pooled: _LSFit,
    n_shops: int,
    *,
    n_folds: int = _N_FOLDS,
) -> _ShopFit:
    """Least-squares warm start of the per-shop offsets: each shop's deviation from the pooled fit ``pooled``.

    Node ``i``'s equation in shop ``s`` is the pooled equation plus an offset ``delta_s`` (intercept, own lags
    and the graph-gated lags of the other nodes, as in :func:`_ls_init`, with the expected gates of shop ``s``'s
    training graph) minimising the shop's (expected) squared one-step error plus ``penalty * rows_s`` times the
    squared slopes of ``delta_s``: a ridge towards the pooled fit, the intercept free. The penalty is chosen per
    node from ``(no offsets, *_SHOP_GRID)`` by blocked ``n_folds``-fold cross-validation over time (each
    held-out block predicted by the pooled and shop fits on the other blocks); "no offsets" is listed first, so it
    wins ties and a node whose shops agree keeps the pooled equation.

    Returns
    -------
    _ShopFit
        ``bias`` (S, d), ``coef`` (S, d, p), ``kernel`` (S, d, d, p) (zero on the diagonal and wherever the
        shop's training graph never has the edge), ``penalty`` (d,) (``inf`` = no offsets), ``cv_mse``
        (d, 1 + len(grid)) and ``grid``.
    """
    series = np.concatenate([hist, fut], axis=1).astype(np.float64)
    n, length, d = series.shape
    p_eff = min(p, length - 1)
    n_rows = length - p_eff
    cols = 1 + d * p_eff
    shop = np.asarray(shop, dtype=np.int64)
    keep, fold, n_f = _row_layout(n, hist.shape[1], n_rows, p_eff, shop, origin, n_folds)
    gram, rhs, yy, cnt = _accumulate(series, keep, fold, shop, n_f, int(n_shops), p_eff)  # per (fold, shop)
    k_of = np.asarray(shop_group, dtype=np.int64)
    block = np.r_[0, np.repeat(np.arange(1, d + 1), p_eff)]
    grid = _SHOP_GRID
    bias, coef = np.zeros((n_shops, d)), np.zeros((n_shops, d, p))
    kernel = np.zeros((n_shops, d, d, p))
    penalty = np.full(d, np.inf)
    cv_mse = np.zeros((d, 1 + len(grid)))
    fit_n = cnt.sum(0)[None] - cnt  # (F, S) rows of each shop outside fold f
    for i in range(d):
        scale1, scale2 = _expected_gates(m1, m2, i)
        s1, s2 = scale1[k_of][:, block], scale2[k_of][:, block][:, :, block]  # per shop
        eg = np.einsum("sab,fsab->fsab", s2, gram)  # (F, S, c, c)
        er = np.einsum("sa,fsa->fsa", s1, rhs[..., i])  # (F, S, c)
        y2 = yy[..., i]  # (F, S)
        own = np.r_[True, block[1:] == i + 1]
        active = own | (np.diag(eg.sum((0, 1))) > 0)
        eg, er = eg[:, :, active][:, :, :, active], er[:, :, active]
        a = int(active.sum())
        pen = _slope_penalty(a)
        jitter = 1e-9 * np.eye(a)  # a shop without rows outside a fold: its (zero) offset stays solvable
        # pooled slopes without fold f (the pooled fit's own penalty), then each shop's offset from them
        eg_s, er_s = eg.sum(0), er.sum(0)  # (S, c, c), (S, c) all folds
        eg_fit, er_fit = eg_s[None] - eg, er_s[None] - er  # leave fold f out, per shop
        lam_pool = float(pooled.ridge[i])
        beta_pool_f = np.stack(
            [_ridge_solve(eg_fit[f].sum(0), er_fit[f].sum(0), lam_pool * fit_n[f].sum()) for f in range(n_f)]
        )  # (F, a)

        total = cnt.sum()
        cv_mse[i, 0] = (
            sum(
                _fold_sse(np.broadcast_to(beta_pool_f[f], (n_shops, a)), y2[f], er[f], eg[f])
                for f in range(n_f)
            )
            / total
        )
        for g_i, lam in enumerate(grid):
            err = 0.0
            for f in range(n_f):
                mats = eg_fit[f] + lam * fit_n[f][:, None, None] * pen[None] + jitter
                rhs_f = er_fit[f] - np.einsum("sab,b->sa", eg_fit[f], beta_pool_f[f])
                delta = np.linalg.solve(mats, rhs_f[..., None])[..., 0]
                err += _fold_sse(beta_pool_f[f][None] + delta, y2[f], er[f], eg[f])
            cv_mse[i, 1 + g_i] = err / total
        # first minimum: ties go to "no offsets", then to the stronger shrinkage
        best = int(np.argmin(cv_mse[i]))
        if best == 0:
            continue
        lam = grid[best - 1]
        penalty[i] = lam
        beta_pool = np.r_[
            pooled.bias[i],
            np.concatenate(
                [pooled.coef[i, :p_eff] if j == i else pooled.kernel[j, i, :p_eff] for j in range(d)]
            ),
        ][active]
        mats = eg_s + lam * cnt.sum(0)[:, None, None] * pen[None] + jitter
        delta = np.linalg.solve(mats, (er_s - np.einsum("sab,b->sa", eg_s, beta_pool))[..., None])[..., 0]
        full = np.zeros((n_shops, cols))
        full[:, active] = delta
        _store_equation(full, i, bias, coef, kernel)
    return _ShopFit(bias, coef, kernel, penalty, cv_mse, grid)


def _fold_sse(beta, yy, er, eg) -> float:
    """Squared one-step error of one fold's rows under per-shop coefficients ``beta`` (S, a), from the fold's
    normal-equation blocks: ``yy`` (S,), ``er`` (S, a), ``eg`` (S, a, a)."""
    return float(np.sum(yy - 2 * np.einsum("sa,sa->s", beta, er) + np.einsum("sa,sab,sb->s", beta, eg, beta)))


def _rollout_floor(series, eqs, cnt, chosen, grid, fold, n_f, group, m1, block, w, horizon, score_node):
    """A common lower bound on the per-node ridges, chosen by blocked cross-validation of the free-running forecast.

    The one-step CV of :func:`_cv_ridge_curve` picks each equation's penalty for one step ahead, but the decoder
    is judged ``horizon`` steps ahead, where the estimation error of every equation feeding the forecast compounds
    (a graph VAR on a short panel can forecast one step well and seven steps worse than its own-lag AR). Each
    candidate floor ``c`` in ``(0,) + grid`` sets the penalties to ``max(chosen, c)``; fold ``f``'s windows (those
    whose ``horizon`` forecast steps all fall in time block ``f``) are forecast from their history by the VAR
    fitted on the other blocks, with each edge's lags scaled by its expected gate ``m1`` (exact for a fixed graph,
    the mean-gate forecast for posterior sampling), and scored by the squared error of node ``score_node`` (every
    node when None). Ties go to the smaller floor, so ``c = 0`` (the one-step choice) stays unless a larger
    penalty forecasts strictly better. Returns ``(floor, cv)`` with ``cv`` the score per candidate, or
    ``(0.0, None)`` when no window has all its forecast steps inside one block (or the history is shorter than
    the lags, so no window can be rolled out from its own history).
    """
    d = series.shape[2]
    cols = block.size
    p_eff = (cols - 1) // d
    fut_fold = fold[:, -horizon:]
    whole = np.all(fut_fold == fut_fold[:, :1], axis=1) & (w >= p_eff)
    if not whole.any():
        return 0.0, None
    held = [np.flatnonzero(whole & (fut_fold[:, 0] == f)) for f in range(n_f)]
    gate = np.ones((m1.shape[0], d + 1, d))  # gate[k, b, i]: expected gate of block b in node i's equation
    gate[:, 1:] = np.where(np.eye(d, dtype=bool)[None], 1.0, m1)
    gate = gate[:, block]  # (K, cols, d)
    cands = (0.0, *grid)
    scores = np.full(len(cands), np.inf)
    last = None
    for c_i, c in enumerate(cands):
        lam = np.maximum(chosen, c)
        if last is not None and np.array_equal(lam, last):
            scores[c_i] = scores[c_i - 1]  # same penalties as the previous candidate
            continue
        last = lam
        sse, count = 0.0, 0
        for f in range(n_f):
            idx = held[f]
            if idx.size == 0:
                continue
            fit_n = cnt.sum() - cnt[f]
            b = np.zeros((cols, d))
            for i, (active, eg_f, er_f) in enumerate(eqs):
                b[active, i] = _ridge_solve(eg_f.sum(0) - eg_f[f], er_f.sum(0) - er_f[f], lam[i] * fit_n)
            wk = b[None] * gate  # (K, cols, d)
            g_idx = np.asarray(group)[idx]
            buf = series[idx, w - p_eff : w][:, ::-1]  # (m, p, d), lag 1 first
            truth = series[idx, w : w + horizon]
            for h in range(horizon):
                z = np.concatenate(
                    [np.ones((idx.size, 1)), np.swapaxes(buf, 1, 2).reshape(idx.size, -1)], axis=1
                )
                pred = np.empty((idx.size, d))
                # one matrix product per graph bank entry, not an (m, cols, d) copy of the coefficients
                for k in np.unique(g_idx):
                    rows = g_idx == k
                    pred[rows] = z[rows] @ wk[k]
                err = (pred - truth[:, h]) ** 2
                sse += float(err[:, score_node].sum() if score_node is not None else err.mean(1).sum())
                count += idx.size
                buf = np.concatenate([pred[:, None], buf[:, :-1]], axis=1)
        scores[c_i] = sse / count
    best = int(np.argmin(scores))  # first minimum: ties go to the smaller floor
    return float(cands[best]), scores


def _cv_ridge_curve(eg_f, er_f, yy_f, cnt, grid) -> np.ndarray:
    """Cross-validated one-step MSE of one equation for every relative ridge in ``grid``.

    ``eg_f`` (F, a, a), ``er_f`` (F, a) and ``yy_f`` (F,) are the (expected) normal-equation blocks of the F
    folds, ``cnt`` (F,) their row counts. Fold ``f`` is predicted by the fit on all other folds, penalty
    ``ridge * rows in those folds``; the squared error of fold ``f`` follows from its own blocks:
    ``yy_f - 2 beta . er_f + beta' eg_f beta``.
    """
    eg, er = eg_f.sum(0), er_f.sum(0)
    fit_g, fit_r, fit_n = eg[None] - eg_f, er[None] - er_f, cnt.sum() - cnt  # leave fold f out
    lam = np.asarray(grid)[:, None] * fit_n[None]  # (G, F)
    mats = fit_g[None] + lam[..., None, None] * _slope_penalty(eg.shape[0])  # (G, F, a, a)
    beta = np.linalg.solve(mats, np.broadcast_to(fit_r[None], lam.shape + fit_r.shape[1:])[..., None])[..., 0]
    sse = (
        yy_f[None] - 2 * np.einsum("gfa,fa->gf", beta, er_f) + np.einsum("gfa,fab,gfb->gf", beta, eg_f, beta)
    )
    return sse.sum(1) / cnt.sum()


def _ridge_solve(gram: np.ndarray, rhs: np.ndarray, lam: float) -> np.ndarray:
    """Solve ``(gram + lam * diag(0, 1, ..., 1)) beta = rhs`` (column 0 is the unpenalised intercept)."""
    return np.linalg.solve(gram + lam * _slope_penalty(gram.shape[0]), rhs)


def _slope_penalty(n: int) -> np.ndarray:
    """``diag(0, 1, ..., 1)`` (n x n): the ridge acts on the slopes, not on the intercept in column 0."""
    pen = np.ones(n)
    pen[0] = 0.0
    return np.diag(pen)


def _ls_ar_init(hist: np.ndarray, fut: np.ndarray, p: int, ridge: float = _BASE_RIDGE):
    """Per-node least-squares AR(p) with intercept on windows (own lags only): ``coef`` (d, p), ``bias`` (d,) and
    the one-step residual variance (d,). The graph-free case of :func:`_ls_init`."""
    d = hist.shape[-1]
    zero = np.zeros((1, d, d))
    fit = _ls_init(hist, fut, np.zeros(len(hist), np.int64), zero, np.zeros((1, d, d, d)), p, ridge)
    return fit.coef[:, : min(p, hist.shape[1] + fut.shape[1] - 1)], fit.bias, fit.resid


def _window_losses(
    pair, hist, fut, graphs, ctx, shops, burn: int, rollout_weight: float, node_w, target: int
):
    """Per window: the weighted teacher-forced + rollout loss, the all-node rollout MSE and the target's rollout
    MSE, each (n_windows,). Their means over windows are the batch loss and its two auxiliary figures.
    ``pair`` is ``(model, offsets)``; with per-shop offsets each window runs its shop's decoder."""
    model, offsets = pair

    def one(x, g, c, s):
        return teacher_forced_and_rollout(bind_shop(model, offsets, s), x, fut.shape[1], g, c)

    tf, roll = jax.vmap(one)(hist, graphs, ctx, shops)
    tf_mse = jnp.mean((tf[:, burn:-1] - hist[:, burn + 1 :]) ** 2 * node_w, axis=(1, 2))
    ro_err = (roll - fut) ** 2
    loss = tf_mse + rollout_weight * jnp.mean(ro_err * node_w, axis=(1, 2))
    return loss, jnp.mean(ro_err, axis=(1, 2)), jnp.mean(ro_err[..., target], axis=1)


def _window_loss(pair, hist, fut, graphs, ctx, shops, burn: int, rollout_weight: float, node_w, target: int):
    """Weighted teacher-forced + rollout loss of a batch of windows; aux: (rollout MSE, target rollout MSE)."""
    loss, ro, tg = _window_losses(pair, hist, fut, graphs, ctx, shops, burn, rollout_weight, node_w, target)
    return jnp.mean(loss), (jnp.mean(ro), jnp.mean(tg))


def _val_clusters(shop: np.ndarray, origin: np.ndarray, horizon: int) -> tuple[np.ndarray, int]:
    """Cluster ids of the validation windows for the paired standard error: one cluster per shop and block of
    ``horizon`` consecutive origins (rollouts from nearby origins share their future, so they are not independent
    evidence). With fewer than two clusters every window is its own cluster."""
    keys = np.stack([np.asarray(shop), np.asarray(origin) // max(1, horizon)], axis=1)
    _, cid = np.unique(keys, axis=0, return_inverse=True)
    cid = np.asarray(cid).reshape(-1)
    if cid.max(initial=0) + 1 < 2:
        cid = np.arange(len(cid))
    return cid.astype(np.int32), int(cid.max(initial=0) + 1)


def _paired_gain(diff: np.ndarray, cid: np.ndarray, n_clusters: int) -> tuple[float, float]:
    """Mean of the paired per-window differences ``diff`` and its cluster-robust standard error."""
    diff = np.asarray(diff, dtype=np.float64)
    n, k = diff.shape[0], int(n_clusters)
    mean = float(diff.mean())
    sums = np.bincount(cid, weights=diff, minlength=k)
    counts = np.bincount(cid, minlength=k)
    var = k / max(k - 1, 1) * np.sum((sums - counts * mean) ** 2) / n**2
    return mean, float(np.sqrt(var))


@eqx.filter_jit
def _window_criterion(
    pair, hist, fut, graphs, ctx, shops, burn: int, rollout_weight: float, node_w, target, on: str
):
    """Per validation window, the early-stopping criterion (``select_on``) of ``(model, offsets)``: (n_windows,)."""
    loss, _, tg = _window_losses(pair, hist, fut, graphs, ctx, shops, burn, rollout_weight, node_w, target)
    return tg if on == "target" else loss


@functools.lru_cache(maxsize=64)
def _optimizer(lr: float, weight_decay: float, clip: float, warmup: int, total: int):
    """AdamW + global-norm clipping + warmup-cosine schedule. Cached: equal hyper-parameters give the *same*
    objects, so the compiled training loop (where the optimizer is a static argument) is reused across calls."""
    schedule = optax.warmup_cosine_decay_schedule(
        init_value=lr * 0.1 if warmup else lr,
        peak_value=lr,
        warmup_steps=warmup,
        decay_steps=max(total, warmup + 1),
        end_value=lr * 0.02,
    )
    opt = optax.chain(optax.clip_by_global_norm(clip), optax.adamw(schedule, weight_decay=weight_decay))
    return opt, schedule


@dataclasses.dataclass(frozen=True)
class _Plan:
    """Static (hashable) settings of the compiled training loop: equal plans and shapes share one compilation."""

    graph_mode: str
    n_batches: int
    batch: int
    burn: int
    rollout_weight: float
    max_epochs: int
    patience: int
    target: int
    select_on: str
    opt: optax.GradientTransformation


@eqx.filter_jit
def _train_chunk(static, carry: dict, data: dict, until, plan: _Plan) -> dict:
    """Run the early-stopping loop until ``carry["k"] == until`` (or it stops): one compiled ``while_loop``.

    Iteration ``k`` first evaluates the validation loss of the parameters after ``k`` epochs (``k = 0``: the
    warm start), updates the best parameters and the patience counter, then -- unless it stops (patience used
    up, ``max_epochs`` reached or a non-finite loss) -- trains epoch ``k`` (a fresh permutation, then a
    ``lax.scan`` over mini-batches). All bookkeeping stays on the device; nothing returns to Python per epoch.
    """
    tr_hist, tr_fut, tr_shop, tr_ctx = data["train"]
    n_train = tr_hist.shape[0]

    def loss_fn(p, hist, fut, graphs, ctx, shops):
        pair = eqx.combine(p, static)  # (model, per-shop offsets or None)
        return _window_loss(
            pair, hist, fut, graphs, ctx, shops, plan.burn, plan.rollout_weight, data["node_w"], plan.target
        )

    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)

    def train_step(c, idx):
        p, o, key = c
        key, k_g = jax.random.split(key)
        graphs = _window_graphs(plan.graph_mode, data["probs"], data["s2k"], tr_shop[idx], k_g)
        (loss, _), grads = grad_fn(p, tr_hist[idx], tr_fut[idx], graphs, tr_ctx[idx], tr_shop[idx])
        updates, o = plan.opt.update(grads, o, p)
        return (eqx.apply_updates(p, updates), o, key), loss

    def train_epoch(c):
        key, k_ep = jax.random.split(c["key"])
        k_perm, k_steps = jax.random.split(k_ep)
        perm = jax.random.permutation(k_perm, n_train)[: plan.n_batches * plan.batch]
        perm = perm.reshape(plan.n_batches, plan.batch)
        (params, opt_state, _), losses = jax.lax.scan(
            train_step, (c["params"], c["opt_state"], k_steps), perm
        )
        tl = jnp.mean(losses)
        return {
            **c,
            "params": params,
            "opt_state": opt_state,
            "key": key,
            "train_loss": c["train_loss"].at[c["k"]].set(tl),
            "bad": c["bad"] | ~jnp.isfinite(tl),
        }

    def body(c):
        k = c["k"]
        vl, (vro, vtg) = loss_fn(c["params"], *data["val"])
        crit = vtg if plan.select_on == "target" else vl
        first = k == 0
        prev = jnp.maximum(k - 1, 0)
        improved = first | (crit < c["best_val"])
        c = {
            **c,
            "init_val": jnp.where(first, jnp.stack([vl, vro, vtg]), c["init_val"]),
            "val_loss": jnp.where(first, c["val_loss"], c["val_loss"].at[prev].set(vl)),
            "val_rollout": jnp.where(first, c["val_rollout"], c["val_rollout"].at[prev].set(vro)),
            "val_target": jnp.where(first, c["val_target"], c["val_target"].at[prev].set(vtg)),
            "best_params": jax.tree_util.tree_map(
                lambda b, q: jnp.where(improved, q, b), c["best_params"], c["params"]
            ),
            "best_val": jnp.where(improved, crit, c["best_val"]),
            "best_epoch": jnp.where(improved, k - 1, c["best_epoch"]),
            "wait": jnp.where(improved, 0, c["wait"] + 1),
            "bad": c["bad"] | ~jnp.isfinite(vl),
        }
        stop = c["bad"] | (c["wait"] >= plan.patience) | (k >= plan.max_epochs)
        c = jax.lax.cond(stop, lambda q: q, train_epoch, c)
        return {**c, "k": jnp.where(stop, k, k + 1), "stopped": stop}

    def cond(c):
        return ~c["stopped"] & (c["k"] < until + 1)

    # `until + 1`: the validation pass of the parameters after epoch `until` runs in the same call
    return jax.lax.while_loop(cond, body, carry)


def train_decoder(
    rng_key, panel: Panel, *, graph, config: DecoderConfig = _DEFAULT, label: str | None = None
):
    """Train a decoder on ``panel`` under ``graph`` and return it frozen.

    The linear part (own-lag skip and the lagged cross-node path: graph-gated for the graph-safe decoder,
    unrestricted for the dense baseline) starts at the least-squares (ridge, ``config.ls_ridge``) VAR on the
    training windows (``config.ar_init`` / ``config.var_init``), the network at zero output; validation-based
    early stopping keeps the warm start unless training clearly beats it (``config.select_on``,
    ``config.select_se``).

    Parameters
    ----------
    rng_key : jax.random key
        Initialisation, batch order and posterior graph draws; same key -> identical weights.
    panel : Panel
        Training uses the TRAIN split of ``panel.scaled`` (standardised); ``panel.context`` feeds the Hill head
        (graph-safe, target only) or the dense baseline.
    graph : GraphPosterior, array (d, d) or (R, d, d), "empty", "full" or None
        See the module docstring. ``None`` only with ``config.architecture`` "dense" or "ar_only".
    config : DecoderConfig
    label : str, optional
        Overrides ``train_graph_label`` (for example ``"oracle"`` when ``graph`` is the true graph).

    Returns
    -------
    TrainedDecoder

    Raises
    ------
    InputTypeError, ConfigError, GraphValidationError, DataValidationError

    Examples
    --------
    >>> import jax, numpy as np, dice_prob as dp
    >>> from dice_prob.inference.train import train_decoder
    >>> x = np.random.default_rng(0).normal(size=(2, 40, 3))
    >>> cfg = dp.DecoderConfig(hidden_size=4, message_size=2, embed_size=2, history=6, horizon=2,
    ...                        max_epochs=2, progress_bar=False)
    >>> dec = train_decoder(jax.random.key(0), dp.Panel(x), graph="full", config=cfg)
    >>> dec.rollout(x[0, :6], 2, np.zeros((3, 3))).shape
    (2, 3)
    """
    if not isinstance(panel, Panel):
        raise InputTypeError(f"panel: expected a dice_prob.Panel, got {type(panel).__name__}")
    if not isinstance(config, DecoderConfig):
        raise InputTypeError(f"config: expected a DecoderConfig, got {type(config).__name__}")
    t_start = time.perf_counter()
    src = resolve_graph(panel, graph, config)
    glabel = str(label) if label is not None else src.label

    win = forecast_windows(
        panel.scaled, history=config.history, horizon=config.horizon, split="train", context=panel.context
    )
    train_w, val_w = _split_train_val(win, config.val_fraction)
    n_train = len(train_w)
    d = panel.n_nodes
    ctx_size = 0 if panel.context is None else panel.context.shape[1]
    if ctx_size:
        c_mean = panel.context.mean(axis=0)
        c_scale = panel.context.std(axis=0)
        c_scale = np.where(c_scale > 1e-12, c_scale, 1.0)
    else:
        c_mean = c_scale = None

    k_init, k_train, k_val = jax.random.split(rng_key, 3)
    model = build_decoder(
        k_init,
        d,
        config=config,
        context_size=ctx_size,
        target_index=panel.target_index,
        context_mean=c_mean,
        context_scale=c_scale,
    )
    # least-squares warm start of the linear part: own lags, plus the lagged cross-node path when the model has
    # one and var_init is on -- along the training graph (graph-safe decoder) or over every off-diagonal pair (the
    # dense baseline's unrestricted VAR path, which ignores the graph by design)
    var_attr = kernel_attribute(model)
    use_var = config.var_init and var_attr is not None
    if use_var and var_attr == "var_kernel":
        ls_src = _GraphSource(
            "fixed",
            offdiag_mask(d)[None, None].astype(np.float32),
            np.zeros(panel.n_shops, np.int32),
            "dense",
        )
    else:
        ls_src = src if use_var else dataclasses.replace(src, mode="none")
    m1, m2 = _graph_moments(ls_src)

    def ls_fit(w):
        return _ls_init(
            w.history,
            w.future,
            ls_src.shop_to_k[w.shop] if use_var else np.zeros(len(w), np.int64),
            m1,
            m2,
            model.ar_lags,
            config.ls_ridge if not isinstance(config.ls_ridge, str) else "auto",
            shop=w.shop,
            origin=w.origin,
            rollout_cv=config.ls_ridge == "rollout",
            score_node=int(panel.target_index) if config.select_on == "target" else None,
        )

    def warm_start(m, f):
        m = eqx.tree_at(
            lambda m: (m.ar_coef, m.ar_bias),
            m,
            (jnp.asarray(f.coef, jnp.float32), jnp.asarray(f.bias, jnp.float32)),
        )
        if use_var:
            m = eqx.tree_at(lambda m: getattr(m, var_attr), m, jnp.asarray(f.kernel, jnp.float32))
        return m

    def shop_fit(w, pooled):
        return _ls_shop_offsets(
            w.history,
            w.future,
            w.shop,
            w.origin,
            ls_src.shop_to_k,
            m1,
            m2,
            model.ar_lags,
            pooled,
            panel.n_shops,
        )

    def shop_start(offsets, f):
        kernel = offsets.kernel if offsets.kernel is None else jnp.asarray(f.kernel, jnp.float32)
        return ShopOffsets(
            jnp.asarray(f.bias, jnp.float32), jnp.asarray(f.coef, jnp.float32), kernel, offsets.kernel_attr
        )

    fit = ls_fit(train_w)
    resid = fit.resid
    if config.ar_init:
        model = warm_start(model, fit)
    offsets = shop_res = None
    if config.shop_linear:
        offsets = zero_offsets(model, panel.n_shops)
        if config.ar_init:
            shop_res = shop_fit(train_w, fit)
            offsets = shop_start(offsets, shop_res)
    if config.loss_weighting == "ar_residual":
        w = 1.0 / np.maximum(resid, 1e-2)
        node_w = jnp.asarray(w / w.mean(), jnp.float32)
    else:
        node_w = jnp.ones((d,), jnp.float32)
    params, static = eqx.partition((model, offsets), eqx.is_inexact_array)

    def dev(w):
        ctx = np.zeros((len(w), ctx_size)) if w.context is None else w.context
        return (
            jnp.asarray(w.history, jnp.float32),
            jnp.asarray(w.future, jnp.float32),
            jnp.asarray(w.shop, jnp.int32),
            jnp.asarray(ctx, jnp.float32),
        )

    tr = dev(train_w)
    va = dev(val_w)
    probs = jnp.asarray(src.probs)
    s2k = jnp.asarray(src.shop_to_k)
    val_graphs = _window_graphs(src.mode, probs, s2k, va[2], k_val)  # fixed draws: a stable stopping target
    val_cid, n_clusters = _val_clusters(val_w.shop, val_w.origin, config.horizon)
    batch = min(config.batch_size, n_train)
    n_batches = max(1, n_train // batch)
    total_steps = config.max_epochs * n_batches
    opt, schedule = _optimizer(
        float(config.learning_rate),
        float(config.weight_decay),
        float(config.grad_clip),
        int(config.warmup_fraction * total_steps),
        int(total_steps),
    )
    plan = _Plan(
        graph_mode=src.mode,
        n_batches=n_batches,
        batch=batch,
        burn=max(0, min(config.ar_lags - 1, config.history - 2)),
        rollout_weight=float(config.rollout_weight),
        max_epochs=int(config.max_epochs),
        patience=int(config.patience),
        target=int(panel.target_index),
        select_on=config.select_on,
        opt=opt,
    )
    data = {
        "train": tr,
        "val": (va[0], va[1], val_graphs, va[3], va[2]),
        "probs": probs,
        "s2k": s2k,
        "node_w": node_w,
    }
    f32, i32 = jnp.float32, jnp.int32
    carry = {
        "params": params,
        "opt_state": opt.init(params),
        "key": k_train,
        "best_params": params,
        "best_val": jnp.asarray(jnp.inf, f32),
        "best_epoch": jnp.asarray(-1, i32),
        "wait": jnp.asarray(0, i32),
        "k": jnp.asarray(0, i32),
        "stopped": jnp.asarray(False),
        "bad": jnp.asarray(False),
        "init_val": jnp.zeros((3,), f32),
        "train_loss": jnp.zeros((config.max_epochs,), f32),
        "val_loss": jnp.zeros((config.max_epochs,), f32),
        "val_rollout": jnp.zeros((config.max_epochs,), f32),
        "val_target": jnp.zeros((config.max_epochs,), f32),
    }
    show = progress_enabled(config.progress_bar)
    # with a progress bar, return to Python every few epochs to draw it; otherwise one call runs everything
    chunk = 10 if show else config.max_epochs
    bar = tqdm(total=config.max_epochs, desc=f"decoder[{glabel}]", disable=not show)
    t_loop = time.perf_counter()
    done = 0
    while True:
        until = min(done + chunk, config.max_epochs)
        carry = _train_chunk(static, carry, data, jnp.asarray(until, i32), plan)
        k, stopped = int(carry["k"]), bool(carry["stopped"])
        bar.update(k - done)
        if k:
            bar.set_postfix(
                train=f"{float(carry['train_loss'][k - 1]):.4f}",
                val=f"{float(carry['best_val']):.4f}",
                refresh=False,
            )
        done = k
        if stopped:
            break
    bar.close()
    loop_seconds = time.perf_counter() - t_loop
    epochs_run = int(carry["k"])
    tl = np.asarray(carry["train_loss"][:epochs_run], dtype=float)
    vl = np.asarray(carry["val_loss"][:epochs_run], dtype=float)
    vro = np.asarray(carry["val_rollout"][:epochs_run], dtype=float)
    vtg = np.asarray(carry["val_target"][:epochs_run], dtype=float)
    if bool(carry["bad"]):
        bad_epoch = int(np.flatnonzero(~(np.isfinite(tl) & np.isfinite(vl)))[0]) if epochs_run else 0
        raise DataValidationError(
            f"training diverged at epoch {bad_epoch} (loss {tl[bad_epoch] if epochs_run else float('nan')}); "
            "lower learning_rate or check the data scale"
        )
    best_epoch = int(carry["best_epoch"])
    best_params, best_val = carry["best_params"], float(carry["best_val"])
    init_val = np.asarray(carry["init_val"], dtype=float)
    select_gain = select_gain_se = None
    if best_epoch >= 0 and config.select_se > 0:
        # one-standard-error rule against the warm start, once, after the compiled loop: the best checkpoint
        # replaces the least-squares start only when its paired validation gain exceeds select_se
        # cluster-robust standard errors (the simpler model wins what the small validation split cannot resolve)
        args = (*data["val"], plan.burn, plan.rollout_weight, data["node_w"], plan.target, plan.select_on)
        warm_w = np.asarray(_window_criterion(eqx.combine(params, static), *args))
        best_w = np.asarray(_window_criterion(eqx.combine(best_params, static), *args))
        select_gain, select_gain_se = _paired_gain(best_w - warm_w, val_cid, n_clusters)
        if not select_gain + config.select_se * select_gain_se < 0:
            best_params, best_epoch = params, -1
            best_val = float(init_val[2] if config.select_on == "target" else init_val[0])
    if best_epoch == 0 and epochs_run > config.patience:
        warnings.warn(
            f"decoder[{glabel}]: the validation loss was best after the first epoch and never improved in "
            f"{config.patience} more; the network adds little to its least-squares warm start or overfits — "
            "try a lower learning_rate, smaller hidden sizes or more data",
            ConvergenceWarning,
            stacklevel=2,
        )
    hist_log = {
        "train_loss": tl.tolist(),
        "val_loss": vl.tolist(),
        "val_rollout_mse": vro.tolist(),
        "val_target_mse": vtg.tolist(),
        "learning_rate": [float(v) for v in np.asarray(schedule(np.arange(1, epochs_run + 1) * n_batches))],
        "init_val_loss": float(init_val[0]),
        "init_val_rollout_mse": float(init_val[1]),
        "init_val_target_mse": float(init_val[2]),
        "best_epoch": best_epoch,
        "best_val_loss": best_val,
        "select_on": config.select_on,
        "select_gain": select_gain,
        "select_gain_se": select_gain_se,
        "epochs_run": epochs_run,
        "train_seconds": time.perf_counter() - t_start,
        "loop_seconds": loop_seconds,
        "n_train_windows": int(n_train),
        "n_val_windows": int(len(val_w)),
        "ls_ridge": fit.ridge.tolist(),
        "ls_ridge_grid": list(fit.grid),
        "ls_cv_mse": None if fit.cv_mse is None else fit.cv_mse.tolist(),
        "ls_ridge_floor": fit.floor,
        "ls_floor_cv_mse": None if fit.floor_cv is None else fit.floor_cv.tolist(),
    }
    final, final_offsets = eqx.combine(best_params, static)
    refit = None
    if best_epoch == -1 and config.ar_init and config.ls_refit:
        # no trained checkpoint clearly beat the warm start, so the decoder is that linear fit: refit it on every
        # training window, the validation ones included (they only chose between it and the checkpoints)
        refit = ls_fit(win)
        final = warm_start(final, refit)
        if final_offsets is not None:
            shop_res = shop_fit(win, refit)
            final_offsets = shop_start(final_offsets, shop_res)
    hist_log["ls_refit"] = refit is not None
    if shop_res is not None:
        # per node: the relative penalty of the shops' offsets (None = no offsets: the pooled fit won the CV)
        hist_log["shop_linear_penalty"] = [None if not np.isfinite(v) else float(v) for v in shop_res.penalty]
        hist_log["shop_linear_grid"] = list(shop_res.grid)
        hist_log["shop_linear_cv_mse"] = shop_res.cv_mse.tolist()
    if refit is not None:
        hist_log["ls_ridge_refit"] = refit.ridge.tolist()
        hist_log["ls_ridge_floor_refit"] = refit.floor
    return TrainedDecoder(
        model=final,
        config=config,
        history=hist_log,
        nodes=tuple(panel.nodes),
        target_index=int(panel.target_index),
        train_graph_label=glabel,
        shop_offsets=final_offsets,
    )


# ---------------------------------------------------------------------------------------------- evaluation
@eqx.filter_jit
def _rollout_windows(model, offsets, hist, graphs, ctx, shops, horizon):
    """Rollouts of every window (N, W, d) under its own graph (N, d, d) (and its shop's offsets) -> (N, horizon, d)."""
    return jax.vmap(lambda x, g, c, s: bind_shop(model, offsets, s).rollout(x, horizon, g, c))(
        hist, graphs, ctx, shops
    )


@eqx.filter_jit
def _rollout_windows_stack(model, offsets, hist, graphs, ctx, shops, horizon):
    """The same for a stack of graph inputs (S, N, d, d) -> (S, N, horizon, d), one vmapped call."""
    one = jax.vmap(lambda x, g, c, s: bind_shop(model, offsets, s).rollout(x, horizon, g, c))
    return jax.vmap(lambda g: one(hist, g, ctx, shops))(graphs)


def _mse_at_h(forecast, future, node=None) -> float:
    """MSE@h of (N, H, d) forecasts (``dice_prob.diagnostics.metrics.mse_at_h`` when importable)."""
    try:
        from dice_prob.diagnostics.metrics import mse_at_h  # lazy: metrics is pure NumPy, imported on use
    except ImportError:  # pragma: no cover - fallback while the metrics module is absent
        err = (np.asarray(forecast) - np.asarray(future)) ** 2
        return float((err if node is None else err[..., node]).mean())
    return float(mse_at_h(forecast, future, node=node))


def evaluate_mse(
    decoder,
    panel: Panel,
    graph=None,
    *,
    horizon: int = 7,
    split: str = "test",
    per_shop: bool = False,
    max_windows: int | None = None,
    rng_key=None,
    history: int | None = None,
) -> dict:
    """MSE@h of a frozen decoder on ``split`` windows of ``panel.scaled`` (teacher-force, free-run ``horizon``).

    Parameters
    ----------
    decoder : TrainedDecoder or decoder module
    graph : None, "empty", "full", array
        ``(d, d)`` one graph; ``(R, d, d)`` with ``per_shop=True`` one per shop; ``(S, d, d)`` (``per_shop``
        False) or ``(S, R, d, d)`` a stack of S graph inputs (e.g. posterior samples) — evaluated in one vmapped
        call, results get a leading draw dimension. ``None`` = zeros (graph-free baselines).
    horizon : int
        Forecast horizon H (MSE averaged over h = 1..H and windows).
    max_windows, rng_key :
        Subsample windows (see :func:`dice_prob.data.windows.forecast_windows`).
    history : int, optional
        Window history length (default: the decoder's training ``config.history``, else 21).

    Returns
    -------
    dict
        ``target`` and ``all`` (float, or (S,) arrays for a stack) and ``n_windows``.

    Examples
    --------
    >>> import jax, numpy as np, dice_prob as dp
    >>> from dice_prob.models.decoder import GraphSafeDecoder
    >>> p = dp.Panel(np.random.default_rng(0).normal(size=(1, 40, 3)))
    >>> m = GraphSafeDecoder(3, hidden_size=4, message_size=2, embed_size=2, key=jax.random.key(0))
    >>> out = evaluate_mse(m, p, np.zeros((4, 3, 3)), horizon=2)
    >>> out["target"].shape
    (4,)
    """
    model = decoder.model if isinstance(decoder, TrainedDecoder) else decoder
    offsets = decoder.shop_offsets if isinstance(decoder, TrainedDecoder) else None
    d = panel.n_nodes
    if offsets is not None and offsets.n_shops != panel.n_shops:
        raise DataValidationError(
            f"panel: {panel.n_shops} shops, but the decoder's per-shop offsets were trained on {offsets.n_shops}"
        )
    if getattr(model, "n_nodes", d) != d:
        raise DataValidationError(f"panel: {d} nodes, but the decoder was built for {model.n_nodes}")
    if history is None:
        history = decoder.config.history if isinstance(decoder, TrainedDecoder) else 21
    win = forecast_windows(
        panel.scaled,
        history=history,
        horizon=horizon,
        split=split,
        context=panel.context,
        max_windows=max_windows,
        rng_key=rng_key,
    )
    ctx_size = getattr(model, "context_size", 0)
    ctx = np.zeros((len(win), ctx_size)) if win.context is None else win.context
    hist = jnp.asarray(win.history, jnp.float32)
    ctx = jnp.asarray(ctx, jnp.float32)
    t = int(panel.target_index)
    if graph is None or isinstance(graph, str):
        if graph is None or graph == "empty":
            a = np.zeros((d, d))
        elif graph == "full":
            a = panel.support_mask().astype(float)
        else:
            raise ConfigError(f"graph: unknown graph name {graph!r}; use 'empty', 'full' or an array")
        graph = a
    a = validate_adjacency(graph, d, name="graph", allow_batch=True)
    stacked = (a.ndim == 3 and not per_shop) or a.ndim == 4
    if a.ndim == 3 and per_shop or a.ndim == 4:
        if a.shape[-3] != panel.n_shops:
            raise GraphValidationError(
                f"graph: {a.shape[-3]} per-shop graphs for a panel of {panel.n_shops} shops"
            )
        a = np.take(a, win.shop, axis=-3)  # (..., N, d, d)
    elif a.ndim == 2:
        a = np.broadcast_to(a, (len(win), d, d))
    elif a.ndim == 3:
        a = np.broadcast_to(a[:, None], (a.shape[0], len(win), d, d))
    else:
        raise GraphValidationError(f"graph: unsupported shape {a.shape}")
    g = jnp.asarray(a, jnp.float32)
    shops = jnp.asarray(win.shop, jnp.int32)
    if stacked:
        fc = _rollout_windows_stack(model, offsets, hist, g, ctx, shops, int(horizon))
    else:
        fc = _rollout_windows(model, offsets, hist, g, ctx, shops, int(horizon))
    fc = np.asarray(fc, dtype=np.float64)
    fut = win.future
    if stacked:
        tgt = np.array([_mse_at_h(f, fut, node=t) for f in fc])
        alln = np.array([_mse_at_h(f, fut, node=None) for f in fc])
    else:
        tgt, alln = _mse_at_h(fc, fut, node=t), _mse_at_h(fc, fut, node=None)
    return {"target": tgt, "all": alln, "n_windows": len(win)}
