"""Diagnostics: metrics, CIG / AR-CIG influence graphs, frozen graph-swap, ArviZ conversion and plots."""

from dice_prob.diagnostics import plots, uncertainty
from dice_prob.diagnostics.graph_swap import GraphSwapResult, graph_swap
from dice_prob.diagnostics.influence import InfluenceResult, ar_cig, cig, forecast_draws, influence
from dice_prob.diagnostics.metrics import (
    auprc,
    auroc,
    calibration_table,
    expected_calibration_error,
    mse_at_h,
    nauprc,
    shd,
)

__all__ = [
    "GraphSwapResult",
    "InfluenceResult",
    "ar_cig",
    "auprc",
    "auroc",
    "calibration_table",
    "cig",
    "expected_calibration_error",
    "forecast_draws",
    "graph_swap",
    "influence",
    "mse_at_h",
    "nauprc",
    "plots",
    "shd",
    "uncertainty",
]
