"""Errors and warnings raised by dice_prob.

Every error raised at a boundary (Panel, readers, configs, CLI) subclasses :class:`DiceProbError` plus the
builtin ``ValueError`` or ``TypeError`` it refines, so ``except ValueError`` keeps working for callers that do
not know this package. Messages name the offending field and say how to fix it.
"""

from __future__ import annotations


class DiceProbError(Exception):
    """Base class of every error dice_prob raises on purpose."""


class DataValidationError(DiceProbError, ValueError):
    """Data handed to dice_prob is unusable: NaN/inf, wrong shape, too short, unknown names, negative spends.

    Examples
    --------
    >>> from dice_prob.errors import DataValidationError, DiceProbError
    >>> issubclass(DataValidationError, ValueError), issubclass(DataValidationError, DiceProbError)
    (True, True)
    >>> try:
    ...     raise DataValidationError("values: contains NaN")
    ... except ValueError as exc:  # callers that do not know dice_prob still catch it
    ...     print(type(exc).__name__, "-", exc)
    DataValidationError - values: contains NaN
    """


class GraphValidationError(DiceProbError, ValueError):
    """An adjacency matrix has the wrong size, non-finite entries or a self-loop."""


class ConfigError(DiceProbError, ValueError):
    """A configuration field is out of range or unknown."""


class InputTypeError(DiceProbError, TypeError):
    """An argument has the wrong type (for example a list where an array is needed)."""


class MetricError(DiceProbError, ValueError):
    """A metric is undefined for its input (for example the truth has no positive edge)."""


class ConvergenceWarning(UserWarning):
    """MCMC or training converged poorly (r_hat > 1.01, low ESS, divergences, early-stopping at the first epoch)."""


class ForecastSkillWarning(ConvergenceWarning):
    """A trained decoder forecasts the target no better than a reference forecast (the shop's training mean or a
    least-squares AR of the target's own lags): training ended somewhere the graph earns no forecast skill, so its
    attributions rest on nothing the data confirms. A subclass of :class:`ConvergenceWarning`, so one filter
    silences both."""


def check(condition: bool, message: str, error: type[DiceProbError] = DataValidationError) -> None:
    """Raise ``error(message)`` unless ``condition`` holds.

    Examples
    --------
    >>> from dice_prob.errors import ConfigError, check
    >>> check(3 > 0, "n: must be positive")  # passes silently
    >>> check(-1 > 0, "n: must be positive, got -1")
    Traceback (most recent call last):
        ...
    dice_prob.errors.DataValidationError: n: must be positive, got -1
    >>> check(False, "alpha: must be in (0, 1)", ConfigError)
    Traceback (most recent call last):
        ...
    dice_prob.errors.ConfigError: alpha: must be in (0, 1)
    """
    if not condition:
        raise error(message)
