"""The example notebooks run from top to bottom in a fresh kernel and find what they say they find."""
from __future__ import annotations

from pathlib import Path

import nbclient
import nbformat
import pytest

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]


def _run(name: str, shared, monkeypatch):
    """Runs the committed source of a notebook (not its stored outputs) in a fresh kernel; returns
    the executed notebook and the text of its outputs (stdout, plain text and Markdown)."""
    monkeypatch.setenv("SCALPEL_SHARED", str(shared))
    monkeypatch.setenv("SCALPEL_LOG_LEVEL", "warn")
    nb = nbformat.read(REPO / "examples" / "notebooks" / name, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = []
    nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(REPO / "examples" / "notebooks")}}).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    text = "\n".join(o.get("text", "") + str(o.get("data", {}).get("text/plain", ""))
                     + str(o.get("data", {}).get("text/markdown", "")) for o in outputs)
    return outputs, text


def test_causal_tracing_notebook_runs(shared, monkeypatch):
    outputs, text = _run("causal_tracing.ipynb", shared, monkeypatch)
    assert "CircuitResult(2 of 16 components" in text and "[(1, 4), (1, 5)]" in text
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) == 2  # the heatmap and the inline growth curve


def test_surgical_refusal_ablation_notebook_runs(shared, monkeypatch):
    _, text = _run("surgical_refusal_ablation.ipynb", shared, monkeypatch)
    assert "-> I cannot help with that." in text and "-> Sure!" in text
    assert "| SRA | 0% | 0% | 0% |" in text  # the cleaned direction frees both styles, refuses no harmless request
    assert float(text.split("weights vs hooks:")[1].split()[0]) < 1e-4
