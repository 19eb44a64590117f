"""``benchmarks/readme_tables.py``: each README row names the run that made it, with that run's date."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import readme_tables  # noqa: E402

OLD = "python benchmarks/stage1_recovery.py --only funnel_linear"
NEW = "python benchmarks/stage1_recovery.py --only funnel_mmm"


def test_a_section_is_dated_by_its_own_run_not_by_the_files_last_run():
    # --only funnel_mmm restamped the file's meta; funnel_linear came from an earlier run
    d = {
        "meta": {"name": "stage1_recovery", "command": NEW, "date": "2026-12-07T11:06:28+00:00"},
        "funnel_mmm": {"command": NEW},
        "funnel_linear": {"command": OLD, "date": "2026-12-03T16:10:59+00:00"},
        "calibration": {"command": OLD},
        "speed": {},
    }
    assert readme_tables._when(d, "funnel_mmm") == f"`{NEW}` (2026-12-07)"
    assert readme_tables._when(d, "funnel_linear") == f"`{OLD}` (2026-12-03)"
    # an earlier run's section without its own date is not given the later run's date
    assert readme_tables._when(d, "calibration") == f"`{OLD}` (date not recorded)"
    assert "command not recorded" in readme_tables._when(d, "speed")
    assert readme_tables._when(d) == f"`{NEW}` (2026-12-07)"
    assert readme_tables._when({}, "funnel_mmm") == "not run"
