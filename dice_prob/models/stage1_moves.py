"""Joint Metropolis moves of a node's edge indicators and its residual sd, on the collapsed Stage-1 likelihood.

Why. The collapsed edge sweep (:func:`dice_prob.models.stage1.gibbs_edges_collapsed`) draws each indicator given
the others and given the residual sd ``sigma``. When two parents explain the same variation (co-moving
channels), "both on" and "both off" can both be good explanations, each with its own ``sigma``: on the default
funnel (``benchmarks/results/stage1_chain_modes.md``) the two states are within 0.8 nats once ``sigma`` is
integrated out, but at either chain's own ``sigma`` the state it sits in wins by 9 to 19 nats, and a single flip
is ~7 nats worse with ``sigma`` integrated. Chains then keep the state they started in. Here each proposal
flips one or two of a node's indicators *and* moves its residual sds with them, judged on the likelihood with
every coefficient of the node integrated out (edge blocks, per-shop intercepts and own lags), so the chain
crosses between the two explanations in one step.

The proposal, per graph and modelled node, all nodes at once (given the sources, nodes' likelihoods and their
indicators and sds are disjoint, so the moves are independent):

- pick slots ``a`` and ``b`` uniformly among the node's candidate edges, flip ``z_a``, and ``z_b`` if ``b != a``;
- ``log sigma'_r = log sigma_r + delta_r + tau eps_r`` for every shop ``r`` of the graph, with
  ``delta_r = 0.5 log(RSS_r(z') / RSS_r(z))`` (residual sums of squares of the posterior-mean fits under the two
  patterns at a fixed reference ``sigma = 1``, so ``delta`` depends on the patterns and the data only),
  ``eps_r ~ N(0, 1)`` and ``tau = 1 / sqrt(2 T')`` (about the posterior sd of ``log sigma``).

The reverse move picks the same slots with the same probability and has ``delta(z', z) = -delta(z, z')``, so the
proposal is symmetric in ``log sigma`` and the Metropolis ratio is the ratio of the collapsed targets
``p(y | z, sigma) p(z | pi) p(sigma) sigma`` (the last factor: the density of ``log sigma``). With a fixed
residual sd (``Stage1Config.noise_sd``) only the indicators move.

Validity: the move leaves ``p(z, sigma | y, pi, slab, rest)`` invariant with the coefficients integrated out; the
caller then draws every integrated coefficient from its exact conditional given the new ``(z, sigma)`` (a
partially collapsed Gibbs step), so the chain still targets the model's posterior. Tested against exact
enumeration with ``sigma`` integrated by quadrature (``tests/inference/test_reference.py``).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from dice_prob.models import linalg

__all__ = ["collapsed_stats", "collapsed_shop_terms", "collapsed_log_evidence", "joint_flip_moves"]


def collapsed_stats(f, zb, y) -> dict:
    """Per shop and node sufficient statistics of the collapsed likelihood (independent of ``sigma``).

    Parameters
    ----------
    f : (R, T', J, K) a node's edge regressors side by side; zb : (R, T', J, 2) ``[1, y(t-1)]``; y : (R, T', J).
    """
    return {
        "zz": jnp.einsum("rtja,rtjb->rjab", zb, zb),
        "zf": jnp.einsum("rtja,rtjk->rjak", zb, f),
        "zy": jnp.einsum("rtja,rtj->rja", zb, y),
        "ff": jnp.einsum("rtjk,rtjl->rjkl", f, f),
        "fy": jnp.einsum("rtjk,rtj->rjk", f, y),
        "yy": jnp.einsum("rtj,rtj->rj", y, y),
        "n": float(y.shape[1]),
    }


def _inv2(a):
    """Inverse and log-determinant of (..., 2, 2) positive-definite matrices, in closed form (a LAPACK call
    here would add another batched custom call to the sampler, see ``models.linalg``)."""
    det = a[..., 0, 0] * a[..., 1, 1] - a[..., 0, 1] * a[..., 1, 0]
    adj = jnp.stack(
        [jnp.stack([a[..., 1, 1], -a[..., 0, 1]], -1), jnp.stack([-a[..., 1, 0], a[..., 0, 0]], -1)], -2
    )
    return adj / det[..., None, None], jnp.log(det)


def collapsed_shop_terms(stats, sigma, bp_prec):
    """Per shop: the edge Gram and information after integrating out (intercept, own lag), the log evidence of
    the node without edges, and the (intercept, own lag) posterior precision inverse. ``sigma`` (R, J)."""
    w = sigma**-2
    a = w[..., None, None] * stats["zz"] + jnp.diag(bp_prec)
    ainv, logdet_a = _inv2(a)
    zf = w[..., None, None] * stats["zf"]
    zy = w[..., None] * stats["zy"]
    gram = w[..., None, None] * stats["ff"] - jnp.einsum("rjak,rjab,rjbl->rjkl", zf, ainv, zf)
    info = w[..., None] * stats["fy"] - jnp.einsum("rjak,rjab,rjb->rjk", zf, ainv, zy)
    n = stats["n"]
    base = (
        -0.5 * n * math.log(2.0 * math.pi)
        - n * jnp.log(sigma)
        - 0.5 * w * stats["yy"]
        + 0.5 * jnp.einsum("rja,rjab,rjb->rj", zy, ainv, zy)
        - 0.5 * logdet_a
        + 0.5 * jnp.sum(jnp.log(bp_prec))
    )
    return gram, info, base, ainv


def collapsed_log_evidence(stats, sigma, sd, onehot, bp_prec):
    """``log p(y_j | z, sigma)`` per graph and node with every coefficient of the node integrated out.

    Parameters
    ----------
    stats : from :func:`collapsed_stats`; sigma : (R, J); sd : (G, J, K) prior sd of every edge coefficient
        under the pattern (spike or slab; padding slots carry zero regressors); onehot : (R, G) shop -> graph;
        bp_prec : (2,) prior precisions of the intercept and the own lag.

    Returns
    -------
    ev : (G, J) log evidence; mean : (G, J, K) posterior mean of the edge coefficients.
    """
    gram, info, base, _ = collapsed_shop_terms(stats, sigma, bp_prec)
    gram = jnp.einsum("rg,rjkl->gjkl", onehot, gram)
    gram = 0.5 * (gram + jnp.swapaxes(gram, -1, -2))
    info = jnp.einsum("rg,rjk->gjk", onehot, info)
    base = jnp.einsum("rg,rj->gj", onehot, base)
    k_ = sd.shape[-1]
    # prior-whitened precision I + S G S (eigenvalues >= 1): log|G + P| - log|P| = log|I + S G S|
    chol = jnp.linalg.cholesky(jnp.eye(k_, dtype=sd.dtype) + sd[..., :, None] * gram * sd[..., None, :])
    mean = sd * linalg.cho_solve_lower(chol, (sd * info)[..., None])[..., 0]
    logdet = 2.0 * jnp.sum(jnp.log(jnp.diagonal(chol, axis1=-2, axis2=-1)), -1)
    return base - 0.5 * logdet + 0.5 * jnp.sum(info * mean, -1), mean


def _residual_ss(stats, sd, onehot, gidx, bp_prec, mean=None):
    """(R, J) residual sum of squares of the posterior-mean fit under pattern ``sd`` at ``sigma = 1``
    (``mean``: that fit's (G, J, K) edge coefficients when already computed)."""
    r_, j_ = stats["yy"].shape
    ones = jnp.ones((r_, j_), sd.dtype)
    if mean is None:
        _, mean = collapsed_log_evidence(stats, ones, sd, onehot, bp_prec)
    c = mean[gidx]  # (R, J, K)
    _, _, _, ainv = collapsed_shop_terms(stats, ones, bp_prec)
    bp = jnp.einsum("rjab,rjb->rja", ainv, stats["zy"] - jnp.einsum("rjak,rjk->rja", stats["zf"], c))
    fit = (
        jnp.einsum("rja,rjab,rjb->rj", bp, stats["zz"], bp)
        + 2.0 * jnp.einsum("rja,rjak,rjk->rj", bp, stats["zf"], c)
        + jnp.einsum("rjk,rjkl,rjl->rj", c, stats["ff"], c)
    )
    cross = jnp.einsum("rja,rja->rj", bp, stats["zy"]) + jnp.einsum("rjk,rjk->rj", c, stats["fy"])
    rss = stats["yy"] - 2.0 * cross + fit
    return jnp.maximum(rss, 1e-6 * stats["yy"] + 1e-12)


def joint_flip_moves(
    rng_key,
    stats,
    z,
    valid,
    sigma,
    ptab,
    log_w,
    gidx,
    bp_prec,
    n_lags_per_edge: int,
    n_moves: int,
    noise_prior_sd: float | None,
):
    """``n_moves`` Metropolis proposals per graph and node, each flipping one or two indicators with the sds.

    Parameters
    ----------
    stats : from :func:`collapsed_stats`.
    z : (G, J, n) int, 0 = spike, 1 = slab; valid : (J, n) bool, real (not padding) edge slots.
    sigma : (R, J) residual sds. ptab : (G, 2) prior precision of a coefficient in the spike / slab.
    log_w : (G, 2) prior log probability of the two states. gidx : (R,) int graph of every shop.
    bp_prec : (2,) prior precisions of the intercept and own lag. n_lags_per_edge : coefficients per edge block.
    noise_prior_sd : HalfNormal scale of ``sigma``; ``None`` keeps ``sigma`` fixed (only indicators move).

    Returns
    -------
    z, sigma, n_accepted : (G, J, n), (R, J), (G, J) int.
    """
    g_, j_, n_max = z.shape
    dtype = sigma.dtype
    onehot = jax.nn.one_hot(gidx, g_, dtype=dtype)  # (R, G)
    garange = jnp.arange(g_)[:, None, None]
    learn_sigma = noise_prior_sd is not None
    tau = 1.0 / math.sqrt(2.0 * stats["n"])
    valid = jnp.asarray(valid)
    slot_logits = jnp.where(valid, 0.0, -jnp.inf)  # (J, n)

    def sd_of(zz):
        return jnp.repeat(ptab[garange, zz], n_lags_per_edge, axis=-1) ** -0.5  # (G, J, K)

    def target(zz, sig, ev=None):
        if ev is None:
            ev, _ = collapsed_log_evidence(stats, sig, sd_of(zz), onehot, bp_prec)
        out = ev + jnp.sum(jnp.where(valid[None], log_w[garange, zz], 0.0), -1)
        if learn_sigma:
            # HalfNormal density of sigma times the Jacobian sigma of the move in log sigma
            lp_sig = -0.5 * (sig / noise_prior_sd) ** 2 + jnp.log(sig)
            out = out + jnp.einsum("rg,rj->gj", onehot, lp_sig)
        return jnp.where(jnp.isfinite(out), out, -jnp.inf)

    def rss(zz):
        return _residual_ss(stats, sd_of(zz), onehot, gidx, bp_prec)

    def step(i, carry):
        zz, sig, lt, rs, n_acc = carry
        k_a, k_b, k_eps, k_u = jax.random.split(jax.random.fold_in(rng_key, i), 4)
        a = jax.random.categorical(k_a, slot_logits, shape=(g_, j_))
        b = jax.random.categorical(k_b, slot_logits, shape=(g_, j_))
        flip = (jax.nn.one_hot(a, n_max) + jax.nn.one_hot(b, n_max) * (b != a)[..., None]) > 0
        zp = jnp.where(flip & valid[None], 1 - zz, zz)
        if learn_sigma:
            rsp = rss(zp)  # the proposed sigma needs it: this Cholesky call runs before the next one
            step_ = 0.5 * (jnp.log(rsp) - jnp.log(rs)) + tau * jax.random.normal(k_eps, sig.shape, dtype)
            sigp = sig * jnp.exp(step_)
        else:
            rsp, sigp = rs, sig
        ltp = target(zp, sigp)
        log_u = jnp.log(jax.random.uniform(k_u, (g_, j_), dtype))
        acc = (log_u < ltp - lt) & jnp.isfinite(ltp)
        acc_r = acc[gidx]  # (R, J): a shop's sds move with its graph's indicators
        return (
            jnp.where(acc[..., None], zp, zz),
            jnp.where(acc_r, sigp, sig),
            jnp.where(acc, ltp, lt),
            jnp.where(acc_r, rsp, rs),
            n_acc + acc.astype(jnp.int32),
        )

    if learn_sigma:
        # the evidence at the current sigma and the reference fit at sigma = 1 in ONE batched Cholesky call: two
        # independent LAPACK calls in one program can both wait on the 2-thread intra-op pool and deadlock
        # (seen here, as for trsm in models.linalg)
        evs, means = jax.vmap(collapsed_log_evidence, in_axes=(None, 0, None, None, None))(
            stats, jnp.stack([sigma, jnp.ones_like(sigma)]), sd_of(z), onehot, bp_prec
        )
        t0 = target(z, sigma, ev=evs[0])
        rs0 = _residual_ss(stats, sd_of(z), onehot, gidx, bp_prec, mean=means[1])
    else:
        t0, rs0 = target(z, sigma), jnp.ones_like(sigma)
    init = (z, sigma, t0, rs0, jnp.zeros((g_, j_), jnp.int32))
    z, sigma, _, _, n_acc = jax.lax.fori_loop(0, n_moves, step, init)
    return z, sigma, n_acc
