"""CSV and CausalMMM-layout readers/writers: round trips, edge order, bad files."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from dice_prob.data import io, simulate
from dice_prob.data.panel import Panel
from dice_prob.errors import DataValidationError, GraphValidationError, InputTypeError

NODES = ["tv", "search", "pv", "sales"]
ROLES = ["channel", "channel", "intermediate", "target"]
KW = {
    "time": "time",
    "shop": "shop",
    "target": "sales",
    "channels": ["tv", "search"],
    "intermediates": ["pv"],
}


@pytest.fixture()
def panel():
    rng = np.random.default_rng(0)
    return Panel(rng.normal(size=(3, 15, 4)) + 2, NODES, ROLES, rng.random((3, 2)), shop_ids=[10, 20, 30])


# ------------------------------------------------------------------------------------------------ CSV
def test_csv_round_trip_wide(panel, tmp_path):
    path = io.write_csv(panel, tmp_path / "sub" / "panel.csv")
    assert path.exists() and not list(path.parent.glob(".*tmp"))
    back = io.read_csv(path, context=["context0", "context1"], **KW)
    np.testing.assert_allclose(back.values, panel.values, rtol=1e-12)
    np.testing.assert_allclose(back.context, panel.context, rtol=1e-12)
    assert back.nodes == panel.nodes and back.roles == panel.roles and back.shop_ids == panel.shop_ids


def test_csv_round_trip_long(panel, tmp_path):
    path = io.write_csv(panel, tmp_path / "long.csv", layout="long")
    back = io.read_csv(path, layout="long", context=["context0", "context1"], **KW)
    np.testing.assert_allclose(back.values, panel.values, rtol=1e-12)
    np.testing.assert_allclose(back.context, panel.context, rtol=1e-12)
    assert back.nodes == panel.nodes and back.roles == panel.roles


def test_csv_bom_and_unsorted_rows(tmp_path):
    # AirMMM-style: BOM, yyyymmdd dates out of order, two shops
    rows = ["shop_id,ds,x0,pv,gmv"]
    rng = np.random.default_rng(1)
    data = {}
    for shop in (7, 9):
        for day in (20220103, 20220101, 20220102, 20220104):
            v = rng.random(3)
            data[(shop, day)] = v
            rows.append(f"{shop},{day},{v[0]},{v[1]},{v[2]}")
    path = tmp_path / "air.csv"
    path.write_bytes(("\ufeff" + "\n".join(rows) + "\n").encode("utf-8"))
    p = io.read_csv(path, time="ds", shop="shop_id", target="gmv", intermediates=["pv"])
    assert p.nodes == ("x0", "pv", "gmv") and p.shape == (2, 4, 3) and p.shop_ids == (7, 9)
    assert p.time_index == (20220101, 20220102, 20220103, 20220104)
    np.testing.assert_allclose(p.values[1, 2], data[(9, 20220103)])


def test_csv_errors(panel, tmp_path):
    with pytest.raises(DataValidationError, match="path: file .* not found"):
        io.read_csv(tmp_path / "missing.csv", **KW)
    with pytest.raises(InputTypeError, match="path"):
        io.read_csv(12, **KW)
    path = io.write_csv(panel, tmp_path / "p.csv")
    with pytest.raises(DataValidationError, match="time="):
        io.read_csv(path, target="sales")
    with pytest.raises(DataValidationError, match=r"columns \['date'\] not found"):
        io.read_csv(path, time="date", shop="shop", target="sales")
    with pytest.raises(DataValidationError, match="target: 'gmv'"):
        io.read_csv(path, time="time", shop="shop", target="gmv")
    # NaN: named column and CSV line
    text = path.read_text().splitlines()
    cells = text[3].split(",")
    cells[3] = ""  # the 'search' cell of data row 3 (CSV line 4)
    text[3] = ",".join(cells)
    bad = tmp_path / "nan.csv"
    bad.write_text("\n".join(text) + "\n")
    with pytest.raises(
        DataValidationError, match=r"column 'search': 1 missing values \(first on CSV line 4\)"
    ):
        io.read_csv(bad, **KW)
    # non-numeric cell
    cells = text[5].split(",")
    cells[2] = "n/a-ish"
    text[5] = ",".join(cells)
    bad.write_text("\n".join(text) + "\n")
    with pytest.raises(DataValidationError, match="not numeric|missing values"):
        io.read_csv(bad, **KW)
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(DataValidationError, match="could not parse"):
        io.read_csv(empty, **KW)
    with pytest.raises(InputTypeError, match="panel"):
        io.write_csv(np.zeros((2, 3)), tmp_path / "x.csv")


# ------------------------------------------------------------------------------------------------ edge layout
def test_edge_order_worked_examples():
    n = 8
    recv, send = io.causalmmm_edge_index(n)
    assert recv.size == 56
    for k, (j, i) in {0: (1, 0), 6: (7, 0), 7: (0, 1), 55: (6, 7)}.items():
        assert (send[k], recv[k]) == (j, i)
        e = np.zeros(56)
        e[k] = 1
        a = io.edges_to_adjacency(e, n)
        assert a[j, i] == 1 and a.sum() == 1  # edge k is j -> i: A[src=j, dst=i]
        np.testing.assert_array_equal(io.adjacency_to_edges(a), e)


def test_edge_order_brute_force():
    n = 5
    k = 0
    for i in range(n):  # receiver = row of the N x N matrix, row-major, diagonal skipped
        for j in range(n):
            if i == j:
                continue
            a = np.zeros((n, n))
            a[j, i] = 1
            assert np.flatnonzero(io.adjacency_to_edges(a)).tolist() == [k]
            k += 1


def test_edges_round_trip_batched():
    rng = np.random.default_rng(2)
    a = (rng.random((3, 4, 6, 6)) < 0.3).astype(float)
    a[..., np.arange(6), np.arange(6)] = 0
    e = io.adjacency_to_edges(a)
    assert e.shape == (3, 4, 30)
    np.testing.assert_array_equal(io.edges_to_adjacency(e, 6), a)
    with pytest.raises(GraphValidationError, match="edges"):
        io.edges_to_adjacency(np.zeros(29), 6)
    with pytest.raises(GraphValidationError, match="graph"):
        io.adjacency_to_edges(np.zeros((3, 4)))
    with pytest.raises(GraphValidationError, match="n_nodes"):
        io.causalmmm_edge_index(1)


def test_default_roles():
    assert io.default_causalmmm_roles(8) == ["channel"] * 5 + ["intermediate"] * 2 + ["target"]
    assert io.default_causalmmm_roles(3) == ["intermediate", "intermediate", "target"]
    assert io.default_causalmmm_roles(2) == ["intermediate", "target"]


# ------------------------------------------------------------------------------------------------ CausalMMM files
def test_causalmmm_round_trip_simulated(tmp_path):
    sim = simulate.funnel(jax.random.key(0), n_shops=6, n_steps=100)
    files = io.write_causalmmm(tmp_path, sim.panel, sim.graph)
    data, edges, ctx = (np.load(files[k], allow_pickle=False) for k in ("data", "edges", "context"))
    assert data.shape == (6, 8, 100) and edges.shape == (6, 56) and ctx.shape == (6, 2)
    assert data.dtype == edges.dtype == ctx.dtype == np.float64
    assert files["data"].name == "shuffled_data.npy"
    np.testing.assert_array_equal(data[2, :, 5], sim.panel.values[2, 5])
    panel, graphs = io.read_causalmmm(tmp_path)
    np.testing.assert_array_equal(panel.values, sim.panel.values)
    np.testing.assert_array_equal(graphs, sim.graphs)
    np.testing.assert_array_equal(panel.context, sim.panel.context)
    assert panel.roles == sim.panel.roles and panel.nodes[0] == "x0"
    # the release's funnel: nothing flows into root channels, the target is a sink
    assert not edges.reshape(6, 8, 7)[:, :5].any()


def test_causalmmm_shared_graph_prefix_and_roles(tmp_path):
    rng = np.random.default_rng(0)
    panel = Panel(rng.normal(size=(2, 12, 4)))  # no context
    a = np.zeros((4, 4))
    a[0, 3] = a[1, 2] = 1
    io.write_causalmmm(tmp_path, panel, a, prefix="mine")
    assert np.load(tmp_path / "mine_context.npy").shape == (2, 0)
    back, graphs = io.read_causalmmm(
        tmp_path, prefix="mine", roles=["channel", "channel", "intermediate", "target"]
    )
    assert back.context is None and graphs.shape == (2, 4, 4)
    np.testing.assert_array_equal(graphs[1], a)
    (tmp_path / "mine_context.npy").unlink()  # context is optional
    back, _ = io.read_causalmmm(tmp_path, prefix="mine", nodes=list("abcd"))
    assert back.nodes == ("a", "b", "c", "d")


def test_causalmmm_bad_files(tmp_path):
    rng = np.random.default_rng(0)
    with pytest.raises(DataValidationError, match="data: file .* not found"):
        io.read_causalmmm(tmp_path)
    np.save(tmp_path / "shuffled_data.npy", rng.normal(size=(3, 4, 20)))
    with pytest.raises(DataValidationError, match="edges: file"):
        io.read_causalmmm(tmp_path)
    np.save(tmp_path / "shuffled_edges.npy", np.zeros((3, 11)))
    with pytest.raises(DataValidationError, match=r"edges: expected shape \[S, N \(N - 1\)\] = \(3, 12\)"):
        io.read_causalmmm(tmp_path)
    np.save(tmp_path / "shuffled_edges.npy", np.full((3, 12), 0.5))
    with pytest.raises(DataValidationError, match="edges: entries must be 0 or 1"):
        io.read_causalmmm(tmp_path)
    np.save(tmp_path / "shuffled_edges.npy", np.zeros((3, 12)))
    np.save(tmp_path / "shuffled_context.npy", np.zeros((2, 2)))
    with pytest.raises(DataValidationError, match="context: expected shape"):
        io.read_causalmmm(tmp_path)
    np.save(tmp_path / "shuffled_context.npy", np.zeros((3, 2)))
    with pytest.raises(DataValidationError, match="roles: 3 roles for 4"):
        io.read_causalmmm(tmp_path, roles=["channel", "intermediate", "target"])
    assert io.read_causalmmm(tmp_path)[0].shape == (3, 20, 4)
    # pickled object arrays are refused
    np.save(tmp_path / "shuffled_data.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(DataValidationError, match="data: could not read"):
        io.read_causalmmm(tmp_path)
    np.save(tmp_path / "shuffled_data.npy", rng.normal(size=(3, 20)))
    with pytest.raises(DataValidationError, match=r"data: expected shape \[S, N, T\]"):
        io.read_causalmmm(tmp_path)
    (tmp_path / "shuffled_data.npy").write_bytes(b"not numpy")
    with pytest.raises(DataValidationError, match="data: could not read"):
        io.read_causalmmm(tmp_path)
    nan = rng.normal(size=(3, 4, 20))
    nan[1, 2, 3] = np.nan
    np.save(tmp_path / "shuffled_data.npy", nan)
    with pytest.raises(DataValidationError, match="NaN"):
        io.read_causalmmm(tmp_path)


def test_write_causalmmm_errors(tmp_path):
    panel = Panel(np.random.default_rng(0).normal(size=(2, 12, 4)))
    with pytest.raises(GraphValidationError, match="graphs"):
        io.write_causalmmm(tmp_path, panel, np.zeros((3, 3)))
    with pytest.raises(GraphValidationError, match="graphs"):
        io.write_causalmmm(tmp_path, panel, np.zeros((3, 4, 4)))
    with pytest.raises(GraphValidationError, match="binary"):
        io.write_causalmmm(tmp_path, panel, np.full((4, 4), 0.5) * (1 - np.eye(4)))
    with pytest.raises(InputTypeError, match="panel"):
        io.write_causalmmm(tmp_path, np.zeros((2, 4, 12)), np.zeros((4, 4)))
    with pytest.raises(InputTypeError, match="prefix"):
        io.write_causalmmm(tmp_path, panel, np.zeros((4, 4)), prefix="")
    assert not list(tmp_path.iterdir())  # nothing half-written
