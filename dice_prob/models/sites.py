"""Sample-site names of the Stage-1 NumPyro model (one place, so inference and diagnostics agree)."""

from __future__ import annotations

#: Prior inclusion probability per graph, shape (G,).
PI = "pi"
#: Learned slab sd per graph, shape (G,) (``Stage1Config.learn_slab``): per lag (linear) or on ``beta`` (mmm,
#: times sqrt(L)); the spike sd keeps the ratio ``spike_scale / slab_scale`` to it.
SLAB = "slab"
#: Linear mode: lag weights per candidate edge, shape (G, E, L) (spike-and-slab per edge group).
WEIGHTS = "W"
#: mmm mode: total effect per candidate edge, shape (G, E) (spike-and-slab).
BETA = "beta"
#: mmm mode: carryover retention per edge, shape (G, E), in (0, 1); (G, S) per source with
#: ``carryover_sharing='source'``.
RETENTION = "retention"
#: mmm mode: carryover peak delay (in lags) per edge, shape (G, E), >= 0; (G, S) as ``RETENTION``.
DELAY = "delay"
#: mmm mode: Hill half-saturation per source channel, shape (G, S), on the x / max scale.
HILL_HALF = "hill_half"
#: mmm mode: Hill slope per source channel, shape (G, S).
HILL_SLOPE = "hill_slope"
#: Intercept per shop and modelled node, shape (R, J).
INTERCEPT = "b"
#: Own-lag (lag 1) coefficient per shop and modelled node, shape (R, J).
AR = "phi"
#: Residual sd per shop and modelled node, shape (R, J).
NOISE = "sigma"
#: Observations, shape (R, T', J).
OBS = "y"
#: Deterministic: Rao-Blackwellised P(z_e = 1 | W, pi) per edge, shape (G, E).
EDGE_PROB = "edge_prob"

#: Plate names.
PLATE_GRAPH = "graph"
PLATE_EDGE = "edge"
PLATE_SOURCE = "source"
PLATE_SHOP = "shop"
PLATE_TIME = "time"
PLATE_TARGET = "target"

#: Sites whose split r_hat / ESS is reported (well-defined under spike-and-slab multimodality).
CONVERGENCE_SITES = (WEIGHTS, BETA, PI, SLAB, EDGE_PROB)
