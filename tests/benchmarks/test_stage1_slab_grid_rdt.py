"""``benchmarks/stage1_slab_grid_rdt.py`` reuses a stored learned-slab fit only when it is the same fit."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import stage1_slab_grid_rdt as sg  # noqa: E402
from _suite import stage1_config  # noqa: E402


def _stored(cfg_dict, *, fast=False, seeds_done=(0, 1)):
    rows = [{"auroc": 0.9 + i / 100, "nauprc": 0.8, "max_r_hat": 1.0 + i} for i in range(len(seeds_done))]
    return {
        "fast": fast,
        "seeds": [0, 1, 2],
        "stage1_config": cfg_dict,
        "cells": {"mmm": {"seeds_done": list(seeds_done), "runs": {"stage1_pip": rows}}},
    }


def test_a_stored_row_is_used_only_for_the_same_config_cell_and_seed():
    linear = stage1_config("linear", False)
    mmm = stage1_config("mmm", False)
    stored = _stored(linear.to_dict())  # recovery_rdt stores its linear config; the mmm cell ran it as mmm
    row = sg.stored_learned(stored, "mmm", mmm, 1)
    assert row == {"auroc": 0.91, "nauprc": 0.8, "max_r_hat": 2.0, "source": "stored"}
    assert sg.stored_learned(stored, "mmm", mmm, 2) is None  # seed not run
    assert sg.stored_learned(stored, "default", linear, 0) is None  # cell not stored
    assert sg.stored_learned(stored, "mmm", mmm.replace(**sg.FIXED_SLAB_GRID), 0) is None  # other config
    assert sg.stored_learned(stored, "mmm", mmm.replace(num_samples=100), 0) is None
    assert sg.stored_learned(_stored(linear.to_dict(), fast=True), "mmm", mmm, 0) is None  # --fast file
    assert sg.stored_learned(None, "mmm", mmm, 0) is None
    # JSON turns tuples into lists: a stored file read back still matches
    import json

    assert sg.stored_learned(json.loads(json.dumps(stored)), "mmm", mmm, 0)["auroc"] == 0.9
