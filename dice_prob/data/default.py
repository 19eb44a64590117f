"""The embedded default dataset of ``dice-prob demo``.

Nothing is downloaded: the default is a ``funnel(mode="mmm")`` simulation (non-negative spends with adstock
carryover and Hill saturation, a known graph per shop) generated at run time from a fixed key, so every
installation produces the same numbers.
"""

from __future__ import annotations

import jax

#: Seed of the fixed key the default dataset is generated from.
DEFAULT_DATA_SEED = 20240607

#: Simulation settings of the full and the fast (CI / tutorial) demo.
DEFAULT_SETTINGS = {
    "full": {"n_shops": 4, "n_steps": 100, "n_lags": 7, "mode": "mmm"},
    "fast": {"n_shops": 2, "n_steps": 80, "n_lags": 7, "mode": "mmm"},
}


def default_simulation(fast: bool = False, *, seed: int = DEFAULT_DATA_SEED):
    """The demo's data: a ``funnel(mode="mmm")`` simulation with its true graph(s).

    Parameters
    ----------
    fast : bool
        The small setting (fewer shops, shorter series) used in CI and the tutorials.
    seed : int
        Seed of the key the data are generated from (default: the fixed demo seed).

    Returns
    -------
    dice_prob.data.simulate.Simulation

    Examples
    --------
    >>> sim = default_simulation(fast=True)
    >>> sim.panel.n_shops, sim.panel.target == sim.panel.nodes[-1]
    (2, True)
    """
    from dice_prob.data import simulate

    settings = DEFAULT_SETTINGS["fast" if fast else "full"]
    return simulate.funnel(jax.random.key(int(seed)), **settings)


def default_settings(fast: bool = False) -> dict:
    """A copy of the simulation settings (for the report's "what was run" section)."""
    return dict(DEFAULT_SETTINGS["fast" if fast else "full"], seed=DEFAULT_DATA_SEED)
