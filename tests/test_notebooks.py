"""Every notebook in notebooks/ runs top to bottom, offline, on the demo backbone."""

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from zsvc_pl.model.backbone import DEMO_WEIGHTS

NOTEBOOKS = sorted((Path(__file__).parents[1] / "notebooks").glob("*.ipynb"))


@pytest.mark.skipif(not DEMO_WEIGHTS.is_file(), reason="demo weights not built")
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs(path, tmp_path):
    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors
