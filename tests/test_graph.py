"""graph.py: adjacency validation, support masks, reach, density and networkx conversion."""

from __future__ import annotations

import itertools

import networkx as nx
import numpy as np
import pytest

from dice_prob import graph as G
from dice_prob.errors import GraphValidationError, InputTypeError


# ------------------------------------------------------------------------------------------------ validation
def test_validate_adjacency_ok():
    a = G.validate_adjacency([[0, 0.3], [1, 0]], 2)
    assert a.dtype == np.float64 and a.shape == (2, 2)
    b = G.validate_adjacency(np.zeros((5, 3, 3)), 3, allow_batch=True, binary=True)
    assert b.shape == (5, 3, 3)
    G.validate_adjacency(np.eye(3), 3, allow_self_loops=True)


@pytest.mark.parametrize(
    "graph,kw,msg",
    [
        (np.zeros((3, 3)), {"n_nodes": 4}, r"shape \(3, 3\) does not match the panel's 4 nodes"),
        (np.zeros(4), {"n_nodes": 4}, "shape"),
        (np.zeros((2, 3, 3)), {"n_nodes": 3}, r"\(3, 3\)"),  # batch not allowed
        (np.zeros((2, 3, 4)), {"n_nodes": 3, "allow_batch": True}, r"\(\.\.\., 3, 3\)"),
        (np.array([[0, np.nan], [0, 0]]), {"n_nodes": 2}, "NaN or inf"),
        (np.array([[0, np.inf], [0, 0]]), {"n_nodes": 2}, "NaN or inf"),
        (np.eye(2), {"n_nodes": 2}, "self-loops"),
        (np.array([[0, 0.5], [0, 0]]), {"n_nodes": 2, "binary": True}, "binary"),
    ],
)
def test_validate_adjacency_errors(graph, kw, msg):
    with pytest.raises(GraphValidationError, match=msg):
        G.validate_adjacency(graph, name="pip", **kw)


def test_validate_adjacency_names_field_and_type():
    with pytest.raises(GraphValidationError, match="^oracle:"):
        G.validate_adjacency(np.eye(2), 2, name="oracle")
    with pytest.raises(InputTypeError, match="graph"):
        G.validate_adjacency([[0, "a"], [0, 0]], 2)


# ------------------------------------------------------------------------------------------------ support
def test_support_mask_from_roles():
    roles = ["channel", "channel", "control", "intermediate", "intermediate", "target"]
    m = G.support_mask_from_roles(roles)
    assert m.dtype == bool and m.shape == (6, 6)
    assert not m[:, :3].any()  # nothing flows into channels or controls
    assert not m[5].any()  # the target is a sink
    assert not np.diag(m).any()
    expected = np.zeros((6, 6), bool)
    expected[:5, 3:] = True
    np.fill_diagonal(expected, False)
    np.testing.assert_array_equal(m, expected)
    m2 = G.support_mask_from_roles(roles, target_is_sink=False)
    assert m2[5, 3] and m2[5, 4] and not m2[5, 0]
    with pytest.raises(GraphValidationError, match="unknown role 'kpi'"):
        G.support_mask_from_roles(["channel", "kpi", "target"])


def test_offdiag_and_density():
    np.testing.assert_array_equal(G.offdiag_mask(3), ~np.eye(3, dtype=bool))
    a = np.zeros((4, 4))
    a[0, 1] = a[1, 2] = a[2, 3] = 1
    assert G.density(a) == pytest.approx(3 / 12)
    mask = np.zeros((4, 4), bool)
    mask[0, 1] = mask[0, 2] = True
    assert G.density(a, mask) == pytest.approx(0.5)


# ------------------------------------------------------------------------------------------------ reach
def _reach_matrix_powers(a, hops):
    d = a.shape[-1]
    total = np.eye(d)
    p = np.eye(d)
    for _ in range(hops):
        p = p @ (a != 0).astype(float)
        total = total + p
    return total > 0


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("hops", [0, 1, 2, 3, 7])
def test_reach_against_matrix_powers_and_networkx(seed, hops):
    rng = np.random.default_rng(seed)
    d = 7
    a = (rng.random((d, d)) < 0.25).astype(float) * rng.normal(size=(d, d))  # weighted, signed, with cycles
    np.fill_diagonal(a, 0)
    r = G.reach(a, hops)
    np.testing.assert_array_equal(r, _reach_matrix_powers(a, hops))
    g = nx.from_numpy_array((a != 0).astype(int), create_using=nx.DiGraph)
    lengths = dict(nx.all_pairs_shortest_path_length(g, cutoff=hops))
    for j, i in itertools.product(range(d), range(d)):
        assert r[j, i] == (i in lengths[j]), (j, i)


def test_reach_batched():
    rng = np.random.default_rng(9)
    a = (rng.random((4, 6, 6)) < 0.3).astype(float)
    a[:, np.arange(6), np.arange(6)] = 0
    r = G.reach(a, 2)
    assert r.shape == (4, 6, 6)
    for k in range(4):
        np.testing.assert_array_equal(r[k], G.reach(a[k], 2))


def test_reach_chain():
    chain = np.diag(np.ones(4), 1)  # 0 -> 1 -> 2 -> 3 -> 4
    r = G.reach(chain, 2)
    assert r[0, 2] and not r[0, 3] and not r[2, 0]
    assert G.reach(chain, 4)[0, 4]


# ------------------------------------------------------------------------------------------------ networkx
def test_networkx_round_trip():
    rng = np.random.default_rng(3)
    a = rng.random((5, 5)) * (rng.random((5, 5)) < 0.4)
    np.fill_diagonal(a, 0)
    names = ["tv", "search", "social", "pv", "sales"]
    g = G.to_networkx(a, names)
    assert set(g.nodes) == set(names) and g.number_of_edges() == int((a > 0).sum())
    back = G.from_networkx(g, names, weight="weight")
    np.testing.assert_allclose(back, a)
    binary = G.from_networkx(g, names)
    np.testing.assert_array_equal(binary, (a > 0).astype(float))
    # threshold keeps only the strong edges
    strong = G.to_networkx(a, names, threshold=0.5)
    assert strong.number_of_edges() == int((a > 0.5).sum())
    # a different node order permutes the matrix
    perm = [4, 3, 2, 1, 0]
    np.testing.assert_allclose(
        G.from_networkx(g, [names[k] for k in perm], weight="weight"), a[np.ix_(perm, perm)]
    )
    # default names
    assert list(G.to_networkx(a).nodes) == ["0", "1", "2", "3", "4"]


def test_from_networkx_unknown_node():
    g = nx.DiGraph()
    g.add_edge("tv", "radio")
    with pytest.raises(GraphValidationError, match="radio"):
        G.from_networkx(g, ["tv", "sales"])
