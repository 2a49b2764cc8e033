"""The example notebooks run from top to bottom in a fresh kernel and find what they say they find."""
from __future__ import annotations

from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

REPO = Path(__file__).resolve().parents[2]


def test_causal_tracing_notebook_runs(shared, tmp_path, monkeypatch):
    monkeypatch.setenv("SCALPEL_SHARED", str(shared))
    monkeypatch.setenv("SCALPEL_LOG_LEVEL", "warn")
    nb = nbformat.read(REPO / "examples" / "notebooks" / "causal_tracing.ipynb", as_version=4)
    for cell in nb.cells:  # run the committed source, not its stored outputs
        if cell.cell_type == "code":
            cell.outputs = []
    nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(REPO / "examples" / "notebooks")}}).execute()
    text = "\n".join(o.get("text", "") + str(o.get("data", {}).get("text/plain", ""))
                     for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert "CircuitResult(2 of 16 components" in text and "[(1, 4), (1, 5)]" in text
    images = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if "image/png" in o.get("data", {})]
    assert len(images) == 2  # the heatmap and the inline growth curve


def test_surgical_refusal_ablation_notebook_runs(shared, monkeypatch):
    monkeypatch.setenv("SCALPEL_SHARED", str(shared))
    monkeypatch.setenv("SCALPEL_LOG_LEVEL", "warn")
    nb = nbformat.read(REPO / "examples" / "notebooks" / "surgical_refusal_ablation.ipynb", as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = []
    nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(REPO / "examples" / "notebooks")}}).execute()
    text = "\n".join(o.get("text", "") + str(o.get("data", {}).get("text/markdown", ""))
                     for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert "-> I cannot help with that." in text and "-> Sure!" in text
    assert "| SRA | 0% | 0% | 0% |" in text  # the cleaned direction frees both styles, refuses no harmless request
    assert float(text.split("weights vs hooks:")[1].split()[0]) < 1e-4
