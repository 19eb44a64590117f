"""``benchmarks/graph_density.py``'s generator: the drawn graph has the asked density, and the data follow it."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import graph_density as gd  # noqa: E402


def test_edge_draws_are_reproducible_and_match_the_density():
    for density in gd.DENSITIES:
        draws = [gd.draw_edges(density, seed) for seed in range(200)]
        assert draws[3] == gd.draw_edges(density, 3)
        assert all(set(e) <= set(gd.CANDIDATES) and any(b == "sales" for _, b in e) for e in draws)
        share = np.mean([len(e) for e in draws]) / len(gd.CANDIDATES)
        # binomial share over 200 x 21 pairs: sd about 0.007; the forced sales edge adds at most 1/21 per draw
        assert density - 0.03 < share < density + 0.05, (density, share)


def test_generated_panel_follows_its_graph():
    """Truth equals the drawn edges; a node's one-step residual after its own AR(1) and its true parents is the
    generator's noise (sd 0.3), and a node without parents is correlated with no lagged channel effect."""
    edges = [("ch0", "visits"), ("visits", "sales")]
    values, truth = gd.generate(0, edges, n_shops=2, n_steps=400)
    assert values.shape == (2, 400, len(gd.NODES)) and np.isfinite(values).all()
    assert {(gd.NODES[a], gd.NODES[b]) for a, b in zip(*np.nonzero(truth), strict=True)} == set(edges)
    spends = values[..., : len(gd.CHANNELS)]
    assert spends.min() >= 0 and (spends == 0).mean() > 0.05  # dark weeks
    idx = {n: gd.NODES.index(n) for n in gd.NODES}
    for s in range(2):
        x = values[s]
        # sales_t = 0.6 sales_{t-1} + 0.35 visits_{t-1} + noise(0.3): least squares recovers it
        design = np.column_stack([x[:-1, idx["sales"]], x[:-1, idx["visits"]]])
        coef, *_ = np.linalg.lstsq(design, x[1:, idx["sales"]], rcond=None)
        np.testing.assert_allclose(coef, [0.6, 0.35], atol=0.08)
        resid = x[1:, idx["sales"]] - design @ coef
        assert 0.25 < resid.std() < 0.35
        # signups has no parent: an AR(1) with coefficient 0.4 and nothing from the lagged spends
        z = x[:, idx["signups"]]
        design = np.column_stack([z[:-1], x[:-1, : len(gd.CHANNELS)]])
        coef, *_ = np.linalg.lstsq(design, z[1:], rcond=None)
        assert abs(coef[0] - 0.4) < 0.1 and np.abs(coef[1:]).max() < 0.05
