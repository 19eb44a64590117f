"""Panel: every bad input raises a dice_prob error naming the field; frames round-trip; standardisation."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from dice_prob.data.panel import Panel
from dice_prob.errors import DataValidationError, InputTypeError

NODES = ["tv", "search", "pv", "sales"]
ROLES = ["channel", "channel", "intermediate", "target"]


@pytest.fixture()
def values():
    return np.random.default_rng(0).normal(size=(3, 20, 4)) + 5.0


@pytest.fixture()
def panel(values):
    ctx = np.random.default_rng(1).random((3, 2))
    return Panel(values, NODES, ROLES, ctx, train_steps=15, shop_ids=["a", "b", "c"])


# ------------------------------------------------------------------------------------------------ construction
def test_basic_properties(panel, values):
    assert panel.shape == (3, 20, 4) and panel.n_shops == 3 and panel.n_steps == 20 and panel.n_nodes == 4
    assert panel.target == "sales" and panel.target_index == 3
    np.testing.assert_array_equal(panel.indices("channel"), [0, 1])
    assert panel.node_index("pv") == 2
    np.testing.assert_array_equal(panel.values, values)
    with pytest.raises(ValueError):
        panel.values[0, 0, 0] = 1.0  # read-only
    mask = panel.support_mask()
    assert mask[0, 2] and mask[2, 3] and not mask[3, 2] and not mask[2, 0]
    assert "sales" in repr(panel)


def test_two_dimensional_values_is_one_shop():
    p = Panel(np.random.default_rng(0).normal(size=(10, 3)))
    assert p.shape == (1, 10, 3) and p.nodes == ("x0", "x1", "x2") and p.roles[-1] == "target"


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_values(values, bad):
    values[1, 4, 2] = bad
    with pytest.raises(DataValidationError, match=r"values: 1 NaN/inf.*shop 1, time 4, node 2"):
        Panel(values, NODES, ROLES)


@pytest.mark.parametrize("shape", [(5,), (2, 3, 4, 5), (1, 1, 3), (1, 5, 1), (0, 5, 3)])
def test_wrong_value_shapes(shape):
    with pytest.raises(DataValidationError, match="values"):
        Panel(np.random.default_rng(0).normal(size=shape))


def test_non_numeric_values():
    with pytest.raises(InputTypeError, match="values"):
        Panel([[1.0, 2.0], [3.0, "x"]])
    with pytest.raises(InputTypeError, match="values"):
        Panel("not an array")
    with pytest.raises(InputTypeError, match="values"):
        Panel(None)


def test_node_names(values):
    with pytest.raises(DataValidationError, match="nodes: 3 names for 4"):
        Panel(values, NODES[:3], ROLES)
    with pytest.raises(DataValidationError, match=r"nodes: duplicate names \['tv'\]"):
        Panel(values, ["tv", "tv", "pv", "sales"], ROLES)
    p = Panel(values, NODES, ROLES)
    with pytest.raises(DataValidationError, match="node 'radio' is not in the panel"):
        p.node_index("radio")
    with pytest.raises(DataValidationError, match="radio"):
        p.inverse_transform(np.zeros(3), node="radio")


@pytest.mark.parametrize(
    "roles,msg",
    [
        (["channel", "channel", "intermediate"], "roles: 3 roles for 4"),
        (["channel", "channel", "mid", "target"], "roles: unknown roles"),
        (
            ["channel", "channel", "intermediate", "intermediate"],
            "exactly one node must have role 'target', found 0",
        ),
        (["target", "channel", "intermediate", "target"], "found 2"),
    ],
)
def test_wrong_roles(values, roles, msg):
    with pytest.raises(DataValidationError, match=msg):
        Panel(values, NODES, roles)


def test_constant_node(values):
    values[:, :, 1] = 7.0
    with pytest.raises(DataValidationError, match=r"node\(s\) \['search'\] are constant"):
        Panel(values, NODES, ROLES)
    # constant only over the training window
    v2 = np.random.default_rng(0).normal(size=(2, 20, 4))
    v2[:, :10, 0] = 1.0
    with pytest.raises(DataValidationError, match="training window"):
        Panel(v2, NODES, ROLES, train_steps=10)
    Panel(v2, NODES, ROLES, train_steps=12)


def test_context_validation(values):
    with pytest.raises(DataValidationError, match=r"context: expected shape \(3, c\)"):
        Panel(values, NODES, ROLES, context=np.ones((2, 2)))
    with pytest.raises(DataValidationError, match="context: contains NaN"):
        Panel(values, NODES, ROLES, context=np.array([[1.0], [np.nan], [2.0]]))
    with pytest.raises(InputTypeError, match="context"):
        Panel(values, NODES, ROLES, context="big")
    p = Panel(values, NODES, ROLES, context=[1.0, 2.0, 3.0])  # 1-D: one column per shop
    assert p.context.shape == (3, 1)


def test_train_steps_and_labels(values):
    for ts in (1, 21):
        with pytest.raises(DataValidationError, match="train_steps"):
            Panel(values, NODES, ROLES, train_steps=ts)
    with pytest.raises(DataValidationError, match="shop_ids: 2 labels for 3 shops"):
        Panel(values, NODES, ROLES, shop_ids=["a", "b"])
    with pytest.raises(DataValidationError, match="time_index: 3 labels for 20"):
        Panel(values, NODES, ROLES, time_index=[1, 2, 3])


def test_require_steps_and_nonnegative(panel, values):
    panel.require_steps(20, "lags 7 + horizon 7")
    with pytest.raises(
        DataValidationError, match=r"values: 20 time steps, but lags 7 \+ horizon 7 needs at least 21"
    ):
        panel.require_steps(21, "lags 7 + horizon 7")
    panel.require_nonnegative()
    values[2, 3, 1] = -0.5
    neg = Panel(values, NODES, ROLES)
    with pytest.raises(DataValidationError, match=r"channel node\(s\) \['search'\] have negative values"):
        neg.require_nonnegative("channel")
    neg.require_nonnegative("target")  # the target may be anything


# ------------------------------------------------------------------------------------------------ standardisation
def test_standardisation_fitted_on_train_steps(panel, values):
    train = values[:, :15].reshape(-1, 4)
    np.testing.assert_allclose(panel.mean_, train.mean(0))
    np.testing.assert_allclose(panel.scale_, train.std(0))
    sc = panel.scaled
    np.testing.assert_allclose(sc[:, :15].reshape(-1, 4).mean(0), 0.0, atol=1e-12)
    np.testing.assert_allclose(sc[:, :15].reshape(-1, 4).std(0), 1.0)
    assert not np.allclose(sc.reshape(-1, 4).mean(0), 0.0, atol=1e-3)  # the held-out part is not fitted
    np.testing.assert_allclose(panel.inverse_transform(sc), values)
    np.testing.assert_allclose(panel.inverse_transform(sc[..., 3], node="sales"), values[..., 3])
    np.testing.assert_allclose(panel.inverse_transform(sc[..., 2], node=2), values[..., 2])


def test_subset(panel):
    sub = panel.subset([0, 2])
    assert sub.shape == (2, 20, 4) and sub.shop_ids == ("a", "c") and sub.context.shape == (2, 2)
    np.testing.assert_array_equal(sub.values, panel.values[[0, 2]])
    assert panel.subset(1).shape == (1, 20, 4)


# ------------------------------------------------------------------------------------------------ frames
def _kw():
    return {
        "time": "time",
        "shop": "shop",
        "target": "sales",
        "channels": ["tv", "search"],
        "intermediates": ["pv"],
    }


def test_wide_round_trip(panel):
    df = panel.to_frame("wide")
    assert list(df.columns) == ["shop", "time", *NODES, "context0", "context1"]
    back = Panel.from_frame(
        df.sample(frac=1.0, random_state=0), context=["context0", "context1"], train_steps=15, **_kw()
    )
    np.testing.assert_allclose(back.values, panel.values)
    np.testing.assert_allclose(back.context, panel.context)
    assert back.roles == panel.roles and back.nodes == panel.nodes and back.shop_ids == panel.shop_ids
    np.testing.assert_allclose(back.mean_, panel.mean_)


def test_long_round_trip(panel):
    df = panel.to_frame("long")
    assert list(df.columns) == ["shop", "time", "node", "value"] and len(df) == 3 * 20 * 4
    back = Panel.from_frame(df, **_kw())
    np.testing.assert_allclose(back.values, panel.values)
    assert back.roles == panel.roles and back.nodes == panel.nodes  # node order kept (pivot sorts names)
    with pytest.raises(DataValidationError, match="layout"):
        panel.to_frame("tall")


def test_from_frame_default_roles_and_single_shop(values):
    df = Panel(values[0], NODES, ROLES).to_frame("wide").drop(columns="shop")
    p = Panel.from_frame(df, time="time", target="sales")
    assert p.shape == (1, 20, 4) and p.roles == ("channel", "channel", "channel", "target")


def test_from_frame_errors(panel):
    wide = panel.to_frame("wide").drop(columns=["context0", "context1"])
    long = panel.to_frame("long")
    with pytest.raises(InputTypeError, match="df"):
        Panel.from_frame(wide.to_numpy(), time="time", target="sales")
    with pytest.raises(DataValidationError, match=r"columns \['day'\] not found"):
        Panel.from_frame(wide, time="day", shop="shop", target="sales")
    with pytest.raises(DataValidationError, match="target: 'gmv' is not among the node columns"):
        Panel.from_frame(wide, time="time", shop="shop", target="gmv")
    with pytest.raises(DataValidationError, match=r"channels: unknown node names \['radio'\]"):
        Panel.from_frame(wide, time="time", shop="shop", target="sales", channels=["radio"])
    with pytest.raises(DataValidationError, match=r"intermediates: unknown"):
        Panel.from_frame(wide, time="time", shop="shop", target="sales", intermediates=["clicks"])
    with pytest.raises(DataValidationError, match=r"columns \['radio'\] not found"):
        Panel.from_frame(wide, time="time", shop="shop", target="sales", nodes=["tv", "radio", "sales"])
    with pytest.raises(DataValidationError, match="context: columns"):
        Panel.from_frame(long, time="time", shop="shop", target="sales", context=["size"])
    with pytest.raises(DataValidationError, match="layout"):
        Panel.from_frame(wide, time="time", target="sales", layout="tall")
    # duplicate rows
    with pytest.raises(DataValidationError, match=r"rows: duplicate \(shop, time\)"):
        Panel.from_frame(pd.concat([wide, wide.iloc[:1]]), time="time", shop="shop", target="sales")
    with pytest.raises(DataValidationError, match="rows: duplicate"):
        Panel.from_frame(pd.concat([long, long.iloc[:1]]), time="time", shop="shop", target="sales")
    with pytest.raises(DataValidationError, match=r"columns \['shop'\] are not numeric"):
        Panel.from_frame(wide, time="time", target="sales")  # string shop ids but no shop= column
    with pytest.raises(DataValidationError, match=r"rows: duplicate \(shop, time\)"):
        Panel.from_frame(
            wide.drop(columns="shop"), time="time", target="sales"
        )  # several shops, no shop column
    # unbalanced
    with pytest.raises(DataValidationError, match="do not cover all 20 time steps"):
        Panel.from_frame(wide.drop(index=5), time="time", shop="shop", target="sales")
    with pytest.raises(DataValidationError, match=r"rows: the long frame has no 'value' .* node='tv'"):
        Panel.from_frame(long.drop(index=3), time="time", shop="shop", target="sales")
    # non-numeric columns
    bad = wide.assign(tv=wide["tv"].astype(str) + "eur")
    with pytest.raises(DataValidationError, match=r"columns \['tv'\] are not numeric"):
        Panel.from_frame(bad, time="time", shop="shop", target="sales")
    with pytest.raises(DataValidationError, match=r"columns \['tv'\] are not numeric"):
        Panel.from_frame(bad, time="time", shop="shop", target="sales", nodes=NODES)
    # NaN in a node column reaches the Panel check
    nan = wide.copy()
    nan.loc[7, "pv"] = np.nan
    with pytest.raises(DataValidationError, match="NaN"):
        Panel.from_frame(nan, time="time", shop="shop", target="sales")


def test_shop_centring_removes_each_shops_training_level():
    rng = np.random.default_rng(3)
    levels = np.array([0.0, 5.0, -3.0])[:, None, None]  # three shops at very different levels
    raw = levels + rng.normal(size=(3, 40, 4)) * np.array([1.0, 2.0, 0.5, 1.5])
    pooled = Panel(raw, train_steps=30)
    shop = Panel(raw, train_steps=30, centre="shop")
    z = shop.scaled
    # every shop's node has mean 0 over the training steps; the scale stays the pooled one
    np.testing.assert_allclose(z[:, :30].mean(axis=1), 0.0, atol=1e-12)
    np.testing.assert_allclose(
        pooled.scaled - z, np.broadcast_to(shop.shop_mean_[:, None, :], z.shape), atol=1e-12
    )
    np.testing.assert_array_equal(shop.scale_, pooled.scale_)
    np.testing.assert_allclose(
        shop.shop_mean_ * shop.scale_ + shop.mean_, raw[:, :30].mean(axis=1), atol=1e-12
    )
    np.testing.assert_array_equal(pooled.shop_mean_, 0.0)
    # raw units come back per shop, one node or all
    for k in range(3):
        np.testing.assert_allclose(shop.inverse_transform(z[k], shop=k), raw[k], atol=1e-12)
        np.testing.assert_allclose(
            shop.inverse_transform(z[k, :, 2], node=2, shop=k), raw[k, :, 2], atol=1e-12
        )
    np.testing.assert_allclose(pooled.inverse_transform(pooled.scaled[1]), raw[1], atol=1e-12)
    with pytest.raises(DataValidationError, match="shop"):
        shop.inverse_transform(z[0])  # which shop's level to add back is ambiguous
    # subsets and with_centre keep the convention; the values never change
    sub = shop.subset([2, 0])
    assert sub.centre == "shop" and "centre='shop'" in repr(sub)
    np.testing.assert_allclose(sub.scaled[:, :30].mean(axis=1), 0.0, atol=1e-12)
    np.testing.assert_array_equal(pooled.with_centre("shop").scaled, z)
    np.testing.assert_array_equal(shop.values, raw)
    with pytest.raises(DataValidationError, match="centre"):
        Panel(raw, centre="per-shop")
