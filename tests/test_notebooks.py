"""The tutorials in ``examples/`` are executed in FAST mode: no cell may error and every notebook must render a figure.

Each notebook runs once, in a fresh ``python3`` kernel (nbclient), with ``DICE_PROB_FAST=1`` and ``CI=true`` (quiet
progress bars), from a temporary working directory. The committed notebooks must carry no outputs and must match
their source in ``examples/_build_notebooks.py``.

Run just these with ``python -m pytest tests/test_notebooks.py -q``; set ``DICE_PROB_NOTEBOOK_OUT=DIR`` to keep the
executed notebooks (with outputs) in ``DIR`` for inspection.
"""

from __future__ import annotations

import importlib.util
import os
import time
import warnings
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
EXPECTED = [
    "01_quickstart.ipynb",
    "02_graph_recovery_study.ipynb",
    "03_attribution_bypass.ipynb",
    "04_posterior_attribution_report.ipynb",
    "05_graph_swap_stress_test.ipynb",
]
#: Seconds one cell may run (a generous bound for a shared 2-core CI machine; FAST cells take well under a minute).
CELL_TIMEOUT = 420


def _load_builder():
    spec = importlib.util.spec_from_file_location("_build_notebooks", EXAMPLES / "_build_notebooks.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_all_tutorials_present():
    assert sorted(p.name for p in EXAMPLES.glob("[0-9][0-9]_*.ipynb")) == EXPECTED


@pytest.mark.parametrize("name", EXPECTED)
def test_committed_notebook_is_stripped_and_up_to_date(name):
    nb = nbformat.read(EXAMPLES / name, as_version=4)
    nbformat.validate(nb)
    assert nb.metadata["kernelspec"]["name"] == "python3"
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code, "a tutorial without code"
    for c in code:
        assert c.outputs == [] and c.execution_count is None, (
            f"{name}: outputs must be stripped before committing"
        )
    first = code[0]
    assert "parameters" in first.metadata.get("tags", []), (
        f"{name}: the first code cell must be the parameters cell"
    )
    assert 'FAST = os.environ.get("DICE_PROB_FAST", "1") == "1"' in first.source
    assert sum(c.cell_type == "markdown" for c in nb.cells) >= 5, (
        f"{name}: tutorials need prose, not only code"
    )
    builder = _load_builder()
    expected = nbformat.writes(builder.build(builder.NOTEBOOKS[name])) + "\n"
    assert (EXAMPLES / name).read_text(encoding="utf-8") == expected, (
        f"{name} differs from examples/_build_notebooks.py; run `python examples/_build_notebooks.py`"
    )


def _images(nb) -> int:
    return sum(
        1
        for c in nb.cells
        if c.cell_type == "code"
        for o in c.get("outputs", [])
        if o.get("output_type") in ("display_data", "execute_result") and "image/png" in o.get("data", {})
    )


@pytest.mark.parametrize("name", EXPECTED)
def test_notebook_executes_in_fast_mode(name, tmp_path, monkeypatch):
    monkeypatch.setenv("DICE_PROB_FAST", "1")
    monkeypatch.setenv("CI", "true")  # dice_prob turns every progress bar off under CI
    monkeypatch.setenv("JUPYTER_PLATFORM_DIRS", "1")  # silences jupyter_core's platformdirs migration notice
    monkeypatch.setenv("PYDEVD_DISABLE_FILE_VALIDATION", "1")
    nb = nbformat.read(EXAMPLES / name, as_version=4)
    client = nbclient.NotebookClient(
        nb,
        timeout=CELL_TIMEOUT,
        kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},
    )
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        # deprecations inside the Jupyter client stack are not ours; errors in cells still raise
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", PendingDeprecationWarning)
        client.execute()
    elapsed = time.perf_counter() - t0
    print(f"{name}: executed in {elapsed:.1f} s")
    keep = os.environ.get("DICE_PROB_NOTEBOOK_OUT")  # optional: keep the executed copies for inspection
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, Path(keep) / name)
    errors = [
        o
        for c in nb.cells
        if c.cell_type == "code"
        for o in c.get("outputs", [])
        if o.get("output_type") == "error"
    ]
    assert not errors, f"{name}: {errors[0]['ename']}: {errors[0]['evalue']}"
    assert _images(nb) >= 1, f"{name}: the executed notebook rendered no figure (no image/png output)"
