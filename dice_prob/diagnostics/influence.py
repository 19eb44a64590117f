"""Counterfactual influence graphs: CIG (one step) and AR-CIG (free-running rollout).

For an ordered pair ``i -> j`` and an evaluation window with last observed step ``t0``, a pulse of ``delta``
(in standardised units, i.e. ``delta`` standard deviations of node ``i``) is added to ``x_i(t0)``:

- **CIG**     ``|y_j(t0+1 | pulse) - y_j(t0+1)| / delta`` — the one-step prediction;
- **AR-CIG**  ``mean_{h=1..H} |y_j(t0+h | pulse) - y_j(t0+h)| / delta`` — the decoder free-runs ``H`` steps
  on its own predictions after the pulse.

Both are averaged over evaluation windows and returned as ``(n_graphs, d, d)`` arrays indexed
``[graph draw, source, target]``: one influence graph per graph input (for example per posterior graph sample).
``method="jvp"`` gives the ``delta -> 0`` limit exactly (``|d y_j / d x_i(t0)|`` via :func:`jax.jvp`).

Everything (graphs x source nodes x windows) runs in ONE jitted call: vmapped over source pulses x windows, and
over graph draws either vmapped too (GPU/TPU) or, by default on CPU, as a compiled ``lax.map`` over graphs (see
``graph_batch_size``); no Python loop over draws. Decoders that ignore their graph
input (the bypass baselines, ``uses_graph = False``) are evaluated once and broadcast over the graph draws.

Accepted decoders: a :class:`~dice_prob.inference.train.TrainedDecoder` (its ``.model`` is used), or any
``equinox.Module`` with ``rollout(x_history (W, d), horizon, graph (d, d), context)``. When the module also has
``init_state()`` and ``step(state, x_t, graph, context)`` (every decoder of :mod:`dice_prob.models` does), the
shared teacher-forced prefix of a window is computed once and only the pulsed suffix is re-run (``engine="step"``,
the default when available); ``engine="rollout"`` calls ``rollout`` for every pulse instead. Both give the same
numbers (tested).
"""

from __future__ import annotations

import dataclasses

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from dice_prob.data.windows import Windows, forecast_windows
from dice_prob.errors import ConfigError, DataValidationError, InputTypeError
from dice_prob.graph import validate_adjacency
from dice_prob.models.shop_linear import bind_shop

__all__ = [
    "InfluenceResult",
    "ar_cig",
    "as_graph_stack",
    "cig",
    "eval_windows",
    "forecast_draws",
    "influence",
    "resolve_decoder",
]

_DEFAULT_HISTORY = 21  # DecoderConfig().history; used when the decoder does not carry its own config


# ----------------------------------------------------------------------------------------------- decoder


class _RolloutAdapter(eqx.Module):
    """Wraps a plain ``rollout`` callable (not an equinox module) so it can travel through ``filter_jit``."""

    fn: object = eqx.field(static=True)
    uses_graph: bool = eqx.field(static=True, default=True)

    def rollout(self, x_history, horizon, graph, context=None):
        return self.fn(x_history, horizon, graph, context)


@dataclasses.dataclass(frozen=True)
class _Resolved:
    module: eqx.Module
    uses_graph: bool
    has_step: bool
    wants_context: bool | None  # None = unknown (pass context when the panel has one)
    history: int | None
    offsets: object = None  # per-shop offsets of the linear part (TrainedDecoder.shop_offsets) or None


def resolve_decoder(decoder) -> _Resolved:
    """Find the equinox module behind ``decoder`` and what it needs (graph, context, history length).

    Accepts a :class:`~dice_prob.inference.train.TrainedDecoder`, a bare decoder module or any object with a
    ``rollout`` method.

    Examples
    --------
    >>> import jax
    >>> from dice_prob.diagnostics.influence import resolve_decoder
    >>> from dice_prob.models.decoder import GraphSafeDecoder
    >>> dec = GraphSafeDecoder(3, hidden_size=4, message_size=2, embed_size=2, key=jax.random.key(0))
    >>> res = resolve_decoder(dec)
    >>> type(res.module).__name__, res.uses_graph, res.has_step, res.wants_context, res.history
    ('GraphSafeDecoder', True, True, False, None)
    >>> resolve_decoder(object())  # doctest: +ELLIPSIS
    Traceback (most recent call last):
        ...
    dice_prob.errors.InputTypeError: decoder: expected a TrainedDecoder or an equinox decoder module ...
    """
    model = getattr(decoder, "model", None)
    if isinstance(model, eqx.Module) and hasattr(model, "rollout"):
        module = model
    elif isinstance(decoder, eqx.Module) and hasattr(decoder, "rollout"):
        module = decoder
    elif callable(getattr(decoder, "rollout", None)):
        module = _RolloutAdapter(decoder.rollout, bool(getattr(decoder, "uses_graph", True)))
    else:
        raise InputTypeError(
            f"decoder: expected a TrainedDecoder or an equinox decoder module with a rollout(x_history, horizon, "
            f"graph, context) method, got {type(decoder).__name__}"
        )
    uses_graph = bool(getattr(module, "uses_graph", getattr(decoder, "uses_graph", True)))
    has_step = callable(getattr(module, "step", None)) and callable(getattr(module, "init_state", None))
    ctx_size = getattr(module, "context_size", None)
    wants_context = None if ctx_size is None else bool(int(ctx_size) > 0)
    cfg = getattr(decoder, "config", None)
    history = getattr(cfg, "history", None)
    offsets = getattr(decoder, "shop_offsets", None)
    return _Resolved(
        module, uses_graph, has_step, wants_context, None if history is None else int(history), offsets
    )


def _window_shops(res: _Resolved, panel_or_windows, win: Windows):
    """Each window's shop for a decoder with per-shop offsets (None without): windows must come from a Panel or a
    Windows object, whose shop indices are those the offsets were trained on."""
    if res.offsets is None:
        return None
    if not (isinstance(panel_or_windows, Windows) or hasattr(panel_or_windows, "scaled")):
        raise InputTypeError(
            "panel_or_windows: the decoder has per-shop offsets (DecoderConfig.shop_linear), so each window's shop "
            "must be known; pass the Panel (or a Windows object) instead of bare histories"
        )
    n = res.offsets.n_shops
    bad = np.asarray(win.shop)[(np.asarray(win.shop) < 0) | (np.asarray(win.shop) >= n)]
    if bad.size:
        raise DataValidationError(
            f"panel_or_windows: a window comes from shop {int(bad[0])}, but the decoder's per-shop offsets "
            f"cover shops 0..{n - 1}"
        )
    return jnp.asarray(win.shop, jnp.int32)


# ----------------------------------------------------------------------------------------------- graphs


def as_graph_stack(
    graphs, n_nodes: int, *, rng_key=None, n_samples: int = 200, n_shops: int | None = 1, support=None
):
    """Normalise a graph input to a float array of shape ``(n, G, d, d)`` with ``G`` in ``{1, n_shops}``.

    Parameters
    ----------
    graphs : array-like, GraphPosterior-like, or str
        ``(d, d)`` -> one draw; ``(n, d, d)`` -> ``n`` draws; ``(n, R, d, d)`` -> ``n`` draws of per-shop graphs.
        An object with ``sample_graphs(rng_key, n)`` (a GraphPosterior) gives ``n_samples`` posterior graph
        samples (needs ``rng_key``); group-shared posteriors with a ``groups`` attribute are mapped to shops.
        ``"empty"`` -> no edge; ``"full"`` -> every pair of ``support`` (default: every off-diagonal pair).
    n_nodes : int
        ``d``.

    Examples
    --------
    >>> as_graph_stack([[0, 1], [0, 0]], 2).shape
    (1, 1, 2, 2)
    >>> float(as_graph_stack("full", 3).sum())
    6.0
    """
    if isinstance(graphs, str):
        if graphs == "empty":
            g = np.zeros((n_nodes, n_nodes))
        elif graphs == "full":
            g = (
                np.asarray(support, dtype=np.float64)
                if support is not None
                else (1.0 - np.eye(n_nodes, dtype=np.float64))
            )
        else:
            raise ConfigError(f"graphs: unknown graph name {graphs!r}; use 'empty', 'full' or an array")
        return g[None, None]
    if hasattr(graphs, "sample_graphs"):
        if rng_key is None:
            raise ConfigError(
                "rng_key: sampling graphs from a posterior is random; pass rng_key=jax.random.key(...)"
            )
        g = np.asarray(graphs.sample_graphs(rng_key, int(n_samples)), dtype=np.float64)
        groups = getattr(graphs, "groups", None)
        if g.ndim == 4 and groups is not None and n_shops is not None and g.shape[1] != n_shops:
            g = g[:, np.asarray(groups, dtype=int)]
    else:
        g = validate_adjacency(graphs, n_nodes, name="graphs", allow_batch=True)
    if g.ndim == 2:
        g = g[None, None]
    elif g.ndim == 3:
        g = g[:, None]
    elif g.ndim != 4:
        raise DataValidationError(
            f"graphs: expected (d, d), (n, d, d) or (n, shops, d, d), got shape {g.shape}"
        )
    if g.shape[-2:] != (n_nodes, n_nodes):
        raise DataValidationError(
            f"graphs: node axes {g.shape[-2:]} do not match the panel's {n_nodes} nodes"
        )
    if n_shops is not None and g.shape[1] not in (1, n_shops):
        raise DataValidationError(
            f"graphs: {g.shape[1]} per-shop graphs but the evaluation windows come from {n_shops} shop(s); "
            "pass one graph per shop of the panel (or one shared graph)"
        )
    if not np.all(np.isfinite(g)):
        raise DataValidationError("graphs: contains NaN or inf; use 0 for 'no edge'")
    return g


# ----------------------------------------------------------------------------------------------- windows


def eval_windows(
    panel_or_windows, *, history: int, horizon: int, n_windows: int | None, rng_key=None, split: str = "test"
) -> tuple[Windows, int]:
    """Evaluation windows and the number of shops the ``shop`` indices refer to.

    ``panel_or_windows`` is a :class:`~dice_prob.data.panel.Panel` (windows via
    :func:`~dice_prob.data.windows.forecast_windows` on ``panel.scaled``), a
    :class:`~dice_prob.data.windows.Windows`, or an array of histories ``(N, W, d)`` / ``(W, d)`` (standardised).

    Examples
    --------
    >>> import jax
    >>> import numpy as np
    >>> import dice_prob as dp
    >>> from dice_prob.diagnostics.influence import eval_windows
    >>> sim = dp.simulate.funnel(jax.random.key(0), n_shops=1, n_steps=40, n_channels=2, n_intermediate=1)
    >>> w, n_shops = eval_windows(sim.panel, history=10, horizon=3, n_windows=4)  # test windows of the panel
    >>> len(w), n_shops, w.history.shape, w.future.shape
    (4, 1, (4, 10, 4), (4, 3, 4))
    >>> w, _ = eval_windows(np.zeros((6, 10, 4)), history=10, horizon=3, n_windows=None)  # bare histories
    >>> len(w), w.future.shape  # no observed future
    (6, (6, 0, 4))
    """
    if isinstance(panel_or_windows, Windows):
        w = panel_or_windows
        if n_windows is not None and len(w) > n_windows:
            w = _subsample(w, n_windows, rng_key)
        return (
            w,
            None,
        )  # shop indices refer to a panel we do not see: any per-shop graph count that covers them
    if hasattr(panel_or_windows, "scaled") and hasattr(panel_or_windows, "nodes"):
        panel = panel_or_windows
        w = forecast_windows(
            panel.scaled,
            history=history,
            horizon=horizon,
            split=split,
            context=panel.context,
            max_windows=n_windows,
            rng_key=rng_key,
        )
        return w, int(panel.n_shops)
    try:
        x = np.asarray(panel_or_windows, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InputTypeError(
            f"panel_or_windows: expected a Panel, Windows or an array of histories (N, W, d), "
            f"got {type(panel_or_windows).__name__}"
        ) from exc
    if x.ndim == 2:
        x = x[None]
    if x.ndim != 3:
        raise DataValidationError(f"panel_or_windows: histories must have shape (N, W, d), got {x.shape}")
    if not np.all(np.isfinite(x)):
        raise DataValidationError("panel_or_windows: histories contain NaN or inf")
    n = x.shape[0]
    w = Windows(x, np.zeros((n, 0, x.shape[2])), np.zeros(n, dtype=int), np.full(n, x.shape[1] - 1), None)
    if n_windows is not None and n > n_windows:
        w = _subsample(w, n_windows, rng_key)
    return w, 1


def _subsample(w: Windows, n: int, rng_key) -> Windows:
    if rng_key is not None:
        pick = np.sort(np.asarray(jax.random.choice(rng_key, len(w), (n,), replace=False)))
    else:
        pick = np.unique(np.linspace(0, len(w) - 1, n).round().astype(int))
    return w.take(pick)


def _default_graph_batch(n_graphs: int, n_windows: int, d: int) -> int:
    if jax.default_backend() == "cpu":
        return 1
    return max(1, min(n_graphs, 65536 // max(1, n_windows * (d + 1))))


def _shop_index(win: Windows, g: np.ndarray) -> np.ndarray:
    """Index into the graph stack's shop axis for every window (0 for a shared graph)."""
    if g.shape[1] == 1:
        return np.zeros(len(win), dtype=int)
    if len(win) and int(win.shop.max()) >= g.shape[1]:
        raise DataValidationError(
            f"graphs: {g.shape[1]} per-shop graphs, but a window comes from shop {int(win.shop.max())}"
        )
    return np.asarray(win.shop, dtype=int)


# ----------------------------------------------------------------------------------------------- kernel


def _prefix_state(module, x, graph, context):
    """Decoder state after teacher-forcing through ``x[:-1]`` (the part shared by every pulse)."""

    def body(state, x_t):
        state, _ = module.step(state, x_t, graph, context)
        return state, None

    state, _ = jax.lax.scan(body, module.init_state(), x[:-1])
    return state


def _suffix(module, state, x_last, horizon: int, graph, context):
    """Observe ``x_last`` then free-run: ``(horizon, d)``, row 0 = one-step prediction (equals ``rollout``)."""
    state, y0 = module.step(state, x_last, graph, context)
    if horizon == 1:
        return y0[None]

    def body(carry, _):
        s, y = carry
        s, y_next = module.step(s, y, graph, context)
        return (s, y_next), y_next

    _, rest = jax.lax.scan(body, (state, y0), None, length=horizon - 1)
    return jnp.concatenate([y0[None], rest], axis=0)


def _floored_diff(y_pulse, y_base, rtol):
    """``y_pulse - y_base`` with differences at rounding level (``<= rtol * max(|y|)``) set to exactly 0.

    The pulsed and the un-pulsed rollouts run in different vector lanes; XLA may round identical computations in
    different lanes differently by a few ulps, and that noise would break the ties between influences that are
    exactly zero (for example every pair under the empty graph) and bias rank metrics such as nAUPRC.
    """
    diff = y_pulse - y_base
    scale = jnp.maximum(jnp.abs(y_pulse), jnp.abs(y_base))
    return jnp.where(jnp.abs(diff) <= rtol * scale, 0.0, diff)


def _one_window(module, graph, x, context, delta, horizon: int, method: str, engine: str, rtol):
    """Base forecast (H, d) and |response| / delta for every source pulse (d_src, H, d) of one window."""
    d = x.shape[-1]
    eye = jnp.eye(d, dtype=x.dtype)
    if engine == "step":
        state = _prefix_state(module, x, graph, context)

        def run(x_last):
            return _suffix(module, state, x_last, horizon, graph, context)

        if method == "finite":
            pulses = jnp.concatenate([jnp.zeros((1, d), x.dtype), delta * eye], axis=0)
            ys = jax.vmap(lambda p: run(x[-1] + p))(pulses)
            base = ys[0]
            resp = _floored_diff(ys[1:], base[None], rtol) / delta
        else:
            base, lin = jax.linearize(run, x[-1])
            resp = jax.vmap(lin)(eye)
    else:

        def run_full(xx):
            return module.rollout(xx, horizon, graph, context)

        if method == "finite":
            pulses = jnp.concatenate([jnp.zeros((1, d), x.dtype), delta * eye], axis=0)
            ys = jax.vmap(lambda p: run_full(x.at[-1].add(p)))(pulses)
            base = ys[0]
            resp = _floored_diff(ys[1:], base[None], rtol) / delta
        else:

            def tangent(e):
                return jax.jvp(run_full, (x,), (jnp.zeros_like(x).at[-1].set(e),))[1]

            base = run_full(x)
            resp = jax.vmap(tangent)(eye)
    return base, jnp.abs(resp)


@eqx.filter_jit
def _kernel(
    module,
    offsets,
    graphs,
    hist,
    context,
    shop_idx,
    win_shop,
    delta,
    rtol,
    horizon,
    method,
    engine,
    graph_batch_size,
):
    """graphs (n, G, d, d), hist (N, W, d), context (N, c)|None, shop_idx (N,) (graph index), win_shop (N,)|None
    (the window's shop, for per-shop ``offsets``) -> dict of arrays."""

    def per_window(graph_set, x, c, s, ws):
        m = bind_shop(module, offsets, ws)
        return _one_window(m, graph_set[s], x, c, delta, horizon, method, engine, rtol)

    ctx_axis = None if context is None else 0
    ws_axis = None if win_shop is None else 0

    def per_graph(graph_set):
        base, absr = jax.vmap(per_window, in_axes=(None, 0, ctx_axis, 0, ws_axis))(
            graph_set, hist, context, shop_idx, win_shop
        )
        # absr: (N, d_src, H, d_dst)
        return {
            "forecast": base,  # (N, H, d)
            "by_window": jnp.mean(absr, axis=2),  # (N, src, dst)
            "by_horizon": jnp.transpose(jnp.mean(absr, axis=0), (1, 0, 2)),  # (H, src, dst)
        }

    if (
        graph_batch_size <= 1
    ):  # a scan over graphs: each step sees ONE graph, so graph @ x stays a plain matmul
        return jax.lax.map(per_graph, graphs)
    return jax.lax.map(per_graph, graphs, batch_size=graph_batch_size)


# ----------------------------------------------------------------------------------------------- API


@dataclasses.dataclass(frozen=True)
class InfluenceResult:
    """Everything one influence computation produced (draw dimension kept).

    Attributes
    ----------
    scores : ndarray (n_graphs, d, d)
        Influence ``[draw, source, target]``, mean over windows (and over ``h = 1..H`` for AR-CIG).
    by_window : ndarray (n_graphs, N, d, d)
        Same before averaging over windows.
    by_horizon : ndarray (n_graphs, H, d, d)
        Mean over windows of ``|Delta y_j(t0+h)| / delta`` per horizon ``h``.
    forecast : ndarray (n_graphs, N, H, d)
        Un-pulsed free-running forecasts (standardised), for MSE@H against ``windows.future``.
    graphs : ndarray (n_graphs, G, d, d)
        The graph inputs used (``G = 1`` shared, or one per shop).
    windows : Windows
        The evaluation windows.
    """

    scores: np.ndarray
    by_window: np.ndarray
    by_horizon: np.ndarray
    forecast: np.ndarray
    graphs: np.ndarray
    windows: Windows
    horizon: int
    method: str
    delta: float


def influence(
    decoder,
    panel_or_windows,
    graphs,
    *,
    horizon: int = 7,
    delta: float = 1.0,
    method: str = "finite",
    n_windows: int | None = 32,
    rng_key=None,
    split: str = "test",
    history: int | None = None,
    n_samples: int = 200,
    engine: str = "auto",
    graph_batch_size: int | None = None,
    rounding_rtol: float | None = None,
) -> InfluenceResult:
    """Pulse influence of every source on every target under every graph input, in one jitted call.

    Parameters
    ----------
    decoder : TrainedDecoder or equinox decoder module
        See the module docstring. Frozen: nothing is trained here.
    panel_or_windows : Panel, Windows or array (N, W, d)
        Evaluation data (standardised). A Panel gives ``split`` windows of length ``history``.
    graphs : array (d, d), (n, d, d), (n, R, d, d), GraphPosterior-like, "empty" or "full"
        Graph inputs; a posterior gives ``n_samples`` graph samples (needs ``rng_key``).
    horizon : int
        ``H``: 1 for CIG, 7 for AR-CIG.
    delta : float
        Pulse size in standard deviations (``method="finite"``).
    method : {"finite", "jvp"}
        Finite pulse, or the exact ``delta -> 0`` limit by forward-mode differentiation.
    n_windows : int or None
        Number of evaluation windows (random subset with ``rng_key``, evenly spaced without); None = all.
    rng_key : jax random key, optional
        Needed when ``graphs`` is a posterior; also picks the window subset.
    split : {"test", "train", "all"}
        Window split (see :func:`dice_prob.data.windows.forecast_windows`).
    history : int, optional
        Window length; default the decoder's ``config.history``, else 21.
    engine : {"auto", "step", "rollout"}
        ``step`` re-uses the shared teacher-forced prefix (needs ``init_state``/``step``); ``auto`` picks it when
        available.
    graph_batch_size : int, optional
        Graph draws vectorised together inside the one jitted call (``jax.lax.map`` over chunks). Default on CPU:
        1 — a compiled scan over graphs, each step vmapped over sources x windows with ONE graph, so the graph
        product stays a plain matrix product (measured ~3x faster on CPU than vmapping over graphs, where XLA
        falls back to many tiny batched matmuls); on GPU/TPU: up to ~64k rollouts per chunk.
    rounding_rtol : float, optional
        ``method="finite"`` only: differences ``|y(pulse) - y| <= rounding_rtol * max(|y(pulse)|, |y|)`` are set to
        exactly 0 (default 64 float32 ulps, ``64 * eps``), so vector-lane rounding noise cannot break the ties of
        influences that are exactly zero. Pass 0 to disable.

    Returns
    -------
    InfluenceResult

    Examples
    --------
    >>> import numpy as np, jax
    >>> from dice_prob.models.decoder import GraphSafeDecoder
    >>> dec = GraphSafeDecoder(3, hidden_size=4, message_size=2, embed_size=2, key=jax.random.key(0))
    >>> import equinox as eqx   # untrained readouts start at 0 (no influence yet): perturb the weights
    >>> dec = jax.tree_util.tree_map(lambda a: a + 0.3 if eqx.is_inexact_array(a) else a, dec)
    >>> x = np.random.default_rng(0).normal(size=(4, 6, 3))
    >>> A = np.array([[0, 1, 0], [0, 0, 1], [0, 0, 0]])
    >>> res = influence(dec, x, np.stack([A, 0 * A]), horizon=3)
    >>> res.scores.shape, res.by_horizon.shape, float(res.scores[1, 0, 1])   # empty graph: no influence at all
    ((2, 3, 3), (2, 3, 3, 3), 0.0)
    """
    if method not in ("finite", "jvp"):
        raise ConfigError(f"method: expected 'finite' or 'jvp', got {method!r}")
    if engine not in ("auto", "step", "rollout"):
        raise ConfigError(f"engine: expected 'auto', 'step' or 'rollout', got {engine!r}")
    horizon = int(horizon)
    if horizon < 1:
        raise ConfigError(f"horizon: must be >= 1, got {horizon}")
    if not (np.isfinite(delta) and delta > 0):
        raise ConfigError(f"delta: must be a positive number of standard deviations, got {delta}")
    if n_windows is not None and int(n_windows) < 1:
        raise ConfigError(f"n_windows: must be >= 1 or None, got {n_windows}")
    res = resolve_decoder(decoder)
    if engine == "step" and not res.has_step:
        raise ConfigError("engine: 'step' needs a decoder with init_state() and step(); use engine='rollout'")
    eng = "step" if (engine == "auto" and res.has_step) else ("rollout" if engine == "auto" else engine)
    hist_len = int(history) if history is not None else (res.history or _DEFAULT_HISTORY)
    k_graph = k_win = None
    if rng_key is not None:
        k_graph, k_win = jax.random.split(rng_key)
    win, n_shops = eval_windows(
        panel_or_windows, history=hist_len, horizon=horizon, n_windows=n_windows, rng_key=k_win, split=split
    )
    d = win.history.shape[-1]
    support = panel_or_windows.support_mask() if hasattr(panel_or_windows, "support_mask") else None
    g = as_graph_stack(graphs, d, rng_key=k_graph, n_samples=n_samples, n_shops=n_shops, support=support)
    n_graphs = g.shape[0]
    shop_idx = _shop_index(win, g)
    win_shop = _window_shops(res, panel_or_windows, win)
    context = win.context if res.wants_context in (True, None) else None
    g_eval = g[:1] if not res.uses_graph else g
    n_win = len(win)
    if graph_batch_size is None:
        graph_batch_size = _default_graph_batch(g_eval.shape[0], n_win, d)
    dtype = jnp.float32 if not jax.config.jax_enable_x64 else jnp.float64
    if rounding_rtol is None:
        rounding_rtol = 64 * float(jnp.finfo(jnp.float32).eps)
    out = _kernel(
        res.module,
        res.offsets,
        jnp.asarray(g_eval, dtype),
        jnp.asarray(win.history, dtype),
        None if context is None else jnp.asarray(context, dtype),
        jnp.asarray(shop_idx, jnp.int32),
        win_shop,
        jnp.asarray(delta, dtype),
        jnp.asarray(rounding_rtol, dtype),
        horizon,
        method,
        eng,
        int(graph_batch_size),
    )
    out = {k: np.asarray(v, dtype=np.float64) for k, v in out.items()}
    if not res.uses_graph:
        out = {k: np.repeat(v, n_graphs, axis=0) for k, v in out.items()}
    scores = out["by_window"].mean(axis=1)
    return InfluenceResult(
        scores=scores,
        by_window=out["by_window"],
        by_horizon=out["by_horizon"],
        forecast=out["forecast"],
        graphs=g,
        windows=win,
        horizon=horizon,
        method=method,
        delta=float(delta),
    )


def cig(
    decoder,
    panel_or_windows,
    graphs,
    *,
    delta: float = 1.0,
    method: str = "finite",
    n_windows: int | None = 32,
    rng_key=None,
    split: str = "test",
    **kwargs,
) -> np.ndarray:
    """Counterfactual influence graph (one-step): ``(n_graphs, d, d)`` indexed ``[draw, source, target]``.

    ``|y_j(t0+1 | x_i(t0) + delta) - y_j(t0+1)| / delta`` averaged over evaluation windows; see
    :func:`influence` for the arguments (``history``, ``n_samples``, ``engine``, ``graph_batch_size``).

    Examples
    --------
    >>> import numpy as np, jax
    >>> from dice_prob.models.decoder import GraphSafeDecoder
    >>> dec = GraphSafeDecoder(3, hidden_size=4, message_size=2, embed_size=2, key=jax.random.key(0))
    >>> import equinox as eqx   # untrained readouts start at 0 (no influence yet): perturb the weights
    >>> dec = jax.tree_util.tree_map(lambda a: a + 0.3 if eqx.is_inexact_array(a) else a, dec)
    >>> A = np.array([[0, 1, 0], [0, 0, 1], [0, 0, 0]])
    >>> c = cig(dec, np.random.default_rng(0).normal(size=(4, 6, 3)), A)
    >>> c.shape, float(c[0, 0, 2])    # 0 -> 2 is not an edge: exactly no one-step influence
    ((1, 3, 3), 0.0)
    """
    return influence(
        decoder,
        panel_or_windows,
        graphs,
        horizon=1,
        delta=delta,
        method=method,
        n_windows=n_windows,
        rng_key=rng_key,
        split=split,
        **kwargs,
    ).scores


def ar_cig(
    decoder,
    panel_or_windows,
    graphs,
    *,
    horizon: int = 7,
    delta: float = 1.0,
    method: str = "finite",
    n_windows: int | None = 32,
    rng_key=None,
    split: str = "test",
    per_horizon: bool = False,
    **kwargs,
) -> np.ndarray:
    """Autoregressive CIG: ``(n_graphs, d, d)`` (or ``(n_graphs, H, d, d)`` with ``per_horizon``).

    After the pulse on ``x_i(t0)`` the decoder free-runs ``horizon`` steps on its own predictions; the score is
    ``mean_{h=1..H} |Delta y_j(t0+h)| / delta``, averaged over windows. For a graph-safe decoder it is exactly 0
    unless ``i`` reaches ``j`` within ``H`` hops of the graph input. Arguments as in :func:`influence`.

    Examples
    --------
    >>> import numpy as np, jax
    >>> from dice_prob.models.decoder import GraphSafeDecoder
    >>> dec = GraphSafeDecoder(3, hidden_size=4, message_size=2, embed_size=2, key=jax.random.key(0))
    >>> import equinox as eqx   # untrained readouts start at 0 (no influence yet): perturb the weights
    >>> dec = jax.tree_util.tree_map(lambda a: a + 0.3 if eqx.is_inexact_array(a) else a, dec)
    >>> A = np.array([[0, 1, 0], [0, 0, 1], [0, 0, 0]])
    >>> a = ar_cig(dec, np.random.default_rng(0).normal(size=(4, 6, 3)), np.stack([A, 0 * A]), horizon=3)
    >>> a.shape, bool(a[0, 0, 2] > 0), float(a[1, 0, 2])   # 0 reaches 2 in 2 hops; not under the empty graph
    ((2, 3, 3), True, 0.0)
    """
    res = influence(
        decoder,
        panel_or_windows,
        graphs,
        horizon=horizon,
        delta=delta,
        method=method,
        n_windows=n_windows,
        rng_key=rng_key,
        split=split,
        **kwargs,
    )
    return res.by_horizon if per_horizon else res.scores


def forecast_draws(
    decoder,
    panel_or_windows,
    graphs,
    *,
    horizon: int = 7,
    n_windows: int | None = 32,
    rng_key=None,
    split: str = "test",
    history: int | None = None,
    n_samples: int = 200,
) -> tuple[np.ndarray, Windows]:
    """Free-running forecasts under every graph input: ``(n_graphs, N, H, d)`` (standardised) and the windows.

    One jitted call vmapped over graphs and windows (no pulses).

    Examples
    --------
    >>> import numpy as np, jax
    >>> from dice_prob.models.decoder import GraphSafeDecoder
    >>> dec = GraphSafeDecoder(3, hidden_size=4, message_size=2, embed_size=2, key=jax.random.key(0))
    >>> import equinox as eqx   # untrained readouts start at 0 (no influence yet): perturb the weights
    >>> dec = jax.tree_util.tree_map(lambda a: a + 0.3 if eqx.is_inexact_array(a) else a, dec)
    >>> f, w = forecast_draws(dec, np.zeros((2, 6, 3)), np.zeros((5, 3, 3)), horizon=4)
    >>> f.shape
    (5, 2, 4, 3)
    """
    res = resolve_decoder(decoder)
    hist_len = int(history) if history is not None else (res.history or _DEFAULT_HISTORY)
    k_graph = k_win = None
    if rng_key is not None:
        k_graph, k_win = jax.random.split(rng_key)
    win, n_shops = eval_windows(
        panel_or_windows, history=hist_len, horizon=horizon, n_windows=n_windows, rng_key=k_win, split=split
    )
    d = win.history.shape[-1]
    support = panel_or_windows.support_mask() if hasattr(panel_or_windows, "support_mask") else None
    g = as_graph_stack(graphs, d, rng_key=k_graph, n_samples=n_samples, n_shops=n_shops, support=support)
    shop_idx = _shop_index(win, g)
    win_shop = _window_shops(res, panel_or_windows, win)
    context = win.context if res.wants_context in (True, None) else None
    dtype = jnp.float32 if not jax.config.jax_enable_x64 else jnp.float64
    out = _forecast_kernel(
        res.module,
        res.offsets,
        jnp.asarray(g, dtype),
        jnp.asarray(win.history, dtype),
        None if context is None else jnp.asarray(context, dtype),
        jnp.asarray(shop_idx, jnp.int32),
        win_shop,
        int(horizon),
    )
    return np.asarray(out, dtype=np.float64), win


@eqx.filter_jit
def _forecast_kernel(module, offsets, graphs, hist, context, shop_idx, win_shop, horizon):
    ctx_axis = None if context is None else 0
    ws_axis = None if win_shop is None else 0

    def per_window(graph_set, x, c, s, ws):
        return bind_shop(module, offsets, ws).rollout(x, horizon, graph_set[s], c)

    def per_graph(graph_set):
        return jax.vmap(per_window, in_axes=(None, 0, ctx_axis, 0, ws_axis))(
            graph_set, hist, context, shop_idx, win_shop
        )

    return jax.vmap(per_graph)(graphs)
