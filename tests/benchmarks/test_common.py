"""``benchmarks/_common.write_results`` stamps each result with the code it came from, atomically."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCH))
import _common  # noqa: E402


def test_results_name_the_commit_they_ran_from(tmp_path):
    _common.write_results("x", {"a": 1}, "body", wall_s=2.0, out=tmp_path)
    meta = json.loads((tmp_path / "x.json").read_text())["meta"]
    md = (tmp_path / "x.md").read_text()
    assert set(meta["code"]) == {"commit", "uncommitted_changes"}
    head = None
    if shutil.which("git"):
        proc = subprocess.run(["git", "rev-parse", "HEAD"], cwd=BENCH, capture_output=True, text=True)
        head = proc.stdout.strip() if proc.returncode == 0 else None
    if head is None:
        pytest.skip("not a git checkout: no commit to record")
    assert meta["code"]["commit"] == head and isinstance(meta["code"]["uncommitted_changes"], bool)
    assert f"- code: commit {head[:10]}" in md and md.rstrip().endswith("body")
    assert not list(tmp_path.glob(".*.tmp"))  # no temporary file left behind


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_rewritten_results_are_not_uncommitted_code(tmp_path):
    """A resumed run rewrites its own result files before its last write: only changes outside
    benchmarks/results count as uncommitted code."""

    def git(*args):
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    (tmp_path / "benchmarks" / "results").mkdir(parents=True)
    code, result = tmp_path / "benchmarks" / "x.py", tmp_path / "benchmarks" / "results" / "x.md"
    code.write_text("a = 1\n")
    result.write_text("old\n")
    git("init", "-q")
    git("add", "-A")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init")
    where = tmp_path / "benchmarks"
    assert _common.code_version(where)["uncommitted_changes"] is False
    result.write_text("new\n")
    assert _common.code_version(where)["uncommitted_changes"] is False
    code.write_text("a = 2\n")
    assert _common.code_version(where)["uncommitted_changes"] is True


def test_code_line_says_when_the_tree_had_uncommitted_changes():
    assert _common._code_line({"commit": "0123456789abcdef", "uncommitted_changes": False}) == (
        "- code: commit 0123456789\n"
    )
    assert "with uncommitted changes" in _common._code_line({"commit": "0" * 40, "uncommitted_changes": True})
    assert _common._code_line({"commit": None, "uncommitted_changes": None}) == ""


@pytest.mark.parametrize("fast", [False, True])
def test_seeded_main_runs_every_seed_and_writes_one_result(tmp_path, capsys, fast):
    seen = []

    def run_seed(seed, is_fast):
        seen.append((seed, is_fast))
        return {"seed": seed, "value": 10 * seed}

    def markdown(runs, seeds, is_fast):
        return f"seeds {seeds} fast {is_fast} sum {sum(r['value'] for r in runs)}"

    argv = ["--seeds", "3", "--out", str(tmp_path)] + (["--fast"] if fast else [])
    assert (
        _common.seeded_main(
            "doc", argv, "y", run_seed, markdown, default_seeds=2, fast_help="f", payload={"k": 1}
        )
        == 0
    )
    assert seen == [(0, fast), (1, fast), (2, fast)]
    name = "y_fast" if fast else "y"
    data = json.loads((tmp_path / f"{name}.json").read_text())
    assert (data["fast"], data["seeds"], data["k"]) == (fast, [0, 1, 2], 1)
    assert [r["value"] for r in data["runs"]] == [0, 10, 20]
    assert (tmp_path / f"{name}.md").read_text().rstrip().endswith(f"seeds [0, 1, 2] fast {fast} sum 30")
    assert not (tmp_path / ("y.json" if fast else "y_fast.json")).exists()
    assert capsys.readouterr().out.count("{'seed'") == 3  # one progress line per seed
