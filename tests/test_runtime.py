"""``use_synchronous_cpu_dispatch``: applied before the CPU backend exists, reported as not applied after.

Each case runs in a fresh interpreter: the setting is process-wide and this test process's backend already exists.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

BEFORE = """
import jax, jax.numpy as jnp
import dice_prob as dp
print(dp.use_synchronous_cpu_dispatch(), jax.config.read("jax_cpu_enable_async_dispatch"))
print(float(jnp.arange(4.0).sum()))
"""

AFTER = """
import jax, jax.numpy as jnp
print(float(jnp.arange(4.0).sum()))  # creates the CPU backend
import dice_prob as dp
print(dp.use_synchronous_cpu_dispatch(), jax.config.read("jax_cpu_enable_async_dispatch"))
"""


@pytest.mark.parametrize(
    ("script", "expected"),
    [(BEFORE, ["True False", "6.0"]), (AFTER, ["6.0", "False True"])],
    ids=["before-backend", "after-backend"],
)
def test_synchronous_cpu_dispatch_only_before_the_backend(script, expected):
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=120
    )
    assert out.stdout.split("\n")[:2] == expected
