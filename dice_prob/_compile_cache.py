"""The JAX persistent compilation cache settings that the test suite (``conftest.py``) and ``dice-prob bench all``
share: one temporary folder per run, and which programs are written to it.

The cache holds XLA executables only, so every number is the same with or without it.
"""

from __future__ import annotations

import tempfile

#: Programs that compile faster than this are not written to the disk cache (JAX's default is 1 s). 0 keeps them all:
#: each fresh process or test file otherwise compiles again the many small eager programs (random draws, reshapes,
#: 0.05-0.4 s each; ~9 s per pipeline run). Measured on 2 cores: a repeated tiny pipeline run 18.5 s -> 13.1 s;
#: tests/models, tests/diagnostics, test_pipeline.py, test_cli.py and tests/benchmarks on two workers 195 s -> 167 s.
MIN_COMPILE_S = "0"


def missing_cache_env(environ, prefix: str) -> dict:
    """The cache variables ``environ`` does not set yet: a new temporary folder (named with ``prefix``) and the
    minimum compile time. The caller sets them, and removes the folder it was given when the run ends."""
    env = {}
    if not environ.get("JAX_COMPILATION_CACHE_DIR"):
        env["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix=prefix)
    if not environ.get("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"):
        env["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = MIN_COMPILE_S
    return env
