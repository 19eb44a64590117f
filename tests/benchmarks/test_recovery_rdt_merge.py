"""``recovery_rdt --merge`` keeps a stored table only when it was made with the same settings; a config field
added after the file was written counts as its default (the behaviour the stored run had)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import recovery_rdt  # noqa: E402


def _write(path: Path, s1: dict, cm: dict) -> None:
    cell = {"seeds_done": [0, 1], "command": "python benchmarks/recovery_rdt.py"}
    path.write_text(
        json.dumps(
            {
                "fast": True,
                "seeds": [0, 1],
                "stage1_config": s1,
                "causalmmm_config": cm,
                "cells": {"default": cell, "R=1": cell},
            }
        )
    )


def _configs():
    s1 = recovery_rdt.stage1_config("linear", True)
    cm = recovery_rdt.causalmmm_config(True, leak_free=False)
    return s1, cm, json.loads(json.dumps(s1.to_dict())), json.loads(json.dumps(cm.to_dict()))


def test_stored_config_without_a_newer_field_merges(tmp_path):
    s1, cm, s1_dict, cm_dict = _configs()
    del s1_dict["flip_moves"]  # a file written before the field existed
    path = tmp_path / "recovery_rdt.json"
    _write(path, s1_dict, cm_dict)
    kept, redo = recovery_rdt.kept_cells(path, True, [0, 1], s1, cm, {"R=1"})
    assert list(kept) == ["default"] and list(redo) == ["R=1"]


@pytest.mark.parametrize("field, value", [("n_lags", 3), ("flip_moves", 4)])
def test_stored_config_with_another_value_is_refused(tmp_path, field, value):
    s1, cm, s1_dict, cm_dict = _configs()
    s1_dict[field] = value
    path = tmp_path / "recovery_rdt.json"
    _write(path, s1_dict, cm_dict)
    with pytest.raises(SystemExit, match="other seeds / configs"):
        recovery_rdt.kept_cells(path, True, [0, 1], s1, cm, set())
