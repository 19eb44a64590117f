"""Adjacency conventions, support masks, reach within H hops and networkx conversion.

Convention: ``A[src, dst]`` — row = cause, column = effect. ``A[i, j] = 1`` means a lagged edge ``i -> j``.
The diagonal is never an edge (own-lag effects are separate parameters). A *support mask* has the same shape
and says which pairs may be edges at all.
"""

from __future__ import annotations

from collections.abc import Sequence

import networkx as nx
import numpy as np

from dice_prob.errors import GraphValidationError, InputTypeError

ROLES = ("channel", "intermediate", "target", "control")
#: Roles a node may receive an edge into. Channels (spends) and controls are exogenous roots.
RECEIVING_ROLES = ("intermediate", "target")


def validate_adjacency(
    graph,
    n_nodes: int,
    *,
    name: str = "graph",
    allow_batch: bool = False,
    allow_self_loops: bool = False,
    binary: bool = False,
) -> np.ndarray:
    """Check an adjacency matrix (or a stack of them) and return it as a float64 array.

    Parameters
    ----------
    graph : array-like, shape (d, d) or, with ``allow_batch``, (..., d, d)
        ``graph[src, dst]``; weights allowed unless ``binary``.
    n_nodes : int
        Expected ``d``.
    name : str
        Field name used in error messages.

    Raises
    ------
    GraphValidationError
        Wrong size, non-finite entries, a self-loop (unless allowed), or non-binary entries when ``binary``.

    Examples
    --------
    >>> validate_adjacency([[0, 1], [0, 0]], 2).shape
    (2, 2)
    """
    try:
        a = np.asarray(graph, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InputTypeError(f"{name}: expected a numeric (d, d) array, got {type(graph).__name__}") from exc
    if a.ndim < 2 or a.shape[-2:] != (n_nodes, n_nodes) or (a.ndim > 2 and not allow_batch):
        want = f"(..., {n_nodes}, {n_nodes})" if allow_batch else f"({n_nodes}, {n_nodes})"
        raise GraphValidationError(
            f"{name}: shape {a.shape} does not match the panel's {n_nodes} nodes; pass an array of shape {want} "
            "indexed [src, dst]"
        )
    if not np.all(np.isfinite(a)):
        raise GraphValidationError(f"{name}: contains NaN or inf; replace missing entries with 0 (no edge)")
    if not allow_self_loops:
        diag = np.diagonal(a, axis1=-2, axis2=-1)
        if np.any(diag != 0):
            raise GraphValidationError(
                f"{name}: has non-zero diagonal entries (self-loops); own-lag effects are separate parameters, "
                "set the diagonal to 0"
            )
    if binary and not np.all((a == 0) | (a == 1)):
        raise GraphValidationError(f"{name}: must be binary (0/1); threshold it first, e.g. graph > 0.5")
    return a


def offdiag_mask(n_nodes: int) -> np.ndarray:
    """Boolean (d, d) mask that is True off the diagonal.

    Examples
    --------
    >>> from dice_prob.graph import offdiag_mask
    >>> offdiag_mask(3).astype(int)
    array([[0, 1, 1],
           [1, 0, 1],
           [1, 1, 0]])
    """
    return ~np.eye(n_nodes, dtype=bool)


def support_mask_from_roles(roles: Sequence[str], *, target_is_sink: bool = True) -> np.ndarray:
    """Which pairs ``src -> dst`` may be edges, given node roles.

    Edges go into intermediate and target nodes only (channels and controls are exogenous roots); with
    ``target_is_sink`` the target sends no edge. The diagonal is always False.

    Examples
    --------
    >>> support_mask_from_roles(["channel", "intermediate", "target"]).astype(int)
    array([[0, 1, 1],
           [0, 0, 1],
           [0, 0, 0]])
    """
    roles = list(roles)
    for r in roles:
        if r not in ROLES:
            raise GraphValidationError(f"roles: unknown role {r!r}; use one of {ROLES}")
    recv = np.array([r in RECEIVING_ROLES for r in roles])
    send = np.ones(len(roles), dtype=bool)
    if target_is_sink:
        send = np.array([r != "target" for r in roles])
    mask = send[:, None] & recv[None, :]
    np.fill_diagonal(mask, False)
    return mask


def reach(graph, hops: int) -> np.ndarray:
    """``R[j, i]`` is True when ``j`` reaches ``i`` by a directed path of at most ``hops`` edges (or ``j == i``).

    Parameters
    ----------
    graph : array-like, shape (..., d, d)
        Adjacency ``A[src, dst]``; any non-zero entry counts as an edge.
    hops : int
        Maximum path length ``H >= 0``.

    Examples
    --------
    >>> reach([[0, 1, 0], [0, 0, 1], [0, 0, 0]], 1).astype(int)
    array([[1, 1, 0],
           [0, 1, 1],
           [0, 0, 1]])
    """
    a = np.asarray(graph) != 0
    d = a.shape[-1]
    eye = np.broadcast_to(np.eye(d, dtype=bool), a.shape)
    r = eye.copy()
    step = eye.copy()
    for _ in range(int(hops)):
        step = np.einsum("...ij,...jk->...ik", step.astype(np.int64), a.astype(np.int64)) > 0
        r = r | step
    return r


def density(graph, mask=None) -> float:
    """Share of pairs in ``mask`` (default: off-diagonal) that are edges.

    Examples
    --------
    >>> from dice_prob.graph import density, support_mask_from_roles
    >>> a = [[0, 1, 1], [0, 0, 0], [0, 0, 0]]
    >>> round(density(a), 3)  # 2 of the 6 off-diagonal pairs
    0.333
    >>> density(a, mask=support_mask_from_roles(["channel", "intermediate", "target"]))  # 2 of 3 allowed
    0.6666666666666666
    """
    a = np.asarray(graph) != 0
    m = offdiag_mask(a.shape[-1]) if mask is None else np.asarray(mask, dtype=bool)
    return float(a[..., m].mean())


def to_networkx(graph, nodes: Sequence[str] | None = None, *, threshold: float = 0.0) -> nx.DiGraph:
    """A ``networkx.DiGraph`` with an edge ``src -> dst`` for every entry above ``threshold``.

    Edge attribute ``weight`` holds the matrix entry (a PIP, an effect size or 1).

    Examples
    --------
    >>> g = to_networkx([[0, 0.9], [0.2, 0]], ["tv", "sales"], threshold=0.5)
    >>> list(g.edges(data="weight"))
    [('tv', 'sales', 0.9)]
    """
    a = np.asarray(graph, dtype=np.float64)
    d = a.shape[0]
    names = list(nodes) if nodes is not None else [str(i) for i in range(d)]
    g = nx.DiGraph()
    g.add_nodes_from(names)
    for i in range(d):
        for j in range(d):
            if i != j and a[i, j] > threshold:
                g.add_edge(names[i], names[j], weight=float(a[i, j]))
    return g


def from_networkx(
    g: nx.DiGraph, nodes: Sequence[str] | None = None, *, weight: str | None = None
) -> np.ndarray:
    """The ``(d, d)`` adjacency ``A[src, dst]`` of a directed graph, in the order of ``nodes``.

    Examples
    --------
    >>> import networkx as nx
    >>> from dice_prob.graph import from_networkx
    >>> g = nx.DiGraph()
    >>> g.add_edge("tv", "sales", weight=0.9)
    >>> g.add_edge("search", "sales", weight=0.4)
    >>> from_networkx(g, ["tv", "search", "sales"])
    array([[0., 0., 1.],
           [0., 0., 1.],
           [0., 0., 0.]])
    >>> from_networkx(g, ["tv", "search", "sales"], weight="weight")[:, 2]
    array([0.9, 0.4, 0. ])
    """
    names = list(nodes) if nodes is not None else list(g.nodes)
    index = {n: k for k, n in enumerate(names)}
    a = np.zeros((len(names), len(names)))
    for u, v, data in g.edges(data=True):
        if u not in index or v not in index:
            raise GraphValidationError(f"nodes: edge {u!r} -> {v!r} names a node not in {names}")
        a[index[u], index[v]] = data.get(weight, 1.0) if weight else 1.0
    return a
