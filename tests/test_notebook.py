"""examples/quickstart.ipynb: committed without outputs, and run top to bottom on the real data by a Jupyter kernel."""
from __future__ import annotations

from pathlib import Path

import pytest

NOTEBOOK = Path(__file__).resolve().parents[1] / "examples" / "quickstart.ipynb"


def _code_cells(nb) -> list:
    return [c for c in nb.cells if c.cell_type == "code"]


def test_the_quickstart_notebook_is_committed_with_its_outputs_stripped() -> None:
    import nbformat

    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    assert all(c.outputs == [] and c.execution_count is None for c in _code_cells(nb))


@pytest.mark.subprocess
def test_the_quickstart_notebook_runs_top_to_bottom_on_the_real_data(
    hymenoptera: Path, shared_cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(NOTEBOOK, as_version=4)
    settings = _code_cells(nb)[0]
    assert "EPOCHS = 30" in settings.source and "SEEDS = [42, 43, 44]" in settings.source
    settings.source = settings.source.replace("EPOCHS = 30", "EPOCHS = 10").replace("[42, 43, 44]", "[42, 43]")
    for name, value in {"QTRANSFER_DATA": hymenoptera, "QTRANSFER_CACHE": shared_cache, "OMP_NUM_THREADS": 1}.items():
        monkeypatch.setenv(name, str(value))  # the kernel inherits them
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()

    cells = _code_cells(nb)
    assert not [o for c in cells for o in c.outputs if o.output_type == "error"]
    text = "".join(o.get("text", "") for c in cells for o in c.outputs if o.output_type == "stream")
    accuracy = float(text.split("validation accuracy ")[1].split()[0])
    assert accuracy > 0.85  # ImageNet features: the head learns ants from bees
    assert len(list((tmp_path / "runs").iterdir())) == 2  # the run and the comparison
    images = [o for c in cells for o in c.outputs if "image/png" in o.get("data", {})]
    assert len(images) == 5  # curves, confusion, predictions, the comparison, the two predicted images
    markdown = [o["data"]["text/markdown"] for c in cells for o in c.outputs if "text/markdown" in o.get("data", {})]
    assert markdown and "quantum" in markdown[0] and "classical" in markdown[0]
    predicted = [line for line in text.splitlines() if "(probability" in line]
    assert len(predicted) == 2 and all(" ants " in line or " bees " in line for line in predicted)
