"""Data layer: the validated `Panel`, simulators with ground truth, and readers/writers."""

from dice_prob.data.panel import Panel

__all__ = ["Panel"]
