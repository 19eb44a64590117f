"""Graph-recovery, calibration and forecast metrics (pure NumPy; vectorised over leading batch dimensions).

Score matrices follow the package convention ``S[..., src, dst]``. Every graph metric is computed over the
*scored pairs*: off-diagonal entries inside an optional support ``mask`` (d, d). Leading batch dimensions of the
scores (one score matrix per posterior draw, graph sample or shop) give an array with one result each; the truth
is either one (d, d) graph shared by the batch or one graph per batch entry.

- ``auroc``: area under the ROC curve (Mann-Whitney statistic, ties count one half) — equal to sklearn's
  ``roc_auc_score``.
- ``auprc``: average precision, sklearn's ``average_precision_score`` definition
  ``sum_n (R_n - R_{n-1}) P_n`` over distinct score thresholds (not the trapezoidal area).
- ``nauprc``: ``(AUPRC - p) / (1 - p)`` with ``p`` the share of true edges among the scored pairs: 0 is chance,
  1 is perfect, negative is worse than chance.
- ``shd``: structural Hamming distance: the number of scored pairs where two binary graphs differ (a reversed
  edge counts twice, once per ordered pair).
- ``expected_calibration_error`` / ``calibration_table``: reliability of edge probabilities (PIPs) pooled over
  pairs and batch entries, equal-width bins on [0, 1].
- ``mse_at_h``: forecast mean squared error over windows and horizons h = 1..H.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import rankdata

from dice_prob.errors import InputTypeError, MetricError

__all__ = [
    "auprc",
    "auroc",
    "calibration_table",
    "expected_calibration_error",
    "mse_at_h",
    "nauprc",
    "shd",
]


# ------------------------------------------------------------------------------------------------ helpers
def _array(x, name: str) -> np.ndarray:
    if x is None or isinstance(x, (str, bytes)):
        raise InputTypeError(f"{name}: expected a numeric array, got {type(x).__name__}")
    try:
        a = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InputTypeError(f"{name}: expected a numeric array ({exc})") from exc
    return a


def _pair_mask(d: int, mask) -> np.ndarray:
    off = ~np.eye(d, dtype=bool)
    if mask is None:
        return off
    m = np.asarray(mask)
    if m.shape != (d, d):
        raise MetricError(f"mask: expected shape ({d}, {d}) matching the score matrices, got {m.shape}")
    return off & m.astype(bool)


def _flatten(scores, truth, mask, *, name="scores"):
    """Scores (B, n) over the scored pairs, truth (B, n) or (1, n), and the batch shape."""
    s = _array(scores, name)
    if s.ndim < 2 or s.shape[-1] != s.shape[-2]:
        raise MetricError(f"{name}: expected shape (..., d, d), got {s.shape}")
    d = s.shape[-1]
    t = _array(truth, "truth")
    if t.ndim < 2 or t.shape[-2:] != (d, d):
        raise MetricError(f"truth: expected shape ({d}, {d}) or {s.shape}, got {t.shape}")
    if not np.all(np.isfinite(s)):
        raise MetricError(f"{name}: contains NaN or inf")
    if not np.all((t == 0) | (t == 1)):
        raise MetricError("truth: must be a binary (0/1) adjacency matrix")
    pairs = _pair_mask(d, mask)
    if not pairs.any():
        raise MetricError("mask: selects no off-diagonal pair; nothing to score")
    batch = s.shape[:-2]
    try:
        t = np.broadcast_to(t, (*batch, d, d)) if t.ndim > 2 else t
    except ValueError:
        raise MetricError(f"truth: shape {t.shape} does not broadcast to the scores' {s.shape}") from None
    sf = s[..., pairs].reshape(-1, int(pairs.sum()))
    tf = t[..., pairs].reshape(-1, int(pairs.sum())) if t.ndim > 2 else t[pairs][None, :]
    n_pos = tf.sum(-1)
    bad = (n_pos == 0) | (n_pos == tf.shape[-1])
    if bad.any():
        which = "no positive" if n_pos[np.argmax(bad)] == 0 else "no negative"
        where = "" if tf.shape[0] == 1 else f" (batch entry {int(np.argmax(bad))})"
        raise MetricError(
            f"truth: has {which} among the {tf.shape[-1]} scored pairs{where}; the metric is undefined — "
            "check the mask or use a graph with both edges and non-edges"
        )
    return sf, tf, batch


def _out(values: np.ndarray, batch: tuple):
    v = values.reshape(batch) if batch else values.reshape(())
    return float(v) if v.ndim == 0 else v


def _auroc_flat(s: np.ndarray, t: np.ndarray) -> np.ndarray:
    t = np.broadcast_to(t, s.shape)
    ranks = rankdata(s, axis=-1, method="average")
    n_pos = t.sum(-1)
    n_neg = t.shape[-1] - n_pos
    return ((ranks * t).sum(-1) - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg)


def _ap_flat(s: np.ndarray, t: np.ndarray) -> np.ndarray:
    t = np.broadcast_to(t, s.shape)
    order = np.argsort(-s, axis=-1, kind="stable")
    ss = np.take_along_axis(s, order, -1)
    ts = np.take_along_axis(t, order, -1)
    n = s.shape[-1]
    tp = np.cumsum(ts, -1)
    precision = tp / np.arange(1, n + 1)
    # the last index of each tie group: precision is evaluated at distinct thresholds
    last = np.ones_like(ss, dtype=bool)
    last[..., :-1] = ss[..., :-1] != ss[..., 1:]
    idx = np.where(last, np.arange(n), n - 1)
    group_end = np.minimum.accumulate(idx[..., ::-1], axis=-1)[..., ::-1]
    prec_at = np.take_along_axis(precision, group_end, -1)
    return (ts * prec_at).sum(-1) / ts.sum(-1)


# ------------------------------------------------------------------------------------------------ graph metrics
def auroc(scores, truth, mask=None):
    """Area under the ROC curve of edge scores against a true graph, over the scored pairs.

    Parameters
    ----------
    scores : array-like, shape (..., d, d)
        Edge scores ``S[..., src, dst]`` (PIPs, influence scores); higher means more likely an edge.
    truth : array-like, shape (d, d) or (..., d, d)
        Binary true adjacency, shared by the batch or one per batch entry.
    mask : array-like of bool, shape (d, d), optional
        Support: only pairs inside it (and off the diagonal) are scored. Default: all off-diagonal pairs.

    Returns
    -------
    float or ndarray
        One AUROC per leading batch entry (a float when ``scores`` is (d, d)). Ties count one half.

    Raises
    ------
    MetricError
        The truth has no positive or no negative among the scored pairs; shapes do not match; NaN scores.

    Examples
    --------
    >>> import numpy as np
    >>> truth = np.array([[0, 1, 0], [0, 0, 1], [0, 0, 0]])
    >>> auroc(truth * 0.9 + 0.05, truth)
    1.0
    >>> auroc(np.stack([truth, 1 - truth]), truth)
    array([1., 0.])
    """
    s, t, batch = _flatten(scores, truth, mask)
    return _out(_auroc_flat(s, t), batch)


def auprc(scores, truth, mask=None):
    """Average precision (sklearn's ``average_precision_score``) of edge scores over the scored pairs.

    Parameters and errors as in :func:`auroc`.

    Examples
    --------
    >>> import numpy as np
    >>> truth = np.array([[0, 1, 0], [0, 0, 1], [0, 0, 0]])
    >>> round(auprc(np.array([[0, 0.9, 0.8], [0.1, 0, 0.7], [0.2, 0.3, 0]]), truth), 4)
    0.8333
    """
    s, t, batch = _flatten(scores, truth, mask)
    return _out(_ap_flat(s, t), batch)


def nauprc(scores, truth, mask=None):
    """Normalised AUPRC: ``(AUPRC - p) / (1 - p)``, ``p`` = share of true edges among the scored pairs.

    0 is chance level, 1 is perfect, negative is worse than chance. Parameters and errors as in :func:`auroc`.

    Examples
    --------
    >>> import numpy as np
    >>> truth = np.array([[0, 1, 0], [0, 0, 1], [0, 0, 0]])
    >>> nauprc(truth.astype(float), truth)
    1.0
    >>> worst = np.array([[0, 0.1, 0.9], [0.8, 0, 0.2], [0.7, 0.6, 0]])  # true edges ranked last
    >>> round(nauprc(worst, truth), 3)
    -0.1
    """
    s, t, batch = _flatten(scores, truth, mask)
    p = np.broadcast_to(t, s.shape).mean(-1)
    return _out((_ap_flat(s, t) - p) / (1.0 - p), batch)


def shd(pred, truth, mask=None):
    """Structural Hamming distance: the number of scored pairs where two binary graphs differ.

    A reversed edge counts twice (one missing and one extra ordered pair). Defined for any truth (no positive
    needed).

    Parameters
    ----------
    pred : array-like, shape (..., d, d)
        Binary predicted graphs (threshold PIPs first, e.g. ``pip > 0.5``).
    truth : array-like, shape (d, d) or (..., d, d)
        Binary true graph(s).
    mask : array-like of bool, shape (d, d), optional
        Support; default all off-diagonal pairs.

    Returns
    -------
    int or ndarray of int

    Examples
    --------
    >>> shd([[0, 1], [0, 0]], [[0, 0], [1, 0]])
    2
    """
    p = _array(pred, "pred")
    if p.ndim < 2 or p.shape[-1] != p.shape[-2]:
        raise MetricError(f"pred: expected shape (..., d, d), got {p.shape}")
    if not np.all((p == 0) | (p == 1)):
        raise MetricError("pred: must be binary (0/1); threshold the scores first, e.g. pip > 0.5")
    t = _array(truth, "truth")
    d = p.shape[-1]
    if t.ndim < 2 or t.shape[-2:] != (d, d):
        raise MetricError(f"truth: expected shape ({d}, {d}) or {p.shape}, got {t.shape}")
    if not np.all((t == 0) | (t == 1)):
        raise MetricError("truth: must be a binary (0/1) adjacency matrix")
    pairs = _pair_mask(d, mask)
    try:
        diff = (np.broadcast_to(p, np.broadcast_shapes(p.shape, t.shape)) != t)[..., pairs]
    except ValueError:
        raise MetricError(f"truth: shape {t.shape} does not broadcast to pred's {p.shape}") from None
    out = diff.sum(-1)
    return int(out) if out.ndim == 0 else out.astype(np.int64)


# ------------------------------------------------------------------------------------------------ calibration
def _calibration_data(probs, truth, mask):
    p = _array(probs, "probs")
    if p.ndim < 2 or p.shape[-1] != p.shape[-2]:
        raise MetricError(f"probs: expected shape (..., d, d), got {p.shape}")
    if not np.all(np.isfinite(p)) or np.any((p < 0) | (p > 1)):
        raise MetricError("probs: must be probabilities in [0, 1] (no NaN)")
    d = p.shape[-1]
    t = _array(truth, "truth")
    if t.ndim < 2 or t.shape[-2:] != (d, d):
        raise MetricError(f"truth: expected shape ({d}, {d}) or {p.shape}, got {t.shape}")
    if not np.all((t == 0) | (t == 1)):
        raise MetricError("truth: must be a binary (0/1) adjacency matrix")
    pairs = _pair_mask(d, mask)
    shape = np.broadcast_shapes(p.shape, t.shape)
    return np.broadcast_to(p, shape)[..., pairs].ravel(), np.broadcast_to(t, shape)[..., pairs].ravel()


def _bins(n_bins) -> np.ndarray:
    if isinstance(n_bins, bool) or not isinstance(n_bins, (int, np.integer)) or n_bins < 1:
        raise MetricError(f"n_bins: must be a positive integer, got {n_bins!r}")
    return np.linspace(0.0, 1.0, int(n_bins) + 1)


def calibration_table(probs, truth, mask=None, n_bins: int = 10) -> pd.DataFrame:
    """Reliability table of edge probabilities, pooled over the scored pairs and all batch entries.

    Parameters
    ----------
    probs : array-like, shape (..., d, d)
        Edge probabilities in [0, 1] (e.g. PIPs, one matrix per shop).
    truth : array-like, shape (d, d) or (..., d, d)
        Binary true graph(s).
    mask : array-like of bool, shape (d, d), optional
    n_bins : int
        Equal-width bins on [0, 1]; the last bin includes 1.

    Returns
    -------
    pandas.DataFrame
        One row per bin: ``bin``, ``lower``, ``upper``, ``count``, ``mean_prob``, ``frac_positive``, ``gap``
        (``|mean_prob - frac_positive|``; NaN for empty bins).

    Examples
    --------
    >>> tab = calibration_table([[0, 0.9], [0.1, 0]], [[0, 1], [0, 0]], n_bins=2)
    >>> tab[["count", "frac_positive"]].values.tolist()
    [[1.0, 0.0], [1.0, 1.0]]
    """
    edges = _bins(n_bins)
    p, t = _calibration_data(probs, truth, mask)
    k = np.clip(np.searchsorted(edges, p, side="right") - 1, 0, len(edges) - 2)
    nb = len(edges) - 1
    count = np.bincount(k, minlength=nb).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_p = np.bincount(k, weights=p, minlength=nb) / count
        frac = np.bincount(k, weights=t, minlength=nb) / count
    return pd.DataFrame(
        {
            "bin": np.arange(nb),
            "lower": edges[:-1],
            "upper": edges[1:],
            "count": count,
            "mean_prob": mean_p,
            "frac_positive": frac,
            "gap": np.abs(mean_p - frac),
        }
    )


def expected_calibration_error(probs, truth, mask=None, n_bins: int = 10) -> float:
    """Expected calibration error: ``sum_b (n_b / N) |mean prob_b - share of true edges_b|``.

    Pooled over the scored pairs and all leading batch entries (e.g. the PIPs of 50 shops); equal-width bins.

    Examples
    --------
    >>> expected_calibration_error([[0, 0.9], [0.1, 0]], [[0, 1], [0, 0]], n_bins=2)
    0.1
    """
    tab = calibration_table(probs, truth, mask, n_bins)
    n = tab["count"].sum()
    used = tab["count"] > 0
    return float(round((tab["count"][used] * tab["gap"][used]).sum() / n, 15))


# ------------------------------------------------------------------------------------------------ forecasting
def mse_at_h(forecast, future, *, node=None):
    """Forecast mean squared error averaged over windows and horizons h = 1..H.

    Parameters
    ----------
    forecast : array-like, shape (..., N, H, d) or (H, d)
        Free-running forecasts: N windows, H steps, d nodes; extra leading dimensions (graph inputs, draws) are
        kept.
    future : array-like, broadcastable to ``forecast``
        The observed futures (e.g. ``Windows.future``, shape (N, H, d)).
    node : int, optional
        Score one node only (e.g. the target index for MSE@7); ``None`` averages over all nodes.

    Returns
    -------
    float or ndarray
        One value per leading dimension beyond (N, H, d).

    Examples
    --------
    >>> import numpy as np
    >>> f = np.zeros((2, 3, 2)); y = np.ones((2, 3, 2)); y[..., 1] = 2.0
    >>> mse_at_h(f, y), mse_at_h(f, y, node=1)
    (2.5, 4.0)
    """
    f = _array(forecast, "forecast")
    y = _array(future, "future")
    if f.ndim < 2:
        raise MetricError(f"forecast: expected shape (..., N, H, d) or (H, d), got {f.shape}")
    try:
        shape = np.broadcast_shapes(f.shape, y.shape)
    except ValueError:
        raise MetricError(f"future: shape {y.shape} does not match the forecast's {f.shape}") from None
    if len(shape) > f.ndim or y.shape[-2:] != f.shape[-2:]:
        raise MetricError(f"future: shape {y.shape} does not match the forecast's {f.shape} (..., H, d)")
    if not (np.all(np.isfinite(f)) and np.all(np.isfinite(y))):
        raise MetricError("forecast/future: contain NaN or inf (a diverging rollout?)")
    err = (f - y) ** 2
    if node is not None:
        if isinstance(node, bool) or not isinstance(node, (int, np.integer)):
            raise InputTypeError(f"node: expected an integer node index or None, got {type(node).__name__}")
        d = f.shape[-1]
        if not -d <= node < d:
            raise MetricError(f"node: index {node} out of range for {d} nodes")
        err = err[..., int(node)][..., None]
    axes = (-3, -2, -1) if f.ndim >= 3 else (-2, -1)
    out = err.mean(axis=axes)
    return float(out) if np.ndim(out) == 0 else out
