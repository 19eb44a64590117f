"""``_suite.seed_runs``: every finished seed is saved, and ``--resume`` reuses exactly the seeds that were run with
the same fingerprint (settings and configs), so a stopped multi-hour benchmark continues without mixing runs."""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import _suite  # noqa: E402


def _runner(calls: list):
    def run_one(seed):
        calls.append(seed)
        return {"seed": seed, "score": 0.5 + 0.1 * seed}

    return run_one


def test_each_seed_is_saved_and_resume_reuses_only_matching_seeds(tmp_path):
    fp = {"settings": {"n_shops": 4}, "fast": True}
    calls: list = []
    runs, secs, resumed = _suite.seed_runs(
        "bench", 3, _runner(calls), fingerprint=fp, out=tmp_path, resume=False
    )
    assert calls == [0, 1, 2] and resumed == [] and len(secs) == 3
    assert [r["score"] for r in runs] == [0.5, 0.6, 0.7]
    saved = json.loads((tmp_path / "seeds" / "bench" / "seed1.json").read_text())
    assert saved["run"] == runs[1] and saved["fingerprint"] == fp and saved["seed"] == 1

    # a stopped run: seed 2's file is gone; resume reruns it alone and returns the same table
    (tmp_path / "seeds" / "bench" / "seed2.json").unlink()
    calls.clear()
    again, _, resumed = _suite.seed_runs(
        "bench", 3, _runner(calls), fingerprint=fp, out=tmp_path, resume=True
    )
    assert calls == [2] and resumed == [0, 1] and again == runs

    # other settings: nothing is reused, and without --resume nothing is read
    calls.clear()
    _suite.seed_runs("bench", 2, _runner(calls), fingerprint={**fp, "fast": False}, out=tmp_path, resume=True)
    assert calls == [0, 1]
    calls.clear()
    _suite.seed_runs("bench", 2, _runner(calls), fingerprint=fp, out=tmp_path, resume=False)
    assert calls == [0, 1]
