"""Frozen, validated configuration dataclasses.

Each config validates itself in ``__post_init__`` (raising :class:`dice_prob.errors.ConfigError` that names the
field), round-trips through ``to_dict``/``from_dict`` (unknown keys are an error, not silently dropped) and is
stored in result attributes so every saved result says how it was made.
"""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any, ClassVar

from dice_prob.errors import ConfigError


class _ConfigBase:
    """Shared ``to_dict``/``from_dict``/JSON helpers for the frozen config dataclasses."""

    _nested: ClassVar[dict[str, type]] = {}

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            v = getattr(self, f.name)
            if isinstance(v, _ConfigBase):
                v = v.to_dict()
            elif isinstance(v, tuple):
                v = list(v)
            out[f.name] = v
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]):
        if not isinstance(data, dict):
            raise ConfigError(f"{cls.__name__}: expected a mapping, got {type(data).__name__}")
        names = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(data) - set(names))
        if unknown:
            raise ConfigError(f"{cls.__name__}: unknown key(s) {unknown}; valid keys are {sorted(names)}")
        kwargs = {}
        for k, v in data.items():
            sub = cls._nested.get(k)
            if sub is not None and isinstance(v, dict):
                v = sub.from_dict(v)
            elif isinstance(v, list):
                v = tuple(tuple(x) if isinstance(x, list) else x for x in v)
            kwargs[k] = v
        try:
            return cls(**kwargs)
        except TypeError as exc:  # a wrong type deep inside __post_init__ comparisons
            raise ConfigError(f"{cls.__name__}: {exc}") from exc

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{cls.__name__}: invalid JSON ({exc})") from exc
        return cls.from_dict(data)

    def replace(self, **changes):
        """A copy with ``changes`` applied (validated again)."""
        return dataclasses.replace(self, **changes)  # type: ignore[type-var]


def _require(cond: bool, cls: str, field: str, msg: str) -> None:
    if not cond:
        raise ConfigError(f"{cls}.{field}: {msg}")


def _int(value, cls: str, field: str, lo: int, hi: int | None = None) -> None:
    ok = (
        isinstance(value, int) and not isinstance(value, bool) and value >= lo and (hi is None or value <= hi)
    )
    rng = f">= {lo}" if hi is None else f"in [{lo}, {hi}]"
    _require(ok, cls, field, f"must be an integer {rng}, got {value!r}")


def _pos(value, cls: str, field: str, *, allow_zero: bool = False) -> None:
    ok = (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and (value >= 0 if allow_zero else value > 0)
    )
    _require(
        ok, cls, field, f"must be a {'non-negative' if allow_zero else 'positive'} number, got {value!r}"
    )


def _choice(value, cls: str, field: str, choices) -> None:
    _require(value in choices, cls, field, f"must be one of {list(choices)}, got {value!r}")


@dataclasses.dataclass(frozen=True)
class Stage1Config(_ConfigBase):
    """Stage 1: spike-and-slab posterior over the lagged graph support (NumPyro NUTS).

    Scales refer to the standardised data. ``learn_slab`` (default): the slab sd ``s`` is learned per graph,
    ``s ~ LogNormal(log slab_scale, slab_scale_sd)``, and the spike sd keeps the ratio ``spike_scale /
    slab_scale`` to it (George & McCulloch's ``(tau, c tau)`` with ``tau`` learned). A fixed wide slab charges
    every edge's L lags a large Occam penalty and a fixed spike can absorb small real effects, so weak but real
    edges lost to the spike; ``False`` fixes both at ``slab_scale`` / ``spike_scale``. With the collapsed edge
    sampler the slab sd is moved by Metropolis steps on the likelihood with the coefficients integrated out
    (given the coefficients, the spike blocks pin it and it would barely mix); otherwise NUTS moves it.

    ``graph_sharing``: ``shop`` (one graph per shop, vmapped independent posteriors), ``shared`` (one graph, likelihood pooled over shops) or ``group`` (one graph per
    group in ``groups``).

    ``support``: ``roles`` (candidate edges from the node roles, ``Panel.support_mask()``) or ``all`` (every
    off-diagonal pair). ``time_window``: fit on the panel's first ``train_steps`` steps (``train``, default: the
    graph never sees the held-out forecast period) or on all steps (``all``). ``noise_sd``: fix the residual sd (standardised units) instead of learning it (used to
    compare against the exact reference sampler). ``rhat_threshold`` / ``min_ess_per_chain``: a fit whose max
    split r_hat exceeds the threshold, whose min bulk ESS is below ``min_ess_per_chain * num_chains``, or that
    has divergences, raises a ``ConvergenceWarning``. ``edge_gibbs``: after every NUTS transition, update each
    edge's coefficient block from its exact full conditional (a two-component Gaussian mixture), which moves
    edges between spike and slab; ``False`` leaves NUTS alone on the marginalised mixture density.
    ``nuts_edges``: whether NUTS also moves the edge coefficients (``W``/``beta``). ``None`` (default) means
    ``not edge_gibbs``: with the exact Gibbs sweep on, the edge coefficients, and then the conjugate intercepts
    and own lags, are drawn from their exact conditionals and NUTS moves the rest (noise, pi; in mmm mode also
    the carryover and Hill parameters) given them (HMC-within-Gibbs, as ``numpyro.infer.HMCGibbs``). That keeps
    NUTS off the spike/slab scale switches of the edge coefficients, which no single mass matrix fits and which
    made rare trajectories 4-8x longer (vmapped lanes wait for the longest one). ``True`` restores NUTS over
    every site, followed by the edge Gibbs sweep. ``edge_sampler``: ``collapsed`` (default) draws each edge
    indicator with every coefficient of its target node integrated out (edge blocks, intercepts and own lags),
    then all of a node's coefficients jointly: chains move between interchangeable explanations (co-moving
    channels, a parent's lags against the own lag) that the ``single`` edge-by-edge sweep cannot leave. With
    ``nuts_edges=True`` the ``single`` sweep runs (NUTS then owns the intercepts and own lags).

    ``channel_transform`` (``linear`` mode): ``none`` z-scores every node as it is; ``log1p`` first maps each
    channel's spend ``x`` to ``log(1 + x / m)`` with ``m`` the shop's median positive spend of that channel over the
    fitted steps — the usual log-spend scale of marketing mix models: it makes skewed, bursty spends closer to
    Gaussian and gives every channel a concave (saturating) response with no extra parameters to sample, which
    the free lag weights then shape into any carryover. It needs non-negative channel values. In ``mmm`` mode the
    channels are saturated by the model's own Hill curve instead, so only ``none`` is allowed there.

    ``lag_decay`` (``linear`` mode; the Minnesota prior of Bayesian VARs, Litterman 1986): the slab and spike sd of
    an edge's lag-``l`` weight are ``slab * l**-lag_decay`` and ``spike * l**-lag_decay``, so distant lags are
    shrunk harder than recent ones and an edge's seven lags no longer pay seven full-width Occam penalties; ``0``
    gives every lag the same prior (the default: lag weights need not decay, as in CausalMMM's released data;
    on those, ``1`` cost up to 0.05 AUROC at T = 60). Use ``1`` for spend data with carryover, with
    ``channel_transform="log1p"`` (funnel mmm data: AUROC 0.918 -> 0.940). Implemented by scaling lag ``l`` of every source by ``l**-lag_decay`` (an
    exact reparameterisation); the reported ``W`` samples are on the data's scale. Ignored in ``mmm`` mode, whose
    carryover kernel already ties the lags together.

    ``node_scale``: the units the spike and slab sds refer to. ``zscore``: every node's z-score.
    ``ar_residual``: each z-scored node is further divided by the residual sd of its own univariate AR(n_lags)
    least-squares fit (pooled over the shops of a graph), so a weight's prior is relative to the innovation sd of
    the node it drives and of the node it comes from: the Minnesota prior's cross-variable scaling
    ``sd(k -> j) ~ s_j / s_k`` (Litterman 1986). Without it a node that its own lags predict well (a strong-AR
    target, z-score innovation sd ~0.05) has real effects of ~0.005 per lag, inside a 0.01 spike. The reported
    ``W`` / ``beta`` samples are on the z-scored data's scale. In ``mmm`` mode a channel source enters as its
    z-scored Hill curve of ``x / max``, not in innovation units, so a channel's ``beta`` prior scales with the
    receiving node's sd only.

    ``carryover_sharing`` (``mmm`` mode): ``edge`` (default, DESIGN.md's ``kappa(l; theta_ij)``) gives every
    candidate edge its own carryover ``(retention, delay)``; ``source`` gives each source node one kernel for all
    of its out-edges, the usual marketing-mix convention (PyMC-Marketing, LightweightMMM: adstock is a property
    of the channel's spend, like the per-source Hill curve here). With per-edge kernels an edge in the spike
    leaves its kernel unidentified, so it drifts under the prior and the edge's return to the slab is judged
    with a random kernel; a shared kernel stays pinned by the source's other edges. Not the default: on the mmm
    funnel (10 shops, seed 0) it gives PIP AUROC 0.955 against 0.957 per edge and mixes worse (r_hat 1.14
    against 1.08, 11 divergences against 1); ``benchmarks/results/stage1_recovery_mmm_source_kernel.md``.

    ``slab_grid`` (opt-in): the slab becomes an equal-weight scale mixture over ``slab * m`` for ``m`` in
    ``slab_grid`` (default ``(1.0,)``, the plain slab). With one slab sd per graph the strong edges set it, and a
    weak but real edge beside them pays the Occam penalty of a slab far wider than its effect on every lag; a
    grid lets each edge take the scale that fits it (a discretised log-uniform scale prior). It is not the
    default because narrow components drift towards the spike: with ``(1/32, ..., 1)`` and a spike of 1/250 of
    the slab, sparse_target's weak target parents were found in 9 of 10 shops (6 with the plain slab), but
    absent edges on short series took PIPs near ``pi`` and the 50-shop PIP calibration error rose from 0.014 to
    0.20. Keep the narrowest component well above the spike and check calibration before relying on it. The
    collapsed sampler draws each edge's state among spike and slab components; the single-edge sweep
    (``edge_sampler="single"`` or ``nuts_edges=True``) supports only the plain slab.
    ``flip_moves`` (opt-in, default 0): that many joint Metropolis proposals per node and iteration, before the
    collapsed sweep, each flipping one or two of the node's indicators *together with* its residual sd, judged
    with every coefficient integrated out (``dice_prob.models.stage1_moves``). The sweep moves one indicator at a
    fixed residual sd; when two co-moving parents are both in or both out and each state has its own residual
    sd, neither single flip is acceptable and the chains keep the state they started in (r_hat in the 1e8s on
    the default recovery cell, ``benchmarks/results/stage1_chain_modes.md``). Needs the collapsed sampler and
    the plain slab. Their acceptance is reported in ``post.convergence`` (``flip_accept_rate`` over all nodes and
    draws, ``flip_accept_min_node`` for the least mobile node). Not yet the default: the published Stage 1
    benchmarks were run without it.

    Examples
    --------
    >>> import dice_prob as dp
    >>> cfg = dp.Stage1Config(n_lags=3, num_warmup=200, num_samples=200, num_chains=2)
    >>> cfg.mode, cfg.graph_sharing, cfg.n_lags
    ('linear', 'shop', 3)
    >>> cfg.replace(num_chains=4).num_chains
    4
    >>> dp.Stage1Config(n_lags=0)
    Traceback (most recent call last):
        ...
    dice_prob.errors.ConfigError: Stage1Config.n_lags: must be an integer in [1, 60], got 0
    """

    mode: str = "linear"
    n_lags: int = 7
    graph_sharing: str = "shop"
    groups: tuple[int, ...] | None = None
    pi_alpha: float = 1.0
    pi_beta: float = 1.0
    slab_scale: float = 0.5
    learn_slab: bool = True
    slab_scale_sd: float = 1.0
    spike_scale: float = 0.01
    noise_scale: float = 1.0
    hill: bool = True
    hierarchical_pi: bool = False
    num_warmup: int = 500
    num_samples: int = 500
    num_chains: int = 2
    target_accept_prob: float = 0.8
    max_tree_depth: int = 8
    progress_bar: bool = True
    support: str = "roles"
    time_window: str = "train"
    edge_gibbs: bool = True
    nuts_edges: bool | None = None
    edge_sampler: str = "collapsed"
    noise_sd: float | None = None
    rhat_threshold: float = 1.01
    min_ess_per_chain: float = 100.0

    channel_transform: str = "none"
    lag_decay: float = 0.0
    node_scale: str = "zscore"
    slab_grid: tuple[float, ...] = (1.0,)
    carryover_sharing: str = "edge"
    flip_moves: int = 0

    def supports_flip_moves(self) -> bool:
        """Whether ``flip_moves > 0`` is allowed: the joint flips need the collapsed edge sampler (``edge_gibbs``,
        ``edge_sampler='collapsed'``, ``nuts_edges`` not True) and the plain slab (``slab_grid=(1.0,)``)."""
        return bool(
            self.edge_gibbs
            and self.edge_sampler == "collapsed"
            and self.nuts_edges is not True
            and tuple(self.slab_grid) == (1.0,)
        )

    def __post_init__(self) -> None:
        c = "Stage1Config"
        _choice(self.support, c, "support", ("roles", "all"))
        _choice(self.time_window, c, "time_window", ("train", "all"))
        if self.noise_sd is not None:
            _pos(self.noise_sd, c, "noise_sd")
        _require(
            isinstance(self.rhat_threshold, (int, float)) and self.rhat_threshold > 1.0,
            c,
            "rhat_threshold",
            f"must be a number > 1, got {self.rhat_threshold!r}",
        )
        _pos(self.min_ess_per_chain, c, "min_ess_per_chain", allow_zero=True)
        _choice(self.mode, c, "mode", ("linear", "mmm"))
        _choice(self.channel_transform, c, "channel_transform", ("none", "log1p"))
        _pos(self.lag_decay, c, "lag_decay", allow_zero=True)
        _choice(self.node_scale, c, "node_scale", ("zscore", "ar_residual"))
        _choice(self.carryover_sharing, c, "carryover_sharing", ("edge", "source"))
        if isinstance(self.slab_grid, list):
            object.__setattr__(self, "slab_grid", tuple(self.slab_grid))
        _require(
            isinstance(self.slab_grid, tuple)
            and len(self.slab_grid) >= 1
            and all(
                isinstance(m, (int, float)) and not isinstance(m, bool) and math.isfinite(m) and m > 0
                for m in self.slab_grid
            ),
            c,
            "slab_grid",
            f"must be a non-empty tuple of positive numbers, got {self.slab_grid!r}",
        )
        _require(
            tuple(self.slab_grid) == (1.0,)
            or not self.edge_gibbs
            or (self.edge_sampler == "collapsed" and self.nuts_edges is not True),
            c,
            "slab_grid",
            "a scale-mixture slab needs edge_sampler='collapsed' and nuts_edges off; use slab_grid=(1.0,) with "
            "the single-edge sweep",
        )
        _require(
            self.mode == "linear" or self.channel_transform == "none",
            c,
            "channel_transform",
            "must be 'none' in mode='mmm' (the Hill curve saturates the channels there); use mode='linear' "
            "with channel_transform='log1p'",
        )
        _int(self.n_lags, c, "n_lags", 1, 60)
        _choice(self.graph_sharing, c, "graph_sharing", ("shop", "shared", "group"))
        if self.graph_sharing == "group":
            _require(
                self.groups is not None and len(self.groups) > 0,
                c,
                "groups",
                "is required when graph_sharing='group' (one group index per shop)",
            )
        _require(
            isinstance(self.learn_slab, bool),
            c,
            "learn_slab",
            f"must be True or False, got {self.learn_slab!r}",
        )
        for f in ("pi_alpha", "pi_beta", "slab_scale", "slab_scale_sd", "spike_scale", "noise_scale"):
            _pos(getattr(self, f), c, f)
        _require(self.spike_scale < self.slab_scale, c, "spike_scale", "must be smaller than slab_scale")
        _int(self.num_warmup, c, "num_warmup", 1)
        _int(self.num_samples, c, "num_samples", 1)
        _int(self.num_chains, c, "num_chains", 1, 64)
        _require(0.0 < self.target_accept_prob < 1.0, c, "target_accept_prob", "must be in (0, 1)")
        _int(self.max_tree_depth, c, "max_tree_depth", 1, 15)
        _require(
            isinstance(self.edge_gibbs, bool),
            c,
            "edge_gibbs",
            f"must be True or False, got {self.edge_gibbs!r}",
        )
        _require(
            self.nuts_edges is None or isinstance(self.nuts_edges, bool),
            c,
            "nuts_edges",
            f"must be None, True or False, got {self.nuts_edges!r}",
        )
        _choice(self.edge_sampler, c, "edge_sampler", ("collapsed", "single"))
        _int(self.flip_moves, c, "flip_moves", 0, 1000)
        _require(
            self.flip_moves == 0 or self.supports_flip_moves(),
            c,
            "flip_moves",
            "needs the collapsed edge sampler (edge_gibbs=True, edge_sampler='collapsed', nuts_edges not True) "
            "and the plain slab (slab_grid=(1.0,)); set flip_moves=0 otherwise",
        )
        _require(
            self.edge_gibbs or self.nuts_edges is not False,
            c,
            "nuts_edges",
            "False needs edge_gibbs=True (something must move the edge coefficients); use None or True",
        )


@dataclasses.dataclass(frozen=True)
class DecoderConfig(_ConfigBase):
    """Stage 2: the graph-safe latent decoder and its optax training loop.

    ``architecture``: ``graph_safe`` (:class:`~dice_prob.models.decoder.GraphSafeDecoder`), ``dense``
    (:class:`~dice_prob.models.bypass.DenseDecoder`, width ``dense_hidden_size``) or ``ar_only``
    (:class:`~dice_prob.models.bypass.ARTargetDecoder`). ``graph_mode`` applies when the training graph is a
    Stage-1 posterior: ``posterior`` draws a fresh Bernoulli graph per training window from the posterior's
    ``draw_probs``; ``hard`` trains on its median-probability graph (PIP > 0.5). ``ar_lags``: length of each node's
    own-lag buffer (AR skip). ``history``/``horizon``: window lengths; the loss is the teacher-forced one-step MSE
    over the history plus ``rollout_weight`` times the free-running MSE over the horizon. ``val_fraction`` of
    the latest training origins is held out for early stopping (``patience`` epochs). The learning rate warms up
    linearly over ``warmup_fraction`` of the steps, then decays with a cosine. ``full_graph``: what
    ``graph="full"`` means — ``support`` (every pair the node roles allow, ``panel.support_mask()``) or
    ``offdiag`` (every off-diagonal pair). ``ar_init``: warm-start the decoder's linear part by least squares on
    the training windows (the network then learns the residual dynamics, and early stopping keeps the warm start
    unless training beats it on validation): each node's own-lag skip and, with ``var_init``, its lagged
    cross-node path, i.e. a VAR(``ar_lags``) restricted to the training graph's parents for the graph-safe decoder
    (for a posterior, the expected loss over its Bernoulli graph draws is minimised) or over all other nodes for
    the dense baseline. ``var_init=False`` warm-starts the own lags only and starts the cross-node path at zero.
    ``ls_ridge``: the ridge penalty of that fit (relative: times the number of regression rows, on every slope);
    ``"auto"`` picks it per node from a log grid (1e-4 .. 10) by blocked 5-fold cross-validation over time of the
    one-step error on the training windows; ``"rollout"`` then raises every node's penalty to a common floor (0 or
    a grid value) chosen by the same blocked cross-validation of the free-running forecast over ``horizon`` (of the
    target with ``select_on="target"``; opt-in: over 8 seeds its effect on the test MSE@7 was within noise,
    ``benchmarks/warm_start_ablation.py``; without effect when ``history < ar_lags``); a number fixes it.
    ``ls_refit``: when no trained checkpoint beats the warm start on validation (the decoder is then that linear
    fit), refit it on all training windows, the validation windows included (opt-in: over 8 seeds its effect on
    the test MSE@7 was within noise, ``benchmarks/warm_start_ablation.py``).
    ``loss_weighting``: ``ar_residual`` weights each node's squared error by the inverse of that AR fit's
    one-step residual variance (floored at 0.01, normalised to mean 1) — a per-node Gaussian likelihood, so
    predictable nodes are not drowned by noisy ones; ``none`` weights all nodes equally.
    ``select_on``: what early stopping minimises on the validation windows — ``target`` (default: the target's
    free-running MSE over the horizon, the MSE@h the decoder is judged on; with the all-node loss, gains on the
    other nodes could buy a worse target forecast) or ``loss`` (the training loss above).
    ``select_se``: a trained checkpoint replaces the least-squares warm start only when its paired validation
    gain over it exceeds ``select_se`` cluster-robust standard errors (clusters: shop x block of ``horizon``
    origins) — the one-standard-error rule, so a gain the small validation split cannot tell from noise keeps
    the simpler model; ``0`` accepts any improvement. Patience counts epochs without any improvement.
    ``shop_linear``: give every shop its own offsets of the linear part (intercept, own lags and the lagged
    cross-node kernel, still gated by the graph; :mod:`dice_prob.models.shop_linear`), warm-started by a per-shop
    least-squares fit shrunk towards the pooled one, its penalty (or no offsets at all) chosen per node by blocked
    cross-validation, then trained with the rest (weight decay pulls the offsets towards the pooled fit). For
    shops whose effects differ in size or sign, which one shared kernel averages away. Opt-in; the forecasts of
    a new shop (no offsets) are the pooled decoder's.

    Examples
    --------
    >>> import dice_prob as dp
    >>> cfg = dp.DecoderConfig(hidden_size=8, history=14, horizon=7, max_epochs=50)
    >>> cfg.architecture, cfg.graph_mode, cfg.history + cfg.horizon
    ('graph_safe', 'posterior', 21)
    >>> dp.DecoderConfig(architecture="rnn")
    Traceback (most recent call last):
        ...
    dice_prob.errors.ConfigError: DecoderConfig.architecture: must be one of ['graph_safe', 'dense', 'ar_only'], got 'rnn'
    """

    architecture: str = "graph_safe"
    graph_mode: str = "posterior"
    hidden_size: int = 32
    message_size: int = 16
    embed_size: int = 8
    hill_head: bool = False
    history: int = 21
    horizon: int = 7
    batch_size: int = 64
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    grad_clip: float = 1.0
    max_epochs: int = 200
    patience: int = 20
    val_fraction: float = 0.2
    rollout_weight: float = 1.0
    progress_bar: bool = True
    ar_lags: int = 7
    dense_hidden_size: int = 64
    warmup_fraction: float = 0.05
    full_graph: str = "support"
    ar_init: bool = True
    var_init: bool = True
    loss_weighting: str = "ar_residual"
    ls_ridge: float | str = "auto"
    ls_refit: bool = False
    select_on: str = "target"
    select_se: float = 1.0
    shop_linear: bool = False

    def __post_init__(self) -> None:
        c = "DecoderConfig"
        _choice(self.select_on, c, "select_on", ("loss", "target"))
        _pos(self.select_se, c, "select_se", allow_zero=True)
        if isinstance(self.ls_ridge, str):
            _choice(self.ls_ridge, c, "ls_ridge", ("auto", "rollout"))
        else:
            _pos(self.ls_ridge, c, "ls_ridge", allow_zero=True)
        _require(isinstance(self.ls_refit, bool), c, "ls_refit", "must be True or False")
        _require(isinstance(self.shop_linear, bool), c, "shop_linear", "must be True or False")
        _choice(self.loss_weighting, c, "loss_weighting", ("ar_residual", "none"))
        _int(self.ar_lags, c, "ar_lags", 1, 366)
        _int(self.dense_hidden_size, c, "dense_hidden_size", 1)
        _require(0.0 <= self.warmup_fraction < 1.0, c, "warmup_fraction", "must be in [0, 1)")
        _choice(self.full_graph, c, "full_graph", ("support", "offdiag"))
        _choice(self.architecture, c, "architecture", ("graph_safe", "dense", "ar_only"))
        _choice(self.graph_mode, c, "graph_mode", ("posterior", "hard"))
        for f in (
            "hidden_size",
            "message_size",
            "embed_size",
            "history",
            "horizon",
            "batch_size",
            "max_epochs",
            "patience",
        ):
            _int(getattr(self, f), c, f, 1)
        for f in ("learning_rate", "grad_clip"):
            _pos(getattr(self, f), c, f)
        for f in ("weight_decay", "rollout_weight"):
            _pos(getattr(self, f), c, f, allow_zero=True)
        _require(0.0 < self.val_fraction < 0.9, c, "val_fraction", "must be in (0, 0.9)")


@dataclasses.dataclass(frozen=True)
class DiagnosticsConfig(_ConfigBase):
    """CIG / AR-CIG / graph-swap settings.

    Examples
    --------
    >>> import dice_prob as dp
    >>> cfg = dp.DiagnosticsConfig(horizon=14, n_windows=8)
    >>> cfg.method, cfg.hdi_prob
    ('finite', 0.94)
    >>> dp.DiagnosticsConfig.from_json(cfg.to_json()) == cfg
    True
    >>> dp.DiagnosticsConfig(hdi_prob=1.5)
    Traceback (most recent call last):
        ...
    dice_prob.errors.ConfigError: DiagnosticsConfig.hdi_prob: must be in (0, 1)
    """

    horizon: int = 7
    delta: float = 1.0
    method: str = "finite"
    n_windows: int = 32
    n_graph_samples: int = 200
    hdi_prob: float = 0.94

    def __post_init__(self) -> None:
        c = "DiagnosticsConfig"
        _int(self.horizon, c, "horizon", 1)
        _pos(self.delta, c, "delta")
        _choice(self.method, c, "method", ("finite", "jvp"))
        _int(self.n_windows, c, "n_windows", 1)
        _int(self.n_graph_samples, c, "n_graph_samples", 1)
        _require(0.0 < self.hdi_prob < 1.0, c, "hdi_prob", "must be in (0, 1)")


@dataclasses.dataclass(frozen=True)
class PipelineConfig(_ConfigBase):
    """Data -> Stage 1 -> Stage 2 -> diagnostics -> report.

    Examples
    --------
    >>> import dice_prob as dp
    >>> cfg = dp.PipelineConfig(stage1=dp.Stage1Config(num_samples=50), comparison_decoders=("oracle",))
    >>> d = cfg.to_dict()
    >>> d["stage1"]["num_samples"], d["comparison_decoders"]
    (50, ['oracle'])
    >>> dp.PipelineConfig.from_dict(d) == cfg
    True

    Validation names the offending field, and unknown keys are an error:

    >>> dp.PipelineConfig(comparison_decoders=("rnn",))
    Traceback (most recent call last):
        ...
    dice_prob.errors.ConfigError: PipelineConfig.comparison_decoders: must be one of ['oracle', 'empty', 'full', 'hard', 'dense', 'ar_only'], got 'rnn'
    >>> dp.PipelineConfig.from_dict({"stage_1": {}})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
        ...
    dice_prob.errors.ConfigError: PipelineConfig: unknown key(s) ['stage_1']; valid keys are [...]
    """

    _nested: ClassVar[dict[str, type]] = {}

    stage1: Stage1Config = dataclasses.field(default_factory=Stage1Config)
    decoder: DecoderConfig = dataclasses.field(default_factory=DecoderConfig)
    diagnostics: DiagnosticsConfig = dataclasses.field(default_factory=DiagnosticsConfig)
    comparison_decoders: tuple[str, ...] = ("oracle", "empty", "full")
    n_decoder_seeds: int = 1

    def __post_init__(self) -> None:
        c = "PipelineConfig"
        for f, t in (
            ("stage1", Stage1Config),
            ("decoder", DecoderConfig),
            ("diagnostics", DiagnosticsConfig),
        ):
            _require(isinstance(getattr(self, f), t), c, f, f"must be a {t.__name__}")
        for v in self.comparison_decoders:
            _choice(v, c, "comparison_decoders", ("oracle", "empty", "full", "hard", "dense", "ar_only"))
        _int(self.n_decoder_seeds, c, "n_decoder_seeds", 1, 32)


PipelineConfig._nested = {"stage1": Stage1Config, "decoder": DecoderConfig, "diagnostics": DiagnosticsConfig}
