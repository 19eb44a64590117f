"""Process-wide JAX settings for entry points (the CLI, the benchmarks, the test suite, the tutorials).

Nothing here runs at import: like ``numpyro.set_host_device_count``, these settings belong to whoever owns the
process, and they only take effect before JAX creates its CPU backend (the first computation).
"""

from __future__ import annotations

import jax


def use_synchronous_cpu_dispatch() -> bool:
    """Run XLA:CPU computations inline instead of dispatching them asynchronously.

    Why: with asynchronous CPU dispatch (JAX's default), a chain of compiled calls that each run long ``while``
    loops (NUTS blocks, the decoder's training loop) can deadlock: every XLA thread waits and the process sits in
    ``block_until_ready`` for ever (an open JAX bug, jax-ml/jax#25861; we saw it twice in long benchmark runs on
    2 cores). Inline execution avoids it and costs nothing measurable here: every hot path is already one large
    compiled call. Call it before the first JAX computation; afterwards it has no effect.

    Returns
    -------
    bool
        True when the setting was applied, False when the CPU backend already existed (the setting then stays
        as it was).

    Examples
    --------
    At the top of a script or notebook, before any JAX computation:

    >>> import dice_prob as dp
    >>> dp.use_synchronous_cpu_dispatch()
    True
    """
    from jax._src import xla_bridge  # the only way to ask whether the backend exists yet

    if xla_bridge.backends_are_initialized():
        return not jax.config.read("jax_cpu_enable_async_dispatch")
    jax.config.update("jax_cpu_enable_async_dispatch", False)
    return True
