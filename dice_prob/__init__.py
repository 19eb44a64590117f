"""dice_prob: graph posteriors, graph-safe decoders and counterfactual influence diagnostics for MMM.

The public API (see DESIGN.md)::

    import dice_prob as dp
    sim = dp.simulate.funnel(rng_key, n_shops=10, n_steps=100, mode="linear")
    post = dp.fit_graph(rng_key, sim.panel, config=dp.Stage1Config())
    dec = dp.train_decoder(rng_key, sim.panel, graph=post, config=dp.DecoderConfig())
    ar = dp.diagnostics.ar_cig(dec, sim.panel, post, horizon=7)
    swap = dp.graph_swap(rng_key, dec, sim.panel, truth=sim.graph)
    res = dp.run_pipeline(rng_key, sim.panel, config=dp.PipelineConfig()); dp.report(res, "report.html")
"""

from dice_prob import diagnostics, errors, graph
from dice_prob.config import DecoderConfig, DiagnosticsConfig, PipelineConfig, Stage1Config
from dice_prob.data import io, simulate
from dice_prob.data.panel import Panel
from dice_prob.data.simulate import Simulation
from dice_prob.diagnostics.graph_swap import GraphSwapResult, graph_swap
from dice_prob.inference.stage1 import GraphPosterior, fit_graph
from dice_prob.inference.train import TrainedDecoder, train_decoder
from dice_prob.pipeline import PipelineResult, load_config, load_result, run_pipeline, save_config
from dice_prob.report import report

__version__ = "0.1.0"

__all__ = [
    "DecoderConfig",
    "DiagnosticsConfig",
    "GraphPosterior",
    "GraphSwapResult",
    "Panel",
    "PipelineConfig",
    "PipelineResult",
    "Simulation",
    "Stage1Config",
    "TrainedDecoder",
    "diagnostics",
    "errors",
    "fit_graph",
    "graph",
    "graph_swap",
    "io",
    "load_config",
    "load_result",
    "report",
    "run_pipeline",
    "save_config",
    "simulate",
    "train_decoder",
]
