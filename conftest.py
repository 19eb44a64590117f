"""Suite-wide pytest hooks (this file sits at the repository root so it also covers the doctests in dice_prob/).

Why: the whole fast suite runs in one process, and every XLA:CPU executable keeps its own memory mappings. Left to
pile up, they pass the kernel's ``vm.max_map_count`` (65530 by default) about two thirds of the way through and
XLA's compiler then segfaults on whatever it compiles next. Dropping the compile caches between test files keeps
the mapping count bounded; a file's own tests still share their compiled code.
"""

from __future__ import annotations

import gc


def _clear_compile_caches() -> None:
    import jax

    from dice_prob.inference import stage1, train

    stage1._COMPILED.clear()
    stage1._kernels.cache_clear()
    train._optimizer.cache_clear()
    jax.clear_caches()
    gc.collect()


def pytest_runtest_teardown(item, nextitem):
    # Only at a file boundary (or at the very end): clearing per test would recompile shared code in every test.
    if nextitem is None or nextitem.path != item.path:
        _clear_compile_caches()
