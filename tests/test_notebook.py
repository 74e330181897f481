"""docs/notebooks/pyserini_rerank.ipynb runs top to bottom in a fresh kernel and shows what it promises."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import nbclient  # the notebook extra, which `make test` installs: a missing one fails here, never skips
import nbformat
import pytest

NOTEBOOK = Path(__file__).resolve().parent.parent / "docs" / "notebooks" / "pyserini_rerank.ipynb"
KERNEL = "reasonrank-test"


@pytest.fixture
def kernel(tmp_path, monkeypatch) -> str:
    """A kernel spec that runs this interpreter, so the notebook sees the same environment as the tests."""
    spec = tmp_path / "jupyter" / "kernels" / KERNEL
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "reasonrank tests",
        "language": "python",
        "env": {"HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"},
    }))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    return KERNEL


def outputs(cell) -> str:
    texts = []
    for output in cell.get("outputs", []):
        if output["output_type"] == "stream":
            texts.append(output["text"])
        elif output["output_type"] in {"execute_result", "display_data"}:
            texts.append(output["data"].get("text/html") or output["data"].get("text/plain", ""))
    return "".join(texts)


@pytest.mark.slow
def test_notebook_runs_and_shows_the_table_and_metrics(kernel, tmp_path):
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(notebook, timeout=300, kernel_name=kernel,
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()  # raises CellExecutionError, with the failing cell's traceback, if any cell fails
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert "5000 passages indexed" in outputs(code[0])
    ranked = outputs(code[2])
    assert re.search(r"1\.\s+\d+\s+\d\.\d{3}\s+grade", ranked)
    table = outputs(code[3])
    assert "<table" in table and "explanation" in table
    rows = [re.findall(r"<td>(.*?)</td>", row, re.DOTALL) for row in re.findall(r"<tr>\s*<th>\d+</th>(.*?)</tr>",
                                                                               table, re.DOTALL)]
    assert len(rows) == 4  # docid, qrels grade, label, explanation, passage; the reasoning model explained the top 2
    assert any(row[3].strip() not in {"", "—"} for row in rows[:2])
    metrics = dict(re.findall(r"^(\S+)\s+nDCG@10 (\d\.\d{4})  \(5 queries\)$", outputs(code[4]), re.MULTILINE))
    assert set(metrics) == {"BM25", "minilm-bi"}
    assert all(0 < float(value) <= 1 for value in metrics.values())
