"""`Panel`: the validated container every stage reads.

Arrays are (shop, time, node): ``values`` has shape (R, T, d). Node names and roles travel with the values,
plus an optional per-shop ``context`` (R, c). Standardisation is per node, fitted on the first ``train_steps``
time steps of every shop, stored with the panel and invertible for reports.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from dice_prob.errors import DataValidationError, InputTypeError
from dice_prob.graph import ROLES, support_mask_from_roles

# the test region of the forecast windows (dice_prob.data.windows.test_start): the last 20 % of the steps
DEFAULT_TEST_FRACTION = 0.2
#: How :attr:`Panel.scaled` centres each node: one pooled mean, or also each shop's own training mean.
CENTRES = ("pooled", "shop")


def default_train_steps(n_steps: int) -> int:
    """Default training window: every step before the last ``ceil(0.2 T)`` (the test region), at least 2.

    Examples
    --------
    >>> from dice_prob.data.panel import default_train_steps
    >>> default_train_steps(100), default_train_steps(10), default_train_steps(2)
    (80, 8, 2)
    """
    return max(2, int(n_steps) - math.ceil(DEFAULT_TEST_FRACTION * int(n_steps)))


def _as_float_array(x, name: str) -> np.ndarray:
    if isinstance(x, (str, bytes)) or x is None:
        raise InputTypeError(f"{name}: expected a numeric array, got {type(x).__name__}")
    try:
        a = np.array(x, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InputTypeError(f"{name}: expected a numeric array ({exc})") from exc
    return a


class Panel:
    """A validated (shop, time, node) panel.

    Parameters
    ----------
    values : array-like, shape (R, T, d) or (T, d)
        Raw observations; a 2-D array is one shop.
    nodes : sequence of str, optional
        Unique node names (default ``x0 .. x{d-1}``).
    roles : sequence of str, optional
        One of ``channel``, ``intermediate``, ``target``, ``control`` per node. Default: the last node is the
        target, every other node ``intermediate`` (no structural restriction besides the target being a sink).
    context : array-like, shape (R, c), optional
        Per-shop context (for example market size); finite.
    train_steps : int, optional
        Number of leading time steps the standardisation (and Stage 1) is fitted on. Default: all but the last
        20 % (``T - ceil(0.2 T)``, at least 2), the same split the forecast windows use for testing, so a panel
        built without it never lets a fit see its own test period. Pass ``train_steps=T`` to use every step.
    shop_ids, time_index : sequence, optional
        Labels kept for frames and reports.
    centre : {"pooled", "shop"}
        ``pooled`` (default): :attr:`scaled` subtracts one mean per node, pooled over shops, so shops keep their
        levels. ``shop``: each shop's node is also centred on its own training-step mean (a fixed effect per
        shop; the scale stays pooled, so shops keep their relative variability). Forecasters that share
        intercepts across shops then need not carry each shop's level through their lags. Raw ``values`` are
        never changed.

    Raises
    ------
    DataValidationError
        NaN/inf values, wrong shapes, duplicate or unknown node names, not exactly one target, a constant node.

    Examples
    --------
    >>> import numpy as np
    >>> p = Panel(np.arange(30.0).reshape(1, 10, 3) % 7, nodes=["tv", "search", "sales"],
    ...           roles=["channel", "channel", "target"])
    >>> p.shape, p.target
    ((1, 10, 3), 'sales')
    """

    def __init__(
        self,
        values,
        nodes: Sequence[str] | None = None,
        roles: Sequence[str] | None = None,
        context=None,
        *,
        train_steps: int | None = None,
        shop_ids: Sequence | None = None,
        time_index: Sequence | None = None,
        centre: str = "pooled",
    ) -> None:
        if centre not in CENTRES:
            raise DataValidationError(f"centre: expected one of {CENTRES}, got {centre!r}")
        v = _as_float_array(values, "values")
        if v.ndim == 2:
            v = v[None]
        if v.ndim != 3:
            raise DataValidationError(
                f"values: expected shape (shops, time, nodes) or (time, nodes), got {v.shape}"
            )
        r_, t_, d_ = v.shape
        if r_ < 1 or t_ < 2 or d_ < 2:
            raise DataValidationError(
                f"values: need at least 1 shop, 2 time steps and 2 nodes, got shape {v.shape}"
            )
        bad = ~np.isfinite(v)
        if bad.any():
            s, t, k = np.argwhere(bad)[0]
            raise DataValidationError(
                f"values: {int(bad.sum())} NaN/inf entries (first at shop {s}, time {t}, node {k}); "
                "impute or drop them before building a Panel"
            )
        names = [f"x{k}" for k in range(d_)] if nodes is None else [str(n) for n in nodes]
        if len(names) != d_:
            raise DataValidationError(
                f"nodes: {len(names)} names for {d_} node columns; give one name per node"
            )
        if len(set(names)) != d_:
            dup = sorted({n for n in names if names.count(n) > 1})
            raise DataValidationError(f"nodes: duplicate names {dup}; node names must be unique")
        if roles is None:
            role_list = ["intermediate"] * (d_ - 1) + ["target"]
        else:
            role_list = [str(r) for r in roles]
        if len(role_list) != d_:
            raise DataValidationError(f"roles: {len(role_list)} roles for {d_} nodes; give one role per node")
        unknown = [r for r in role_list if r not in ROLES]
        if unknown:
            raise DataValidationError(f"roles: unknown roles {unknown}; use one of {ROLES}")
        if role_list.count("target") != 1:
            raise DataValidationError(
                f"roles: exactly one node must have role 'target', found {role_list.count('target')}"
            )
        ctx = None
        if context is not None:
            ctx = _as_float_array(context, "context")
            if ctx.ndim == 1:
                ctx = ctx[None] if r_ == 1 else ctx[:, None]
            if ctx.ndim != 2 or ctx.shape[0] != r_:
                raise DataValidationError(
                    f"context: expected shape ({r_}, c) — one row per shop — got {ctx.shape}"
                )
            if not np.all(np.isfinite(ctx)):
                raise DataValidationError("context: contains NaN or inf; impute it per shop")
        ts = default_train_steps(t_) if train_steps is None else int(train_steps)
        if not 2 <= ts <= t_:
            raise DataValidationError(
                f"train_steps: must be in [2, {t_}] (the number of time steps), got {ts}"
            )
        if shop_ids is not None and len(shop_ids) != r_:
            raise DataValidationError(f"shop_ids: {len(shop_ids)} labels for {r_} shops")
        if time_index is not None and len(time_index) != t_:
            raise DataValidationError(f"time_index: {len(time_index)} labels for {t_} time steps")

        self._values = v
        self._values.setflags(write=False)
        self.nodes: tuple[str, ...] = tuple(names)
        self.roles: tuple[str, ...] = tuple(role_list)
        self.context = ctx
        if ctx is not None:
            ctx.setflags(write=False)
        self.train_steps = ts
        self.shop_ids = tuple(shop_ids) if shop_ids is not None else tuple(range(r_))
        self.time_index = tuple(time_index) if time_index is not None else tuple(range(t_))

        window = v[:, :ts, :].reshape(-1, d_)
        self.mean_ = window.mean(axis=0)
        self.scale_ = window.std(axis=0)
        flat = self.scale_ <= 1e-12 * np.maximum(1.0, np.abs(self.mean_))
        if flat.any():
            raise DataValidationError(
                f"values: node(s) {[names[k] for k in np.flatnonzero(flat)]} are constant over the training "
                "window; drop them or lengthen train_steps"
            )
        self.mean_.setflags(write=False)
        self.scale_.setflags(write=False)
        self.centre = centre
        # per-shop offsets in standardised units (zeros when pooled): the shop's training-step mean
        z_train = (v[:, :ts, :] - self.mean_) / self.scale_
        self.shop_mean_ = z_train.mean(axis=1) if centre == "shop" else np.zeros((r_, d_))
        self.shop_mean_.setflags(write=False)

    # ------------------------------------------------------------------ basic properties
    @property
    def values(self) -> np.ndarray:
        """Raw values, shape (R, T, d), read-only."""
        return self._values

    @property
    def shape(self) -> tuple[int, int, int]:
        return self._values.shape  # type: ignore[return-value]

    @property
    def n_shops(self) -> int:
        return self._values.shape[0]

    @property
    def n_steps(self) -> int:
        return self._values.shape[1]

    @property
    def n_nodes(self) -> int:
        return self._values.shape[2]

    @property
    def target(self) -> str:
        return self.nodes[self.target_index]

    @property
    def target_index(self) -> int:
        return self.roles.index("target")

    def indices(self, role: str) -> np.ndarray:
        """Indices of the nodes with ``role``."""
        return np.array([k for k, r in enumerate(self.roles) if r == role], dtype=int)

    def node_index(self, name: str) -> int:
        """Index of node ``name``; raises a DataValidationError naming the known nodes otherwise."""
        try:
            return self.nodes.index(str(name))
        except ValueError:
            raise DataValidationError(
                f"node {name!r} is not in the panel; known nodes: {list(self.nodes)}"
            ) from None

    # ------------------------------------------------------------------ transforms
    @property
    def scaled(self) -> np.ndarray:
        """Standardised values ``(values - mean_) / scale_ - shop_mean_``, shape (R, T, d)."""
        return (self._values - self.mean_) / self.scale_ - self.shop_mean_[:, None, :]

    def inverse_transform(self, x, node: int | str | None = None, *, shop: int | None = None) -> np.ndarray:
        """Map standardised values of one ``shop`` back to raw units (all nodes on the last axis, or one ``node``).

        ``shop`` may be omitted only for a pooled-centred panel, whose standardisation is the same for every shop.
        """
        x = np.asarray(x, dtype=np.float64)
        if shop is None:
            if self.centre != "pooled":
                raise DataValidationError(
                    "shop: this panel is centred per shop (centre='shop'); pass the shop index the values belong to"
                )
            offset = np.zeros(self.n_nodes)
        else:
            offset = self.shop_mean_[int(shop)]
        if node is None:
            return (x + offset) * self.scale_ + self.mean_
        k = self.node_index(node) if isinstance(node, str) else int(node)
        return (x + offset[k]) * self.scale_[k] + self.mean_[k]

    def with_centre(self, centre: str) -> Panel:
        """The same data with another ``centre`` (see the class docstring)."""
        return Panel(
            self._values,
            self.nodes,
            self.roles,
            self.context,
            train_steps=self.train_steps,
            shop_ids=self.shop_ids,
            time_index=self.time_index,
            centre=centre,
        )

    def support_mask(self, *, target_is_sink: bool = True) -> np.ndarray:
        """(d, d) boolean mask of pairs that may be edges, from the node roles (see ``graph.support_mask_from_roles``)."""
        return support_mask_from_roles(self.roles, target_is_sink=target_is_sink)

    # ------------------------------------------------------------------ validation helpers for later stages
    def require_steps(self, n_needed: int, reason: str) -> None:
        """Raise if the panel has fewer than ``n_needed`` time steps, naming ``reason`` (e.g. 'lags 7 + horizon 7')."""
        if self.n_steps < n_needed:
            raise DataValidationError(
                f"values: {self.n_steps} time steps, but {reason} needs at least {n_needed}; "
                "use a longer series or reduce the lags/horizon"
            )

    def require_nonnegative(self, role: str = "channel") -> None:
        """Raise if any node with ``role`` has a negative raw value (spends must be >= 0 in ``mmm`` mode)."""
        idx = self.indices(role)
        if idx.size and np.any(self._values[:, :, idx] < 0):
            neg = [self.nodes[k] for k in idx if np.any(self._values[:, :, k] < 0)]
            raise DataValidationError(
                f"values: {role} node(s) {neg} have negative values, but this model treats them as spends; "
                "pass raw non-negative spends or use mode='linear'"
            )

    def subset(self, shops) -> Panel:
        """A new panel with the selected shop indices (standardisation refitted on them)."""
        idx = np.atleast_1d(np.asarray(shops, dtype=int))
        return Panel(
            self._values[idx],
            self.nodes,
            self.roles,
            None if self.context is None else self.context[idx],
            train_steps=self.train_steps,
            shop_ids=[self.shop_ids[k] for k in idx],
            time_index=self.time_index,
            centre=self.centre,
        )

    def __repr__(self) -> str:
        r, t, d = self.shape
        ctx = "" if self.context is None else f", context={self.context.shape[1]}"
        cen = "" if self.centre == "pooled" else f", centre={self.centre!r}"
        return f"Panel(shops={r}, steps={t}, nodes={list(self.nodes)}, target={self.target!r}{ctx}{cen})"

    # ------------------------------------------------------------------ pandas
    def to_frame(self, layout: str = "wide", *, time: str = "time", shop: str = "shop") -> pd.DataFrame:
        """A pandas frame: ``wide`` (one row per shop and time, one column per node, then ``context{k}``
        columns) or ``long`` (columns shop, time, node, value)."""
        r, t, d = self.shape
        shop_col = np.repeat(np.array(self.shop_ids, dtype=object), t)
        time_col = np.tile(np.array(self.time_index, dtype=object), r)
        wide = pd.DataFrame({shop: shop_col, time: time_col})
        for k, name in enumerate(self.nodes):
            wide[name] = self._values[:, :, k].reshape(-1)
        if layout == "wide":
            if self.context is not None:
                for c in range(self.context.shape[1]):
                    wide[f"context{c}"] = np.repeat(self.context[:, c], t)
            return wide
        if layout == "long":
            return wide.melt(
                id_vars=[shop, time], value_vars=list(self.nodes), var_name="node", value_name="value"
            )
        raise DataValidationError(f"layout: expected 'wide' or 'long', got {layout!r}")

    @classmethod
    def from_frame(
        cls,
        df: pd.DataFrame,
        *,
        time: str,
        target: str,
        shop: str | None = None,
        nodes: Sequence[str] | None = None,
        channels: Sequence[str] | None = None,
        intermediates: Sequence[str] = (),
        controls: Sequence[str] = (),
        context: Sequence[str] | None = None,
        layout: str = "auto",
        variable: str = "node",
        value: str = "value",
        train_steps: int | None = None,
    ) -> Panel:
        """Build a panel from a pandas frame.

        ``layout="wide"``: one row per (shop, time), one column per node. ``layout="long"``: one row per
        (shop, time, node) with columns ``variable`` and ``value``. ``auto`` picks long when both of those
        columns exist. Rows are sorted by shop, then time; every shop must have the same time steps.
        Roles: ``target`` is the target; ``intermediates`` and ``controls`` as named; ``channels`` default to
        every other node. Context columns are averaged per shop (one row of context per shop).
        """
        if not isinstance(df, pd.DataFrame):
            raise InputTypeError(f"df: expected a pandas DataFrame, got {type(df).__name__}")
        if layout == "auto":
            layout = "long" if {variable, value} <= set(df.columns) else "wide"
        if layout not in ("wide", "long"):
            raise DataValidationError(f"layout: expected 'wide', 'long' or 'auto', got {layout!r}")
        needed = [time] + ([shop] if shop else [])
        missing = [c for c in needed if c not in df.columns]
        if missing:
            raise DataValidationError(
                f"columns {missing} not found in the data; available: {list(df.columns)}"
            )
        ctx_cols = list(context or [])
        if layout == "long":
            for c in (variable, value):
                if c not in df.columns:
                    raise DataValidationError(
                        f"column {c!r} not found; a long frame needs '{variable}' and '{value}'"
                    )
            idx = [time] + ([shop] if shop else [])
            if df.duplicated(idx + [variable]).any():
                raise DataValidationError(
                    f"rows: duplicate ({', '.join(idx + [variable])}) entries in the long frame"
                )
            wide = df.pivot(index=idx, columns=variable, values=value)
            node_cols = list(pd.unique(df[variable]))  # keep the frame's node order (pivot sorts names)
            wide = wide[node_cols].reset_index()
            wide.columns.name = None
            holes = wide[node_cols].isna().to_numpy()
            if holes.any() and not df[value].isna().any():
                row, col = np.argwhere(holes)[0]
                where = ", ".join(f"{k}={wide[k].iloc[row]!r}" for k in idx)
                raise DataValidationError(
                    f"rows: the long frame has no '{value}' for {int(holes.sum())} (shop, time, node) "
                    f"combination(s), first {where}, {variable}={node_cols[col]!r}; every node needs a row at "
                    "every time step of every shop"
                )
            if ctx_cols:
                missing = [c for c in ctx_cols if c not in df.columns]
                if missing:
                    raise DataValidationError(
                        f"context: columns {missing} not found; available: {list(df.columns)}"
                    )
                ctx_frame = df.groupby(idx, sort=False)[ctx_cols].first().reset_index()
                wide = wide.merge(ctx_frame, on=idx)
            df = wide
        exclude = {time, shop, *ctx_cols}
        if nodes is None:
            nodes = [c for c in df.columns if c not in exclude]
            non_numeric = [c for c in nodes if not pd.api.types.is_numeric_dtype(df[c])]
            if non_numeric:
                raise DataValidationError(
                    f"columns {non_numeric} are not numeric; clean them, or pass nodes=[...] (and context=[...]) "
                    "to choose the numeric node columns"
                )
        nodes = list(nodes)
        missing = [c for c in nodes + ctx_cols if c not in df.columns]
        if missing:
            raise DataValidationError(
                f"columns {missing} not found in the data; available: {list(df.columns)}"
            )
        if target not in nodes:
            raise DataValidationError(
                f"target: {target!r} is not among the node columns {nodes}; name the target column with --target"
            )
        for group, names in (
            ("channels", channels or []),
            ("intermediates", intermediates),
            ("controls", controls),
        ):
            unknown = [n for n in names if n not in nodes]
            if unknown:
                raise DataValidationError(f"{group}: unknown node names {unknown}; node columns are {nodes}")
        roles = []
        for n in nodes:
            if n == target:
                roles.append("target")
            elif n in intermediates:
                roles.append("intermediate")
            elif n in controls:
                roles.append("control")
            elif channels is None or n in channels:
                roles.append("channel")
            else:
                roles.append("intermediate")
        non_numeric = [c for c in nodes + ctx_cols if not pd.api.types.is_numeric_dtype(df[c])]
        if non_numeric:
            raise DataValidationError(f"columns {non_numeric} are not numeric; clean them before loading")
        if shop is None:
            df = df.assign(__shop__=0)
            shop_key = "__shop__"
        else:
            shop_key = shop
        if df.duplicated([shop_key, time]).any():
            raise DataValidationError(
                f"rows: duplicate ({shop or 'shop'}, {time}) pairs; each time step once per shop"
            )
        df = df.sort_values([shop_key, time], kind="stable")
        shops = list(pd.unique(df[shop_key]))
        times = list(pd.unique(df[time].sort_values()))
        counts = df.groupby(shop_key, sort=False)[time].nunique()
        if (counts != len(times)).any():
            short = [s for s, c in counts.items() if c != len(times)]
            raise DataValidationError(
                f"rows: shops {short[:5]} do not cover all {len(times)} time steps; the panel must be balanced"
            )
        values = df[nodes].to_numpy(dtype=np.float64).reshape(len(shops), len(times), len(nodes))
        ctx = None
        if ctx_cols:
            ctx = df.groupby(shop_key, sort=False)[ctx_cols].mean().loc[shops].to_numpy(dtype=np.float64)
        return cls(
            values,
            nodes,
            roles,
            ctx,
            train_steps=train_steps,
            shop_ids=shops if shop else None,
            time_index=times,
        )
