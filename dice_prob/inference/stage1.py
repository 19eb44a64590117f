"""Stage 1 inference: NUTS on the marginalised spike-and-slab graph model -> :class:`GraphPosterior`.

All chains (and, with ``graph_sharing="shop"``, all shops) run in ONE jitted call: NumPyro's functional NUTS
(``numpyro.infer.hmc.hmc`` with a ``potential_fn_gen``) is ``jax.vmap``-ed over shops x chains and iterated with
``lax.scan``. Every (shop, chain) lane has its own NUTS state, so step size and diagonal mass matrix are adapted
per shop and per chain.

Mixing between spike and slab. The marginalised mixture density is smooth, but for an edge whose data support
is moderate it is bimodal with a barrier of several nats per lag between the narrow spike and the slab, and NUTS
alone rarely crosses it: on a 5-edge problem its PIPs were off the exact enumeration by up to 0.14 (r_hat 1.19)
and chains disagreed edge by edge on the funnel benchmark. So after every NUTS transition each edge's
coefficient block is redrawn from its exact full conditional (``Stage1Config.edge_gibbs``, default on): given
the other parameters the block enters one Gaussian likelihood linearly, so the conditional is a two-component
Gaussian mixture that can be sampled exactly (Metropolis-within-Gibbs; the indicator is drawn as an auxiliary
and discarded, so the chain still targets the marginal posterior of the model). The potential energy and its
gradient are refreshed afterwards, and the PIP is still the Rao-Blackwellised mean of ``P(z = 1 | W, pi)``.

Which sites NUTS moves (``Stage1Config.nuts_edges``). By default the edge coefficients are drawn by the exact
Gibbs sweep, the intercepts and own lags then by their exact (conjugate Gaussian) conditional, and NUTS moves
the rest (noise, pi; in mmm mode also the carryover and Hill parameters) given them: HMC-within-Gibbs, the
scheme of ``numpyro.infer.HMCGibbs``. The reason is measured: an edge's coefficients live at the spike scale
(0.01) or the slab scale (~0.1) depending on its state, one adapted diagonal mass matrix cannot match both, and
NUTS over them built mostly 31-step trees but now and then 127-255-step ones; vmapped lanes run in lockstep, so
64 lanes (32 shops x 2 chains) paid ~3.7x the mean tree size per transition. With the small NUTS block the
trees have ~5-6 steps (lockstep cost ~16 over 64 lanes) and PIPs agree with exact enumeration as before
(tests/inference/test_reference.py). ``nuts_edges=True`` restores NUTS over every site.

On CPU, a vmapped lane costs about as much per leapfrog step as a lane of a single-shop fit (the work is in the
per-lane likelihood and the sequential edge sweep, not in dispatch), so batching shops saves little wall time;
``convergence['lockstep_tree_steps']`` against ``convergence['mean_tree_steps']`` shows the lockstep share.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
from jax import lax
from numpyro.diagnostics import effective_sample_size, split_gelman_rubin
from numpyro.distributions import biject_to
from numpyro.handlers import seed, trace
from numpyro.infer.hmc import hmc
from numpyro.infer.util import constrain_fn, potential_energy

from dice_prob import _random
from dice_prob._progress import progress_enabled
from dice_prob.config import Stage1Config
from dice_prob.data.panel import Panel
from dice_prob.errors import ConfigError, ConvergenceWarning, DataValidationError, InputTypeError
from dice_prob.graph import offdiag_mask
from dice_prob.graph import to_networkx as _to_networkx
from dice_prob.models import sites
from dice_prob.models.stage1 import (
    Stage1Data,
    edge_contribution,
    edge_features,
    edge_inclusion_prob,
    edge_kernel_params,
    edge_matrix,
    gibbs_edges,
    gibbs_edges_collapsed,
    gibbs_intercept_ar,
    gram_eigen,
    init_values,
    lag_prior_factors,
    model,
    prepare_data,
    scale_factor,
    source_inputs,
)
from dice_prob.models.stage1 import slab_spike_scales as _scales
from dice_prob.models.transforms import carryover_kernel

__all__ = ["GraphPosterior", "fit_graph", "sample_graphs"]

_MIN_ROWS = 10


# ----------------------------------------------------------------------------------------------- sampling core
def _pi_prior(config: Stage1Config):
    """Hierarchical pi over graphs: pi_g ~ Beta(m k, (1 - m) k), m ~ Beta(a, b), k ~ LogNormal(log 20, 1)."""
    if not config.hierarchical_pi:
        return None
    import numpyro
    import numpyro.distributions as dist

    def prior(n_groups):
        m = numpyro.sample("pi_mean", dist.Beta(config.pi_alpha, config.pi_beta))
        k = numpyro.sample("pi_concentration", dist.LogNormal(math.log(20.0), 1.0))
        with numpyro.plate("pi_graph", n_groups, dim=-1):
            return numpyro.sample(sites.PI, dist.Beta(m * k, (1.0 - m) * k))

    return prior


def _edge_site(config: Stage1Config) -> str:
    return sites.BETA if config.mode == "mmm" else sites.WEIGHTS


def _nuts_moves_edges(config: Stage1Config) -> bool:
    """Whether NUTS moves the edge coefficients too (``nuts_edges``; by default only without the edge Gibbs)."""
    return (not config.edge_gibbs) if config.nuts_edges is None else bool(config.nuts_edges)


def _edge_sampler(config: Stage1Config) -> str:
    """The edge update that runs: ``collapsed`` needs the intercepts and own lags out of NUTS (it integrates
    them out), so with ``nuts_edges=True`` the single-edge sweep runs instead."""
    return "single" if _nuts_moves_edges(config) else config.edge_sampler


def _slab_by_gibbs(config: Stage1Config) -> bool:
    """The learned slab sd is moved by Metropolis steps on the collapsed likelihood (with the collapsed edge
    update), not by NUTS given the coefficients (where the spike blocks pin it and it barely mixes)."""
    return bool(config.learn_slab) and config.edge_gibbs and _edge_sampler(config) == "collapsed"


@functools.lru_cache(maxsize=32)
def _kernels(config: Stage1Config):
    """(model fn, init_kernel, sample_kernel) for one config (cached so repeated fits reuse compiled code).

    The potential takes ``(data, fixed)``: ``fixed`` holds the sites NUTS does not move (the edge coefficients
    when they are updated by the exact Gibbs sweep alone, else nothing), held at their current values.
    """
    mdl = functools.partial(model, config=config, pi_prior=_pi_prior(config))

    def pe_gen(data, fixed):
        return lambda z: potential_energy(mdl, (data,), {"obs": data.y}, {**z, **fixed})

    init_kernel, sample_kernel = hmc(potential_fn_gen=pe_gen, algo="NUTS")
    return mdl, init_kernel, sample_kernel


_COMPILED: dict = {}


def _compile_config(config: Stage1Config) -> Stage1Config:
    """The config with fields that do not change the compiled sampler normalised (more cache hits).

    ``channel_transform``, ``lag_decay`` and ``node_scale`` only change the data the sampler is given
    (:func:`~dice_prob.models.stage1.prepare_data`) and how its draws are mapped back, never the program: fits that
    differ in them share one compiled sampler.
    """
    return config.replace(
        num_samples=1,
        channel_transform="none",
        lag_decay=0.0,
        node_scale="zscore",
        progress_bar=False,
        rhat_threshold=1.01,
        min_ess_per_chain=100.0,
        time_window="train",
        support="roles",
        graph_sharing="shop" if config.graph_sharing == "group" else config.graph_sharing,
        groups=None,
    )


def _flat_lanes(tree):
    """(B, C, ...) leaves -> (B * C, ...)."""
    return jax.tree_util.tree_map(lambda a: a.reshape((-1,) + a.shape[2:]), tree)


def _unflat_lanes(tree, b: int, c: int):
    """(B * C, ...) leaves -> (B, C, ...)."""
    return jax.tree_util.tree_map(lambda a: a.reshape((b, c) + a.shape[1:]), tree)


def _per_chain(tree, c: int):
    """(B, ...) leaves -> (B * C, ...): each batch element repeated for its C chains."""
    return jax.tree_util.tree_map(lambda a: jnp.repeat(a, c, axis=0), tree)


def _compiled(kind: str, config: Stage1Config, n: int, args):
    """AOT-compile (and cache) the vmapped init / run-block function for these argument shapes.

    A lane's state is ``(hmc_state, fixed)``: NumPyro's functional NUTS state over the sites it moves, and the
    dict of sites held fixed during the NUTS transition and redrawn by the Gibbs sweep (empty when NUTS moves
    every site).
    """
    shapes = tuple((tuple(x.shape), str(x.dtype)) for x in jax.tree_util.tree_leaves(args))
    treedef = jax.tree_util.tree_structure(args)
    config = _compile_config(config)
    key = (kind, config, n, shapes, treedef)
    if key in _COMPILED:
        return _COMPILED[key], 0.0
    mdl, init_kernel, sample_kernel = _kernels(config)
    # The (batch B) x (chains C) lanes run under ONE vmap over B * C flattened lanes, the data repeated per
    # chain: each vmap level re-batches NUTS's nested while loops, so two levels cost twice the tracing
    # (~8 s more per compile on 2 CPU cores) for the same program.
    if kind == "init":

        def lane(rng, z0, fixed, data):
            hs = init_kernel(
                z0,
                config.num_warmup,
                target_accept_prob=config.target_accept_prob,
                max_tree_depth=config.max_tree_depth,
                model_args=(data, fixed),
                rng_key=rng,
            )
            return hs, fixed

        def fn(keys, z0, fixed, data):
            b, c = keys.shape[:2]
            out = jax.vmap(lane)(_flat_lanes(keys), _flat_lanes(z0), _flat_lanes(fixed), _per_chain(data, c))
            return _unflat_lanes(out, b, c)

    else:
        # The scan also runs outside the vmap: vmapping a scan batches its body inside the scan's own fixpoint
        # search as well. Batching one transition and scanning the batched step gives the same draws.
        def step(s, fixed, data, eig):
            s = sample_kernel(s, model_args=(data, fixed))
            flip_accept = None
            if config.edge_gibbs:
                s, fixed, flip_accept = _gibbs_update(s, fixed, data, config, mdl, eig)
            return (s, fixed), ({**s.z, **fixed}, s.diverging, s.num_steps, flip_accept)

        def fn(state, data):
            st = data.structure
            b, c = jax.tree_util.tree_leaves(state)[0].shape[:2]
            eig = None
            if config.mode != "mmm" and st.n_groups == len(st.group_of_shop):
                # linear-mode features are data: decompose their Gram matrices once, not in every sweep
                eig = _per_chain(jax.vmap(lambda d: gram_eigen(edge_features(d.xlag, st)))(data), c)
            lanes_data = _per_chain(data, c)

            def body(carry, _):
                return jax.vmap(step)(*carry, lanes_data, eig)

            state, out = lax.scan(body, _flat_lanes(state), None, length=n)
            # draws come out (n, B * C, ...); callers take (B, C, n, ...)
            out = jax.tree_util.tree_map(lambda a: jnp.moveaxis(a, 0, 1), out)
            return _unflat_lanes(state, b, c), _unflat_lanes(out, b, c)

    t0 = time.perf_counter()
    compiled = jax.jit(fn).lower(*args).compile()
    dt = time.perf_counter() - t0
    if len(_COMPILED) > 64:
        _COMPILED.clear()
    _COMPILED[key] = compiled
    return compiled, dt


def _gibbs_update(state, fixed: dict, data: Stage1Data, config: Stage1Config, mdl, gram_eig=None):
    """Exact Gibbs sweep over edge blocks after a NUTS transition; refreshes potential energy and gradient.

    Returns the new ``(hmc_state, fixed, flip_accept)``: the redrawn coefficients go into ``fixed`` when NUTS
    does not move them, else into the NUTS position; ``flip_accept`` is the joint flip moves' acceptance rate
    per graph and node (``None`` without them).
    """
    st = data.structure
    z = {**state.z, **fixed}
    p = constrain_fn(mdl, (data,), {"obs": data.y}, z)
    mmm = st.mode == "mmm"
    if mmm:
        ret, delay = edge_kernel_params(p[sites.RETENTION], p[sites.DELAY], st, config)
        feats = edge_features(data.xlag, st, p.get(sites.HILL_HALF), p.get(sites.HILL_SLOPE), ret, delay)
        coef = p[sites.BETA][..., None]

        def coef_w(beta):
            return beta[..., None] * carryover_kernel(st.n_lags, ret, delay)

    else:
        feats = edge_features(data.xlag, st)
        coef = p[sites.WEIGHTS]

        def coef_w(weights):
            return weights

    x = source_inputs(data, p.get(sites.HILL_HALF), p.get(sites.HILL_SLOPE))
    if config.noise_sd is None:
        sigma = p[sites.NOISE]
    else:
        sigma = jnp.full(data.y.shape[::2], float(config.noise_sd))
    slab, spike = _scales(config, st, p.get(sites.SLAB))
    key = jax.random.fold_in(state.rng_key, 1)
    site = _edge_site(config)
    new_slab = None
    new_sigma = None
    flip_accept = None
    if _edge_sampler(config) == "collapsed":
        args = (key, feats, coef, data.y, data.ylag, sigma, p[sites.PI], st, slab, spike)
        kw = {"grid": tuple(config.slab_grid), "flip_moves": config.flip_moves}
        if config.flip_moves and config.noise_sd is None:
            kw["noise_prior_sd"] = float(config.noise_scale)
        if _slab_by_gibbs(config):
            f = scale_factor(st)
            kw["slab_prior"] = (
                math.log(config.slab_scale * f),
                config.slab_scale_sd,
                config.spike_scale / config.slab_scale,
            )
        new, slab_out, sigma_out, flip_accept = gibbs_edges_collapsed(*args, **kw)
        if _slab_by_gibbs(config):
            new_slab = jnp.log(slab_out / f)  # unconstrained (log) value of the slab site
        if "noise_prior_sd" in kw:
            # the joint flip moves also moved the residual sds: every later draw is conditional on them
            sigma, new_sigma = sigma_out, sigma_out
    else:
        # the single-edge sweep works on the residual of the current mean
        w = coef_w(coef[..., 0] if mmm else coef)
        mean = (
            p[sites.INTERCEPT][:, None, :] + p[sites.AR][:, None, :] * data.ylag + edge_contribution(x, w, st)
        )
        new = gibbs_edges(key, feats, coef, data.y - mean, sigma, p[sites.PI], st, slab, spike, gram_eig)
    new = {site: new[..., 0] if mmm else new}  # the edge sites have real support: unconstrained = constrained
    if site in state.z:
        zn = {**state.z, **new}
    else:
        # HMC-within-Gibbs: intercepts and own lags are conjugate given the new edges, so draw them exactly too
        w = coef_w(new[site])
        target = data.y - edge_contribution(x, w, st)
        b, phi = gibbs_intercept_ar(jax.random.fold_in(state.rng_key, 2), target, data.ylag, sigma)
        zn, fixed = state.z, {**fixed, **new, sites.INTERCEPT: b, sites.AR: phi}
        if new_sigma is not None:
            # NUTS moves the noise site on its unconstrained (log) scale: HalfNormal's support is positive
            zn = {**zn, sites.NOISE: jnp.log(new_sigma).astype(zn[sites.NOISE].dtype)}
        if new_slab is not None:
            fixed = {**fixed, sites.SLAB: new_slab}

    def pe(zz):
        return potential_energy(mdl, (data,), {"obs": data.y}, {**zz, **fixed})

    energy, grad = jax.value_and_grad(pe)(zn)
    return state._replace(z=zn, potential_energy=energy, z_grad=grad), fixed, flip_accept


def _block_size(nw: int, ns: int, progress: bool) -> int:
    b = math.gcd(nw, ns)
    if progress:
        target = max(1, (nw + ns) // 20)
        b = max(k for k in range(1, b + 1) if b % k == 0 and k <= target)
    return b


def _site_info(config: Stage1Config, data0: Stage1Data):
    """Latent site names, shapes and constraining bijections of the model (traced once on one lane)."""
    mdl, _, _ = _kernels(config)
    info = {}

    def record(data):
        tr = trace(seed(mdl, 0)).get_trace(data, obs=data.y)
        for name, s in tr.items():
            if s["type"] == "sample" and not s["is_observed"]:
                info[name] = (tuple(jnp.shape(s["value"])), biject_to(s["fn"].support))

    # traced abstractly: running the model eagerly would compile each of its ops one by one (~10 s per fit); the
    # sites' supports are constants (real, positive, unit interval), so no tracer leaves the trace
    jax.eval_shape(record, data0)
    return info


def _run_nuts(rng_key, batched: Stage1Data, config: Stage1Config, *, desc: str):
    """Run vmapped NUTS over (batch B) x (chains C). Returns constrained samples (B, C, n, ...) and stats."""
    b_ = batched.y.shape[0]
    c_ = config.num_chains
    data0 = jax.tree_util.tree_map(lambda a: a[0], batched)
    info = _site_info(config, data0)
    k_init, k_run = jax.random.split(rng_key)
    st = batched.structure
    inits = [
        init_values(
            np.asarray(batched.y[b]), np.asarray(batched.ylag[b]), np.asarray(batched.xlag[b]), st, config
        )
        for b in range(b_)
    ]
    z0 = {}
    for k, (name, (shape, _)) in zip(jax.random.split(k_init, len(info)), sorted(info.items()), strict=True):
        base = np.stack([v[name] for v in inits]) if name in inits[0] else np.zeros((b_,) + shape, np.float32)
        # small per-chain jitter: chains start near the slab-only mode, not at one point
        radius = 0.02 if name in (sites.WEIGHTS, sites.BETA) else 0.1
        # drawn flat: the same numbers, without XLA:CPU's slow compile of a many-axis draw (dice_prob._random)
        jit = _random.uniform(k, (b_, c_) + shape, minval=-radius, maxval=radius)
        z0[name] = jnp.asarray(base)[:, None] + jit
    keys = jax.random.split(k_run, b_ * c_).reshape((b_, c_) + jax.random.split(k_run, 1).shape[1:])

    # sites NUTS does not move start at their initial values and are then redrawn by the Gibbs sweep
    held = () if _nuts_moves_edges(config) else (_edge_site(config), sites.INTERCEPT, sites.AR)
    if _slab_by_gibbs(config):
        held = held + (sites.SLAB,)
    fixed0 = {k: v for k, v in z0.items() if k in held}
    z0 = {k: v for k, v in z0.items() if k not in held}

    timing = {"compile_s": 0.0}
    t_start = time.perf_counter()
    init_fn, dt = _compiled("init", config, 0, (keys, z0, fixed0, batched))
    timing["compile_s"] += dt
    state = init_fn(keys, z0, fixed0, batched)
    nw, ns = config.num_warmup, config.num_samples
    show = progress_enabled(config.progress_bar)
    blk = _block_size(nw, ns, show)
    run_fn, dt = _compiled("run", config, blk, (state, batched))
    timing["compile_s"] += dt
    from tqdm.auto import tqdm

    zs, divs, steps, accs = [], [], [], []
    with tqdm(total=nw + ns, desc=desc, disable=not show, leave=False) as bar:
        for k in range((nw + ns) // blk):
            state, (z, dv, st, acc) = run_fn(state, batched)
            if k * blk >= nw:
                zs.append(z)
                divs.append(dv)
                steps.append(st)
                accs.append(acc)
            bar.update(blk)
    z = {name: jnp.concatenate([zz[name] for zz in zs], axis=2) for name in info}
    jax.block_until_ready(z)
    timing["sample_s"] = time.perf_counter() - t_start - timing["compile_s"]
    constrained = {name: np.asarray(info[name][1](z[name])) for name in info}
    stats = {
        "diverging": np.asarray(jnp.concatenate(divs, axis=2)),
        "num_steps": np.asarray(jnp.concatenate(steps, axis=2)),
        "step_size": np.asarray(state[0].adapt_state.step_size),
        # (B, C, n, G, J_c) per-iteration acceptance rate of the joint flip moves, None without them
        "flip_accept": None if accs[0] is None else np.asarray(jnp.concatenate(accs, axis=2)),
    }
    return constrained, stats, timing


# ----------------------------------------------------------------------------------------------- convergence
def _convergence(samples: dict, stats: dict, config: Stage1Config, nodes=None) -> dict:
    """Split r_hat / bulk ESS over W (or beta), pi and the per-edge inclusion probabilities; divergences; graphs
    and edges whose chains settled in different modes (``chain_split``, ``edge_split``)."""
    rh, ess = [], []
    per_site = {}
    for name in sites.CONVERGENCE_SITES:
        if name not in samples:
            continue
        x = np.asarray(samples[name], dtype=np.float64)  # (chain, draw, ...)
        x = x.reshape(x.shape[:2] + (-1,))
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            sd = x.reshape(-1, x.shape[-1]).std(axis=0)
            # practically constant quantities (an edge probability pinned at 1 up to 1e-6) have no meaningful
            # r_hat: a 1e-6 offset between chains with zero within-chain spread would read as r_hat = 1e8
            keep = sd > 1e-3
            r = (
                np.asarray(split_gelman_rubin(x[..., keep]))
                if keep.any() and x.shape[1] >= 4
                else np.array([])
            )
            e = (
                np.asarray(effective_sample_size(x[..., keep]))
                if keep.any() and x.shape[1] >= 4
                else np.array([])
            )
        r, e = r[np.isfinite(r)], e[np.isfinite(e)]
        per_site[name] = {
            "max_r_hat": float(r.max()) if r.size else float("nan"),
            "min_ess": float(e.min()) if e.size else float("nan"),
        }
        rh.append(r)
        ess.append(e)
    r = np.concatenate(rh) if rh else np.array([])
    e = np.concatenate(ess) if ess else np.array([])
    n_div = int(np.asarray(stats["diverging"]).sum())
    steps = np.asarray(stats["num_steps"])  # (lanes..., draw)
    max_r = float(r.max()) if r.size else float("nan")
    min_e = float(e.min()) if e.size else float("nan")
    ess_needed = config.min_ess_per_chain * config.num_chains
    ok = bool(np.isfinite(max_r) and max_r <= config.rhat_threshold and min_e >= ess_needed and n_div == 0)
    return {
        "max_r_hat": max_r,
        "min_ess": min_e,
        "n_divergences": n_div,
        "ok": ok,
        "ess_required": ess_needed,
        "r_hat_threshold": config.rhat_threshold,
        "sites": per_site,
        "mean_tree_steps": float(steps.mean()),
        # vmapped lanes (shops x chains) advance in lockstep: each transition costs the longest lane's tree
        "lockstep_tree_steps": float(steps.reshape(-1, steps.shape[-1]).max(axis=0).mean()),
        "max_tree_depth_hits": int((steps >= 2**config.max_tree_depth - 1).sum()),
        "nuts_edges": _nuts_moves_edges(config),
        "edge_sampler": _edge_sampler(config) if config.edge_gibbs else "none",
        **_flip_acceptance(stats.get("flip_accept")),
        "chain_split": _chain_split(samples),
        "edge_split": _edge_split(samples.get("inclusion_prob"), nodes),
    }


#: Chains count as settled in different modes of a graph when their mean prior inclusion probabilities differ by
#: more than this (a probability) and by more than ``_SPLIT_SDS`` within-chain sds; or their mean log slab sds
#: differ by more than ``log(_SLAB_FACTOR)`` and ``_SPLIT_SDS`` within-chain sds.
_PI_GAP = 0.1
_SLAB_FACTOR = 2.0
_SPLIT_SDS = 4.0


def _chain_split(samples: dict) -> dict | None:
    """Graphs whose chains sit in different modes of (pi, slab), or None when every graph's chains agree.

    A between-chain gap far beyond the within-chain spread is not a short-run problem: in the learned-slab model
    the chains can settle in "every edge in a narrow slab" (pi near 1) and "almost every edge in the spike"
    (pi near 0), and no number of extra draws moves a chain from one to the other (benchmarks/graph_density.py).
    Returns ``{"n_graphs": G, "graphs": [...], "pi_by_chain": [[...], ...], "slab_by_chain": [[...], ...] or
    None}``, listing the split graphs' per-chain means (at most 5 graphs listed).
    """
    pi = samples.get(sites.PI)
    if pi is None or np.ndim(pi) < 2 or np.shape(pi)[0] < 2:
        return None
    pi = np.asarray(pi, dtype=np.float64)
    pi = pi.reshape(pi.shape[:2] + (-1,))  # (C, n, G)
    split = _split_lanes(pi, _PI_GAP)
    slab = samples.get(sites.SLAB)
    slab_means = None
    if slab is not None:
        log_slab = np.log(np.asarray(slab, dtype=np.float64).reshape(pi.shape))
        split |= _split_lanes(log_slab, math.log(_SLAB_FACTOR))
        slab_means = np.exp(log_slab.mean(axis=1))  # (C, G) geometric means
    graphs = np.flatnonzero(split)
    if graphs.size == 0:
        return None
    shown = graphs[:5]
    return {
        "n_graphs": int(pi.shape[-1]),
        "graphs": [int(g) for g in graphs],
        "pi_by_chain": np.round(pi.mean(axis=1)[:, shown].T, 3).tolist(),
        "slab_by_chain": None if slab_means is None else np.round(slab_means[:, shown].T, 3).tolist(),
    }


#: An edge's chains disagree when their mean inclusion probabilities span more than this.
_EDGE_SPAN = 0.5


def _edge_split(incl, nodes=None) -> dict | None:
    """Edges whose chains sit in different on/off states, or None when no edge's chains disagree.

    ``incl``: (C, n, [G,] d, d) per-draw inclusion probabilities. An edge whose per-chain means span more than
    ``_EDGE_SPAN`` is on in some chains and off in others: its split r_hat is huge and the pooled PIP is a vote
    between chains, not a posterior mean. Returns ``{"n_edges": k, "edges": [{"graph", "source", "target",
    "by_chain"}, ...]}`` with the (at most 5) widest spans first.
    """
    if incl is None or np.shape(incl)[0] < 2:
        return None
    x = np.asarray(incl, dtype=np.float64)
    d = x.shape[-1]
    means = x.reshape(x.shape[:2] + (-1, d, d)).mean(axis=1)  # (C, G, d, d)
    span = means.max(axis=0) - means.min(axis=0)  # (G, d, d)
    idx = np.argwhere(span > _EDGE_SPAN)
    if idx.size == 0:
        return None
    order = np.argsort(-span[tuple(idx.T)], kind="stable")[:5]
    name = (lambda i: str(nodes[i])) if nodes is not None else str
    return {
        "n_edges": len(idx),
        "edges": [
            {
                "graph": int(g),
                "source": name(int(i)),
                "target": name(int(j)),
                "by_chain": np.round(means[:, g, i, j], 2).tolist(),
            }
            for g, i, j in idx[order]
        ],
    }


def describe_edge_split(split: dict) -> str:
    """One sentence (no final full stop) on a ``convergence['edge_split']`` record, for warnings and reports."""
    e = split["edges"][0]
    by = "/".join(f"{v:.2f}" for v in e["by_chain"])
    return (
        f"The chains disagree on {split['n_edges']} edge(s) (graph {e['graph']}, {e['source']} -> {e['target']}: "
        f"inclusion by chain {by}): some chains sit in other on/off states of these edges, and their PIPs are a "
        "vote between chains"
    )


def describe_chain_split(split: dict) -> str:
    """One sentence (no final full stop) on a ``convergence['chain_split']`` record, for warnings and reports."""
    g = split["graphs"][0]
    pis = "/".join(f"{v:.2f}" for v in split["pi_by_chain"][0])
    slabs = split.get("slab_by_chain")
    slab_txt = "" if slabs is None else ", slab sd " + "/".join(f"{v:.2g}" for v in slabs[0])
    return (
        f"The chains settled in different modes on {len(split['graphs'])} of {split['n_graphs']} graph(s) "
        f"(graph {g}: pi by chain {pis}{slab_txt}); more draws will not join them, and the edge probabilities "
        "average over the modes"
    )


def describe_convergence_split(conv: dict) -> str | None:
    """The sentence on a ``convergence`` dict's split chains for the CLI summary and the report: the graph-level
    ``chain_split`` when set (it splits the edges too), else ``edge_split``; None when the chains agree."""
    if conv.get("chain_split"):
        return describe_chain_split(conv["chain_split"])
    if conv.get("edge_split"):
        return describe_edge_split(conv["edge_split"])
    return None


def _split_lanes(x: np.ndarray, min_gap: float) -> np.ndarray:
    """(G,) whether the per-chain means of ``x`` (C, n, G) differ by > ``min_gap`` and > _SPLIT_SDS within sds."""
    means = x.mean(axis=1)  # (C, G)
    within = np.sqrt((x.var(axis=1)).mean(axis=0))  # (G,) pooled within-chain sd
    gap = means.max(axis=0) - means.min(axis=0)
    return (gap > min_gap) & (gap > _SPLIT_SDS * within)


def _flip_acceptance(acc) -> dict:
    """Acceptance of the joint flip moves over the kept draws: overall, and the lowest of any node (a node near 0
    is not mixing between its explanations through these moves; its r_hat then tells whether the sweep did)."""
    if acc is None or np.asarray(acc).size == 0:
        return {"flip_accept_rate": None, "flip_accept_min_node": None}
    a = np.asarray(acc, dtype=np.float64)  # (B, C, n, G, J_c)
    per_node = a.mean(axis=(1, 2))  # chains and draws pooled
    return {"flip_accept_rate": float(a.mean()), "flip_accept_min_node": float(per_node.min())}


def _warn_if_poor(conv: dict, config: Stage1Config | None = None) -> None:
    if conv["ok"]:
        return
    problems = []
    if not np.isfinite(conv["max_r_hat"]) or conv["max_r_hat"] > conv["r_hat_threshold"]:
        problems.append(f"max split r_hat {conv['max_r_hat']:.3f} > {conv['r_hat_threshold']}")
    if not np.isfinite(conv["min_ess"]) or conv["min_ess"] < conv["ess_required"]:
        problems.append(f"min bulk ESS {conv['min_ess']:.0f} < {conv['ess_required']:.0f}")
    if conv["n_divergences"]:
        problems.append(f"{conv['n_divergences']} divergent transitions")
    advice = (
        ". Increase Stage1Config.num_warmup/num_samples/num_chains or target_accept_prob; "
        "inspect post.convergence['sites']."
    )
    split = conv.get("chain_split")
    if split:
        advice = (
            ". "
            + describe_chain_split(split)
            + ". "
            + (
                "A fixed scale-mixture slab, Stage1Config(learn_slab=False, slab_grid=(0.1, 0.3, 1.0)"
                + (", flip_moves=0" if config is not None and config.flip_moves else "")
                + "), removed such splits in benchmarks/graph_density.py; "
                if split["slab_by_chain"] is not None
                else ""
            )
            + "inspect post.convergence['chain_split'] and post.convergence['sites']."
        )
    elif conv.get("edge_split"):
        advice = (
            ". "
            + describe_edge_split(conv["edge_split"])
            + (
                ". More Stage1Config.flip_moves (joint flips of two edges) or num_warmup may join them"
                if conv.get("flip_accept_rate") is not None
                else ". Stage1Config(flip_moves=4) proposes joint flips of two edges, which joined such chains in "
                "benchmarks/stage1_chain_modes.py (max r_hat 5.27 -> 1.21 at 1.6x the time)"
                if config is None or config.supports_flip_moves()
                else ". Joint flip moves (Stage1Config.flip_moves) need the collapsed edge sampler and the plain slab"
            )
            + "; more num_chains shows how many states there are; inspect post.convergence['edge_split']."
        )
    warnings.warn(
        "Stage 1 NUTS converged poorly (on W/beta, pi and edge inclusion probabilities): "
        + "; ".join(problems)
        + advice,
        ConvergenceWarning,
        stacklevel=3,
    )


# ----------------------------------------------------------------------------------------------- posterior
def sample_graphs(rng_key, draw_probs, n: int):
    """Graph samples from per-draw inclusion probabilities (pure JAX, jittable, vmappable over keys).

    Picks ``n`` posterior draws uniformly at random, then one Bernoulli per edge.

    Parameters
    ----------
    rng_key : jax PRNG key
    draw_probs : array, shape (S, ..., d, d)
    n : int (static)

    Returns
    -------
    float32 array of 0/1, shape (n, ..., d, d)

    Examples
    --------
    >>> import jax, jax.numpy as jnp
    >>> g = sample_graphs(jax.random.key(0), jnp.ones((3, 2, 2)) * jnp.array([[0.0, 1.0], [0.0, 0.0]]), 4)
    >>> g.shape, float(g[:, 0, 1].sum())
    ((4, 2, 2), 4.0)
    """
    k1, k2 = jax.random.split(rng_key)
    p = jnp.asarray(draw_probs)
    idx = jax.random.randint(k1, (n,), 0, p.shape[0])
    sel = p[idx]
    return jax.random.bernoulli(k2, sel).astype(jnp.float32)


@dataclasses.dataclass
class GraphPosterior:
    """Posterior over the lagged graph support from :func:`fit_graph`.

    Attributes
    ----------
    nodes, roles : tuple of str
    support_mask : (d, d) bool
        Candidate pairs ``A[src, dst]``; PIPs are 0 elsewhere.
    config : Stage1Config
    sharing : "shop" | "shared" | "group"
    pip : (d, d) (shared), (R, d, d) (shop) or (G, d, d) (group) posterior inclusion probabilities.
    draw_probs : (S, d, d) or (S, R|G, d, d); per posterior draw ``P(z_ij = 1 | W, pi)`` (S = chains x draws).
    samples : dict name -> array (chain, draw, ...); per-shop/group sites carry that axis right after ``draw``.
        ``inclusion_prob`` holds ``draw_probs`` as (chain, draw, [R|G,] d, d).
    convergence : dict with ``max_r_hat``, ``min_ess``, ``n_divergences``, ``ok`` (computed on W or beta, pi and
        the per-edge inclusion probabilities — the spike-and-slab posterior is multimodal in z, so these
        well-defined continuous quantities are what r_hat/ESS are reported on) and per-site detail.
    groups : (R,) int array mapping shop -> graph (group sharing), else None.
    group_labels : the original group labels (group sharing), else None.
    edges : (E, 2) int array of candidate (src, dst) pairs.
    timing : dict with ``compile_s`` and ``sample_s``.
    """

    nodes: tuple
    roles: tuple
    support_mask: np.ndarray
    config: Stage1Config
    sharing: str
    pip: np.ndarray
    draw_probs: np.ndarray
    samples: dict
    convergence: dict
    groups: np.ndarray | None = None
    group_labels: tuple | None = None
    edges: np.ndarray | None = None
    timing: dict = dataclasses.field(default_factory=dict)

    # -------------------------------------------------------------------------------------------- shapes
    @property
    def n_nodes(self) -> int:
        return len(self.nodes)

    @property
    def n_shops(self) -> int | None:
        if self.sharing == "shop":
            return self.pip.shape[0]
        return None if self.groups is None else len(self.groups)

    @property
    def num_chains(self) -> int:
        return int(self.samples["inclusion_prob"].shape[0])

    def _check_shop(self, shop) -> int:
        n = (
            self.pip.shape[0]
            if self.sharing == "shop"
            else (len(self.groups) if self.groups is not None else None)
        )
        if not isinstance(shop, (int, np.integer)) or isinstance(shop, bool):
            raise InputTypeError(f"shop: expected an integer shop index, got {type(shop).__name__}")
        if n is not None and not 0 <= int(shop) < n:
            raise DataValidationError(f"shop: index {shop} out of range for {n} shops")
        return int(shop)

    def pip_of_shop(self, r: int) -> np.ndarray:
        """(d, d) PIP matrix that applies to shop ``r`` (its own, its group's, or the shared one)."""
        if self.sharing == "shared":
            if not isinstance(r, (int, np.integer)):
                raise InputTypeError(f"shop: expected an integer shop index, got {type(r).__name__}")
            return self.pip
        r = self._check_shop(r)
        return self.pip[r] if self.sharing == "shop" else self.pip[self.groups[r]]

    def _per_shop_probs(self) -> np.ndarray:
        """draw_probs as (S, R, d, d) (group: expanded to shops; shared: (S, d, d))."""
        if self.sharing == "group":
            return self.draw_probs[:, self.groups]
        return self.draw_probs

    def sample_graphs(self, rng_key, n: int, shop: int | None = None) -> np.ndarray:
        """``n`` graph samples: (n, d, d) for one shop / a shared graph, else (n, R, d, d).

        Each sample picks a posterior draw at random and draws one Bernoulli per edge (group sharing: one graph
        per group, repeated for that group's shops).

        Examples
        --------
        >>> post.sample_graphs(jax.random.key(1), 100).shape  # doctest: +SKIP
        (100, 3, 3)
        """
        if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < 1:
            raise InputTypeError(f"n: expected a positive integer number of graph samples, got {n!r}")
        if shop is not None and self.sharing != "shared":
            shop = self._check_shop(shop)
            p = self.draw_probs[:, shop if self.sharing == "shop" else self.groups[shop]]
            return np.asarray(_sample_jit(rng_key, jnp.asarray(p), int(n)))
        g = np.asarray(_sample_jit(rng_key, jnp.asarray(self.draw_probs), int(n)))
        if self.sharing == "group":
            g = g[:, self.groups]
        return g

    def median_graph(self, shop: int | None = None) -> np.ndarray:
        """Median-probability graph (PIP > 0.5), int 0/1, in the shape of ``pip`` (or (d, d) for one shop)."""
        p = self.pip if shop is None else self.pip_of_shop(shop)
        return (p > 0.5).astype(int)

    def pip_frame(self) -> pd.DataFrame:
        """Tidy PIPs of every candidate pair: columns [shop|group], source, target, pip."""
        src, dst = np.nonzero(self.support_mask)
        if self.sharing == "shared":
            return pd.DataFrame(
                {
                    "source": [self.nodes[i] for i in src],
                    "target": [self.nodes[j] for j in dst],
                    "pip": self.pip[src, dst],
                }
            )
        unit = "shop" if self.sharing == "shop" else "group"
        frames = []
        for u in range(self.pip.shape[0]):
            frames.append(
                pd.DataFrame(
                    {
                        unit: u,
                        "source": [self.nodes[i] for i in src],
                        "target": [self.nodes[j] for j in dst],
                        "pip": self.pip[u, src, dst],
                    }
                )
            )
        return pd.concat(frames, ignore_index=True)

    def top_k(self, k: int, shop: int | None = None) -> pd.DataFrame:
        """The ``k`` candidate edges with the highest PIP (per shop/group when the graph is not shared)."""
        if not isinstance(k, (int, np.integer)) or k < 1:
            raise InputTypeError(f"k: expected a positive integer, got {k!r}")
        if shop is not None:
            p = self.pip_of_shop(shop)
            src, dst = np.nonzero(self.support_mask)
            df = pd.DataFrame(
                {
                    "source": [self.nodes[i] for i in src],
                    "target": [self.nodes[j] for j in dst],
                    "pip": p[src, dst],
                }
            )
            return df.sort_values("pip", ascending=False, kind="stable").head(k).reset_index(drop=True)
        df = self.pip_frame()
        if self.sharing == "shared":
            return df.sort_values("pip", ascending=False, kind="stable").head(k).reset_index(drop=True)
        unit = df.columns[0]
        df = df.sort_values([unit, "pip"], ascending=[True, False], kind="stable")
        return df.groupby(unit, sort=True).head(k).reset_index(drop=True)

    def to_networkx(self, threshold: float = 0.5, shop: int | None = None):
        """``networkx.DiGraph`` of edges with PIP above ``threshold`` (edge attribute ``weight`` = PIP)."""
        if shop is None and self.sharing != "shared":
            raise InputTypeError("shop: this posterior has one graph per shop/group; pass shop=r")
        p = self.pip if shop is None else self.pip_of_shop(shop)
        return _to_networkx(p, list(self.nodes), threshold=threshold)

    def to_arviz(self):
        """ArviZ InferenceData (dims chain, draw, [shop|group], source, target) via dice_prob.diagnostics."""
        from dice_prob.diagnostics.uncertainty import posterior_to_arviz

        return posterior_to_arviz(self)

    def __repr__(self) -> str:
        c = self.convergence
        return (
            f"GraphPosterior(sharing={self.sharing!r}, pip{tuple(self.pip.shape)}, draws={self.draw_probs.shape[0]}, "
            f"max_r_hat={c.get('max_r_hat', float('nan')):.3f}, divergences={c.get('n_divergences')})"
        )


_sample_jit = jax.jit(sample_graphs, static_argnums=2)
# jitted: run eagerly, each of its ops would compile on its own for every new shape of draws
_edge_prob_jit = jax.jit(edge_inclusion_prob, static_argnums=4)


# ----------------------------------------------------------------------------------------------- fit_graph
def _validate(panel, config) -> None:
    if not isinstance(panel, Panel):
        raise InputTypeError(
            f"panel: expected a dice_prob.Panel, got {type(panel).__name__}; build one with dp.Panel(...)"
        )
    if not isinstance(config, Stage1Config):
        raise InputTypeError(f"config: expected a Stage1Config, got {type(config).__name__}")
    need = config.n_lags + _MIN_ROWS
    panel.require_steps(need, f"n_lags={config.n_lags} plus {_MIN_ROWS} usable rows")
    if config.time_window == "train" and panel.train_steps < need:
        raise DataValidationError(
            f"train_steps: {panel.train_steps} training steps, but n_lags={config.n_lags} needs at least {need}; "
            "use a longer training window or fewer lags"
        )
    if config.mode == "mmm" or config.channel_transform == "log1p":
        panel.require_nonnegative("channel")
    if config.graph_sharing == "group" and len(config.groups) != panel.n_shops:
        raise ConfigError(
            f"Stage1Config.groups: {len(config.groups)} group labels for {panel.n_shops} shops; give one per shop"
        )
    if config.hierarchical_pi and config.graph_sharing != "shop":
        raise ConfigError("Stage1Config.hierarchical_pi: only meaningful with graph_sharing='shop'")


def fit_graph(rng_key, panel: Panel, *, config: Stage1Config = Stage1Config()) -> GraphPosterior:  # noqa: B008
    """Posterior over the lagged graph support (NUTS on the marginalised spike-and-slab model).

    Uses the first ``panel.train_steps`` steps of every shop (z-scored per shop and node; ``mmm`` channel
    sources as ``x / max``, the input of their Hill curve, whose output is z-scored). See
    :mod:`dice_prob.models.stage1` for the likelihood and the priors.

    Parameters
    ----------
    rng_key : jax PRNG key
        Same key, same panel, same config -> identical PIPs.
    panel : Panel
    config : Stage1Config
        ``graph_sharing``: ``shop`` (independent per-shop posteriors, all shops x chains in one vmapped NUTS
        call with per-lane adaptation; ``hierarchical_pi=True`` instead fits all shops jointly with
        ``pi_r ~ Beta(m k, (1-m) k)``), ``shared`` (one graph, likelihood pooled over shops) or ``group`` (one
        graph per label in ``config.groups``).

    Returns
    -------
    GraphPosterior

    Warns
    -----
    ConvergenceWarning
        When max split r_hat (over W/beta, pi, edge inclusion probabilities) > ``rhat_threshold``, the min bulk
        ESS < ``min_ess_per_chain * num_chains``, or any divergent transition.

    Examples
    --------
    >>> import numpy as np, jax, warnings, dice_prob as dp
    >>> x = np.random.default_rng(0).normal(size=(1, 60, 3))
    >>> x[0, 1:, 2] += 0.9 * x[0, :-1, 0]
    >>> p = dp.Panel(x, roles=["channel", "channel", "target"])
    >>> cfg = dp.Stage1Config(n_lags=1, num_warmup=150, num_samples=150, progress_bar=False)
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("ignore")  # a 150-draw run is too short for a clean bill of health
    ...     post = fit_graph(jax.random.key(0), p, config=cfg)
    >>> bool(post.pip[0, 0, 2] > 0.9), post.pip.shape
    (True, (1, 3, 3))
    >>> post.sample_graphs(jax.random.key(1), 100, shop=0).shape
    (100, 3, 3)
    """
    _validate(panel, config)
    d = panel.n_nodes
    mask = panel.support_mask() if config.support == "roles" else offdiag_mask(d)
    n_time = panel.train_steps if config.time_window == "train" else panel.n_steps
    values = panel.values[:, :n_time, :]
    r_ = panel.n_shops
    groups = labels = None
    per_shop_lanes = config.graph_sharing == "shop" and not config.hierarchical_pi
    if config.graph_sharing == "group":
        labels = tuple(sorted(set(config.groups)))
        groups = np.array([labels.index(g) for g in config.groups], dtype=int)
    elif config.graph_sharing == "shop" and not per_shop_lanes:
        groups = np.arange(r_)  # hierarchical pi: one graph per shop, fitted jointly
    full = prepare_data(
        values,
        panel.roles,
        mask,
        n_lags=config.n_lags,
        mode=config.mode,
        group_of_shop=groups,
        channel_transform=config.channel_transform,
        lag_decay=config.lag_decay,
        node_scale=config.node_scale,
        # node scales pool over the shops that share coefficients: each shop alone when lanes are per shop
        scale_group_of_shop=np.arange(r_) if per_shop_lanes else groups,
    )
    if per_shop_lanes:
        lane_struct = full.structure.with_shops((0,))
        batched = Stage1Data(full.y[:, None], full.ylag[:, None], full.xlag[:, None], lane_struct)
    else:
        batched = jax.tree_util.tree_map(lambda a: a[None], full)
    st = full.structure

    constrained, stats, timing = _run_nuts(
        rng_key, batched, config, desc=f"Stage 1 NUTS ({config.graph_sharing})"
    )

    # (B, C, n, ...) -> (C, n, ...) with the unit axis (shop/group) after draw, when there is one
    per_lane = config.graph_sharing == "shop" and not config.hierarchical_pi
    samples = {}
    for name, v in constrained.items():
        v = np.moveaxis(v, 0, 2)  # (C, n, B, ...)
        if per_lane:
            # lane arrays carry a size-1 graph or shop axis right after B: drop it
            v = v[:, :, :, 0]
        else:
            v = v[:, :, 0]
            if config.graph_sharing == "shared" and name not in (sites.INTERCEPT, sites.AR, sites.NOISE):
                v = v[:, :, 0]  # single graph
        samples[name] = v
    slab, spike = _scales(config, st, samples.get(sites.SLAB))
    coef = samples[sites.BETA if config.mode == "mmm" else sites.WEIGHTS]
    pi = samples[sites.PI]
    ep = np.asarray(_edge_prob_jit(jnp.asarray(coef), jnp.asarray(pi), slab, spike, tuple(config.slab_grid)))
    samples[sites.EDGE_PROB] = ep
    if config.mode == "linear" and config.lag_decay:
        # the sampler worked on the weights of the prior-scaled lags (prepare_data): back to the data's lags
        samples[sites.WEIGHTS] = samples[sites.WEIGHTS] * lag_prior_factors(config.n_lags, config.lag_decay)
    if full.node_sd is not None:
        # coefficients in innovation-sd units (prepare_data): back to z-scores, W_z = W * s_dst / s_src per
        # graph; an mmm-mode channel source enters as its z-scored Hill curve, not in innovation units (s_src = 1)
        chan = {i for i, c in zip(st.src_nodes, st.src_is_channel, strict=True) if c}
        s_src = np.stack(
            [np.ones(len(full.node_sd)) if i in chan else full.node_sd[:, i] for i in st.edge_src], 1
        )
        ratio = full.node_sd[:, list(st.edge_dst)] / s_src  # (G, E)
        name = sites.BETA if config.mode == "mmm" else sites.WEIGHTS
        w = samples[name]
        if config.graph_sharing == "shared":  # (C, n, E, ...): one graph
            ratio = ratio[0]
        samples[name] = w * (ratio if config.mode == "mmm" else ratio[..., None])
    incl = np.asarray(edge_matrix(jnp.asarray(ep), st))
    samples["inclusion_prob"] = incl
    c_, n_ = incl.shape[:2]
    draw_probs = incl.reshape((c_ * n_,) + incl.shape[2:])
    pip = draw_probs.mean(axis=0)
    conv = _convergence(samples, stats, config, panel.nodes)
    conv["step_size"] = stats["step_size"].tolist()
    _warn_if_poor(conv, config)
    sharing = config.graph_sharing
    return GraphPosterior(
        nodes=panel.nodes,
        roles=panel.roles,
        support_mask=np.asarray(mask, dtype=bool),
        config=config,
        sharing=sharing,
        pip=pip,
        draw_probs=draw_probs,
        samples=samples,
        convergence=conv,
        groups=None if sharing == "shop" else groups,
        group_labels=labels,
        edges=np.stack([np.array(st.edge_src), np.array(st.edge_dst)], axis=1),
        timing=timing,
    )
