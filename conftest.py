"""Suite-wide pytest hooks (this file sits at the repository root so it also covers the doctests in dice_prob/).

Why: the whole fast suite runs in one process, and every XLA:CPU executable keeps its own memory mappings. Left to
pile up, they pass the kernel's ``vm.max_map_count`` (65530 by default) about two thirds of the way through and
XLA's compiler then segfaults on whatever it compiles next. Dropping the compile caches between test files keeps
the mapping count bounded; a file's own tests still share their compiled code.

Compiled programs are also kept on disk for the whole run (JAX's persistent compilation cache, in a temporary folder
unless ``JAX_COMPILATION_CACHE_DIR`` is already set): a later test file, a notebook kernel or a CLI subprocess that
compiles the same program loads it instead of compiling it again. It holds XLA executables only, so every number
is the same with or without it.
"""

from __future__ import annotations

import gc
import os
import shutil


def pytest_configure(config):
    from dice_prob._compile_cache import missing_cache_env

    env = missing_cache_env(os.environ, "dice-prob-xla-cache-")
    os.environ.update(env)
    config._dice_prob_env = env
    import jax

    # the environment reaches notebook kernels and subprocesses; this process may have read it before it was set
    jax.config.update("jax_compilation_cache_dir", os.environ["JAX_COMPILATION_CACHE_DIR"])
    jax.config.update(
        "jax_persistent_cache_min_compile_time_secs",
        float(os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"]),
    )


def pytest_unconfigure(config):
    env = getattr(config, "_dice_prob_env", {})
    for name in env:
        os.environ.pop(name, None)
    if "JAX_COMPILATION_CACHE_DIR" in env:
        shutil.rmtree(env["JAX_COMPILATION_CACHE_DIR"], ignore_errors=True)


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
