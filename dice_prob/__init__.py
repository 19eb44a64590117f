"""dice_prob: graph posteriors, graph-safe decoders and counterfactual influence diagnostics for MMM."""

from dice_prob import errors, graph
from dice_prob.config import DecoderConfig, DiagnosticsConfig, PipelineConfig, Stage1Config
from dice_prob.data.panel import Panel

__version__ = "0.1.0"

__all__ = [
    "DecoderConfig",
    "DiagnosticsConfig",
    "Panel",
    "PipelineConfig",
    "Stage1Config",
    "errors",
    "graph",
]
