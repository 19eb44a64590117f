"""Readers and writers: CSV panels and CausalMMM's released ``.npy`` layout.

CSV
---
:func:`read_csv` reads a wide (one row per shop and time step, one column per node) or long (shop, time, node,
value) file with ``utf-8-sig`` (a leading byte-order mark is dropped) and hands it to
:meth:`dice_prob.data.panel.Panel.from_frame`. :func:`write_csv` writes :meth:`Panel.to_frame` atomically.

CausalMMM layout
----------------
Three arrays per data set (see ``shared/reference/causalmmm.md`` section 9):

- ``{prefix}_data.npy``: ``[S, N, T]`` (shops, nodes, time), float64;
- ``{prefix}_edges.npy``: ``[S, N (N - 1)]`` 0/1, the off-diagonal entries of an N x N matrix in row-major order
  with **receiver = row, sender = column**: edge ``k`` has receiver ``i = k // (N - 1)``, ``r = k % (N - 1)`` and
  sender ``j = r + 1 if r >= i else r``, i.e. the edge ``j -> i``; in ``dice_prob``'s ``A[src, dst]``
  convention ``A[j, i] = edges[k]``;
- ``{prefix}_context.npy``: ``[S, c]``, float64 (optional when reading).

Conversion happens once, here: data ``[S, N, T]`` <-> ``Panel.values`` (S, T, N), edges <-> (S, N, N).
Arrays are never pickled (``np.load(..., allow_pickle=False)``).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from dice_prob.data.panel import Panel
from dice_prob.errors import DataValidationError, GraphValidationError, InputTypeError
from dice_prob.graph import validate_adjacency

__all__ = [
    "adjacency_to_edges",
    "causalmmm_edge_index",
    "default_causalmmm_roles",
    "edges_to_adjacency",
    "read_causalmmm",
    "read_csv",
    "write_causalmmm",
    "write_csv",
]


# ------------------------------------------------------------------------------------------------ atomic writes
def _atomic_write(path: Path, write) -> None:
    """Call ``write(file_handle)`` on a temporary file in the target folder, then rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def _as_path(path, name: str = "path") -> Path:
    if not isinstance(path, (str, os.PathLike)):
        raise InputTypeError(f"{name}: expected a file path (str or Path), got {type(path).__name__}")
    return Path(path)


# ------------------------------------------------------------------------------------------------ CSV
def read_csv(path, **from_frame_kwargs) -> Panel:
    """Read a CSV file into a :class:`Panel`.

    Parameters
    ----------
    path : str or Path
        A wide or long CSV file (``utf-8`` with or without a byte-order mark).
    **from_frame_kwargs
        Passed to :meth:`Panel.from_frame`: at least ``time=`` and ``target=``; also ``shop``, ``nodes``,
        ``channels``, ``intermediates``, ``controls``, ``context``, ``layout``, ``variable``, ``value``,
        ``train_steps``.

    Raises
    ------
    DataValidationError
        Missing or unreadable file, unknown columns, missing values (naming the column and the first CSV line),
        non-numeric node columns, unbalanced panels.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "d.csv"
    >>> _ = p.write_text("day,tv,sales\\n1,1.0,3.0\\n2,2.0,2.5\\n3,0.5,4.0\\n")
    >>> read_csv(p, time="day", target="sales").shape
    (1, 3, 2)
    """
    p = _as_path(path)
    if not p.is_file():
        raise DataValidationError(f"path: file {str(p)!r} not found; check the path")
    try:
        df = pd.read_csv(p, encoding="utf-8-sig")
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise DataValidationError(f"path: could not parse {str(p)!r} as CSV ({exc})") from exc
    df.columns = [str(c).strip() for c in df.columns]
    if "time" not in from_frame_kwargs or "target" not in from_frame_kwargs:
        raise DataValidationError(
            "read_csv: pass time= (the time column) and target= (the target column); "
            f"columns in {p.name}: {list(df.columns)}"
        )
    # every column that will be used must be complete
    layout = from_frame_kwargs.get("layout", "auto")
    variable = from_frame_kwargs.get("variable", "node")
    value = from_frame_kwargs.get("value", "value")
    keys = [from_frame_kwargs["time"], from_frame_kwargs.get("shop")]
    ctx = list(from_frame_kwargs.get("context") or [])
    is_long = layout == "long" or (layout == "auto" and {variable, value} <= set(df.columns))
    if is_long:
        used = [c for c in [*keys, variable, value, *ctx] if c]
    elif from_frame_kwargs.get("nodes") is not None:
        used = [c for c in [*keys, *from_frame_kwargs["nodes"], *ctx] if c]
    else:
        used = list(df.columns)
    for c in used:
        if c in df.columns and df[c].isna().any():
            row = int(np.flatnonzero(df[c].isna().to_numpy())[0])
            raise DataValidationError(
                f"column {c!r}: {int(df[c].isna().sum())} missing values (first on CSV line {row + 2}); "
                "impute or drop them before loading"
            )
    return Panel.from_frame(df, **from_frame_kwargs)


def write_csv(panel: Panel, path, layout: str = "wide", *, time: str = "time", shop: str = "shop") -> Path:
    """Write a panel to CSV atomically (temporary file, then rename).

    ``wide``: columns ``shop, time``, one per node, then ``context0..``. ``long``: columns ``shop, time, node,
    value`` plus the context columns repeated on every row. Roles are not stored: pass ``target=``,
    ``channels=``/``intermediates=`` to :func:`read_csv` again.

    Examples
    --------
    >>> import tempfile, pathlib, numpy as np
    >>> panel = Panel(np.arange(12.0).reshape(6, 2) ** 1.5, nodes=["tv", "sales"])
    >>> out = write_csv(panel, pathlib.Path(tempfile.mkdtemp()) / "p.csv")
    >>> read_csv(out, time="time", shop="shop", target="sales").shape
    (1, 6, 2)
    """
    if not isinstance(panel, Panel):
        raise InputTypeError(f"panel: expected a Panel, got {type(panel).__name__}")
    p = _as_path(path)
    df = panel.to_frame(layout, time=time, shop=shop)
    if layout == "long" and panel.context is not None:
        ctx = pd.DataFrame(
            panel.context, columns=[f"context{c}" for c in range(panel.context.shape[1])]
        ).assign(**{shop: list(panel.shop_ids)})
        df[shop] = df[shop].astype(object)
        ctx[shop] = ctx[shop].astype(object)
        df = df.merge(ctx, on=shop, how="left", sort=False)
    text = df.to_csv(index=False).encode("utf-8")
    _atomic_write(p, lambda fh: fh.write(text))
    return p


# ------------------------------------------------------------------------------------------------ CausalMMM edges
def causalmmm_edge_index(n_nodes: int) -> tuple[np.ndarray, np.ndarray]:
    """Receiver and sender index of every CausalMMM edge ``k`` (length ``N (N - 1)``).

    Examples
    --------
    >>> recv, send = causalmmm_edge_index(8)
    >>> [(int(send[k]), int(recv[k])) for k in (0, 6, 7, 55)]  # (sender, receiver) = sender -> receiver
    [(1, 0), (7, 0), (0, 1), (6, 7)]
    """
    if isinstance(n_nodes, bool) or not isinstance(n_nodes, (int, np.integer)) or n_nodes < 2:
        raise GraphValidationError(f"n_nodes: must be an integer >= 2, got {n_nodes!r}")
    n = int(n_nodes)
    k = np.arange(n * (n - 1))
    recv = k // (n - 1)
    r = k % (n - 1)
    send = np.where(r >= recv, r + 1, r)
    return recv, send


def adjacency_to_edges(graph) -> np.ndarray:
    """``A[..., src, dst]`` (..., N, N) -> CausalMMM edge vectors (..., N (N - 1)) with ``edges[k] = A[j, i]``.

    Examples
    --------
    >>> import numpy as np
    >>> A = np.zeros((3, 3)); A[1, 0] = 1; A[0, 2] = 1   # 1 -> 0 and 0 -> 2
    >>> adjacency_to_edges(A)
    array([1., 0., 0., 0., 1., 0.])
    """
    a = np.asarray(graph, dtype=np.float64)
    if a.ndim < 2 or a.shape[-1] != a.shape[-2]:
        raise GraphValidationError(f"graph: expected shape (..., N, N), got {a.shape}")
    recv, send = causalmmm_edge_index(a.shape[-1])
    return a[..., send, recv]


def edges_to_adjacency(edges, n_nodes: int) -> np.ndarray:
    """CausalMMM edge vectors (..., N (N - 1)) -> ``A[..., src, dst]`` (..., N, N), zero diagonal.

    Examples
    --------
    >>> edges_to_adjacency([1, 0, 0, 0, 1, 0], 3).astype(int)
    array([[0, 0, 1],
           [1, 0, 0],
           [0, 0, 0]])
    """
    e = np.asarray(edges, dtype=np.float64)
    recv, send = causalmmm_edge_index(n_nodes)
    if e.ndim < 1 or e.shape[-1] != recv.size:
        raise GraphValidationError(
            f"edges: last axis has {e.shape[-1] if e.ndim else 0} entries, but {n_nodes} nodes need "
            f"N (N - 1) = {recv.size}"
        )
    a = np.zeros((*e.shape[:-1], n_nodes, n_nodes))
    a[..., send, recv] = e
    return a


def default_causalmmm_roles(n_nodes: int) -> list[str]:
    """Roles of CausalMMM's released funnel: nodes ``0 .. N-4`` channels, ``N-3, N-2`` intermediate, last target.

    With fewer than 4 nodes there are no channels (``N = 3``: two intermediates; ``N = 2``: one).

    Examples
    --------
    >>> default_causalmmm_roles(5)
    ['channel', 'channel', 'intermediate', 'intermediate', 'target']
    """
    n = int(n_nodes)
    n_mid = min(2, n - 1)
    return ["channel"] * (n - 1 - n_mid) + ["intermediate"] * n_mid + ["target"]


# ------------------------------------------------------------------------------------------------ CausalMMM files
def _files(directory, prefix: str) -> dict[str, Path]:
    d = _as_path(directory, "directory")
    if not isinstance(prefix, str) or not prefix:
        raise InputTypeError(f"prefix: expected a non-empty string, got {prefix!r}")
    return {k: d / f"{prefix}_{k}.npy" for k in ("data", "edges", "context")}


def write_causalmmm(directory, panel: Panel, graphs, prefix: str = "shuffled") -> dict[str, Path]:
    """Write a panel and its graph(s) in CausalMMM's layout (float64 ``.npy``, atomic, never pickled).

    Parameters
    ----------
    directory : str or Path
        Output folder (created if missing).
    panel : Panel
        Values (S, T, N) -> ``{prefix}_data.npy`` [S, N, T]; context (S, c) -> ``{prefix}_context.npy`` (an
        (S, 0) array when the panel has no context). CausalMMM's own code expects the target as the last node.
    graphs : array-like, (N, N) or (S, N, N)
        Binary ``A[src, dst]``, one shared or one per shop -> ``{prefix}_edges.npy`` [S, N (N - 1)].

    Returns
    -------
    dict
        ``{"data": path, "edges": path, "context": path}``.

    Examples
    --------
    >>> import tempfile, numpy as np
    >>> panel = Panel(np.random.default_rng(0).normal(size=(2, 10, 3)))
    >>> paths = write_causalmmm(tempfile.mkdtemp(), panel, np.eye(3)[[1, 2, 0]] * [1, 1, 0])
    >>> np.load(paths["edges"]).shape, np.load(paths["data"]).shape
    ((2, 6), (2, 3, 10))
    """
    if not isinstance(panel, Panel):
        raise InputTypeError(f"panel: expected a Panel, got {type(panel).__name__}")
    files = _files(directory, prefix)
    s, _, n = panel.shape
    g = validate_adjacency(graphs, n, name="graphs", allow_batch=True, binary=True)
    if g.ndim == 2:
        g = np.broadcast_to(g, (s, n, n))
    if g.shape != (s, n, n):
        raise GraphValidationError(f"graphs: expected shape ({n}, {n}) or ({s}, {n}, {n}), got {g.shape}")
    arrays = {
        "data": np.ascontiguousarray(np.transpose(panel.values, (0, 2, 1)), dtype=np.float64),
        "edges": np.ascontiguousarray(adjacency_to_edges(g), dtype=np.float64),
        "context": np.zeros((s, 0))
        if panel.context is None
        else np.ascontiguousarray(panel.context, dtype=np.float64),
    }
    for k, arr in arrays.items():
        _atomic_write(files[k], lambda fh, arr=arr: np.save(fh, arr, allow_pickle=False))
    return files


def _load(path: Path, name: str) -> np.ndarray:
    if not path.is_file():
        raise DataValidationError(f"{name}: file {str(path)!r} not found; check the directory and prefix")
    try:
        arr = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise DataValidationError(
            f"{name}: could not read {str(path)!r} as a numeric .npy array ({exc})"
        ) from exc
    if not isinstance(arr, np.ndarray) or not np.issubdtype(arr.dtype, np.number):
        raise DataValidationError(f"{name}: {str(path)!r} does not hold a numeric array")
    return arr.astype(np.float64)


def read_causalmmm(
    directory,
    prefix: str = "shuffled",
    roles: Sequence[str] | None = None,
    *,
    nodes: Sequence[str] | None = None,
) -> tuple[Panel, np.ndarray]:
    """Read CausalMMM's ``.npy`` triplet into a :class:`Panel` (S, T, N) and true graphs (S, N, N).

    Parameters
    ----------
    directory : str or Path
        Folder holding ``{prefix}_data.npy``, ``{prefix}_edges.npy`` and (optional) ``{prefix}_context.npy``.
    prefix : str
        File prefix (``"shuffled"`` in the release).
    roles : sequence of str, optional
        Node roles; default :func:`default_causalmmm_roles` (nodes ``0..N-4`` channel, ``N-3..N-2``
        intermediate, last target), the release's funnel.
    nodes : sequence of str, optional
        Node names (default ``x0 .. x{N-1}``).

    Raises
    ------
    DataValidationError
        Missing files, non-numeric or pickled arrays, inconsistent shapes, non-binary edges, NaN values.

    Examples
    --------
    >>> import tempfile, numpy as np
    >>> d = tempfile.mkdtemp()
    >>> A = np.zeros((4, 4)); A[0, 2] = A[2, 3] = 1
    >>> _ = write_causalmmm(d, Panel(np.random.default_rng(0).normal(size=(2, 20, 4))), A)
    >>> panel, graphs = read_causalmmm(d)
    >>> panel.roles, bool((graphs == A).all())
    (('channel', 'intermediate', 'intermediate', 'target'), True)
    """
    files = _files(directory, prefix)
    data = _load(files["data"], "data")
    edges = _load(files["edges"], "edges")
    if data.ndim != 3:
        raise DataValidationError(f"data: expected shape [S, N, T] (shops, nodes, time), got {data.shape}")
    s, n, _ = data.shape
    if n < 2:
        raise DataValidationError(f"data: need at least 2 nodes, got shape {data.shape}")
    if edges.shape != (s, n * (n - 1)):
        raise DataValidationError(
            f"edges: expected shape [S, N (N - 1)] = ({s}, {n * (n - 1)}) for data of shape {data.shape}, "
            f"got {edges.shape}"
        )
    if not np.all((edges == 0) | (edges == 1)):
        raise DataValidationError("edges: entries must be 0 or 1")
    context = None
    if files["context"].is_file():
        ctx = _load(files["context"], "context")
        if ctx.ndim != 2 or ctx.shape[0] != s:
            raise DataValidationError(f"context: expected shape [S, c] = ({s}, c), got {ctx.shape}")
        context = ctx if ctx.shape[1] > 0 else None
    role_list = default_causalmmm_roles(n) if roles is None else list(roles)
    if len(role_list) != n:
        raise DataValidationError(f"roles: {len(role_list)} roles for {n} nodes; give one role per node")
    names = [f"x{k}" for k in range(n)] if nodes is None else list(nodes)
    panel = Panel(np.transpose(data, (0, 2, 1)), names, role_list, context)
    return panel, edges_to_adjacency(edges, n)
