"""Per-shop offsets of a decoder's linear part: a population decoder plus one linear correction per shop.

Every decoder of :mod:`dice_prob.models` has a linear part shared by all shops: an intercept ``ar_bias`` (d,),
own-lag coefficients ``ar_coef`` (d, p) and, except the AR-only baseline, a lagged cross-node kernel
(``edge_kernel`` of the graph-safe decoder, gated by the runtime graph; ``var_kernel`` of the dense baseline).
When shops respond differently -- an edge that raises the target in one shop and lowers it in another -- one
shared kernel averages the effects away, while a per-shop least-squares VAR keeps them. :class:`ShopOffsets` holds
``(S, ...)`` offsets of those arrays; :func:`bind_shop` adds shop ``s``'s offsets to a decoder and returns an
ordinary decoder of the same class, so every recurrence, rollout and influence computation runs unchanged.

Graph safety is untouched: the kernel offset is added to ``edge_kernel``, which the decoder only ever uses gated
by the runtime ``A[j, i]``, so a pair without an edge still carries exactly nothing in every shop. Without a shop
(a new shop, or a population-level forecast) the decoder is used as it is: the offsets are deviations from it.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp

__all__ = ["ShopOffsets", "bind_shop", "kernel_attribute", "zero_offsets"]

_KERNELS = ("edge_kernel", "var_kernel")


def kernel_attribute(model) -> str | None:
    """Name of ``model``'s lagged cross-node kernel (``edge_kernel``, ``var_kernel``) or None when it has none."""
    return next((a for a in _KERNELS if hasattr(model, a)), None)


class ShopOffsets(eqx.Module):
    """Per-shop offsets of a decoder's linear part.

    Attributes
    ----------
    bias : array, shape (S, d)
        Added to ``ar_bias``.
    coef : array, shape (S, d, p)
        Added to ``ar_coef`` (lag 1 first).
    kernel : array, shape (S, d, d, p), or None
        Added to the cross-node kernel named ``kernel_attr`` (``[shop, src, dst, lag]``); None for a decoder
        without one.
    kernel_attr : str or None
        ``"edge_kernel"`` or ``"var_kernel"`` (static).
    """

    bias: jax.Array
    coef: jax.Array
    kernel: jax.Array | None
    kernel_attr: str | None = eqx.field(static=True)

    @property
    def n_shops(self) -> int:
        """Number of shops ``S``."""
        return int(self.bias.shape[0])


def zero_offsets(model, n_shops: int) -> ShopOffsets:
    """All-zero offsets for ``n_shops`` shops, shaped after ``model``'s linear part.

    Examples
    --------
    >>> import jax
    >>> from dice_prob.models.decoder import GraphSafeDecoder
    >>> from dice_prob.models.shop_linear import zero_offsets
    >>> dec = GraphSafeDecoder(3, hidden_size=4, message_size=2, embed_size=2, ar_lags=2, key=jax.random.key(0))
    >>> off = zero_offsets(dec, 5)
    >>> off.n_shops, off.coef.shape, off.kernel.shape, off.kernel_attr
    (5, (5, 3, 2), (5, 3, 3, 2), 'edge_kernel')
    """
    attr = kernel_attribute(model)
    n = int(n_shops)
    if n < 1:
        raise ValueError(f"n_shops: must be >= 1, got {n_shops}")
    return ShopOffsets(
        bias=jnp.zeros((n, *model.ar_bias.shape), model.ar_bias.dtype),
        coef=jnp.zeros((n, *model.ar_coef.shape), model.ar_coef.dtype),
        kernel=None if attr is None else jnp.zeros((n, *getattr(model, attr).shape), model.ar_coef.dtype),
        kernel_attr=attr,
    )


def bind_shop(model, offsets: ShopOffsets | None, shop):
    """``model`` with shop ``shop``'s offsets added to its linear part (``model`` itself when ``offsets`` is None).

    ``shop`` may be a traced integer, so this works inside ``jax.vmap`` over windows of different shops.

    Examples
    --------
    >>> import jax, jax.numpy as jnp
    >>> from dice_prob.models.decoder import GraphSafeDecoder
    >>> from dice_prob.models.shop_linear import bind_shop, zero_offsets
    >>> dec = GraphSafeDecoder(2, hidden_size=4, message_size=2, embed_size=2, ar_lags=1, key=jax.random.key(0))
    >>> off = zero_offsets(dec, 2)
    >>> off = ShopOffsets(off.bias.at[1].set(1.0), off.coef, off.kernel, off.kernel_attr)
    >>> A = jnp.zeros((2, 2))
    >>> bind_shop(dec, off, 0).rollout(jnp.zeros((3, 2)), 1, A).tolist()  # shop 0: no offset
    [[0.0, 0.0]]
    >>> bind_shop(dec, off, 1).rollout(jnp.zeros((3, 2)), 1, A).tolist()  # shop 1: intercepts + 1
    [[1.0, 1.0]]
    """
    if offsets is None:
        return model
    s = jnp.asarray(shop)
    attrs = ["ar_bias", "ar_coef"]
    vals = [model.ar_bias + offsets.bias[s], model.ar_coef + offsets.coef[s]]
    if offsets.kernel is not None:
        attrs.append(offsets.kernel_attr)
        vals.append(getattr(model, offsets.kernel_attr) + offsets.kernel[s])
    return eqx.tree_at(lambda m: tuple(getattr(m, a) for a in attrs), model, tuple(vals))
