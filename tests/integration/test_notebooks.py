"""The notebooks run top to bottom on small real data (nbclient, the venv's own ipykernel) and ship stripped."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"


def _kernel_dir(tmp: Path) -> Path:
    """A kernel spec running this interpreter, so a fresh venv needs no `ipykernel install`."""
    spec = tmp / "jupyter" / "kernels" / "aptray-venv"
    spec.mkdir(parents=True)
    spec.joinpath("kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "aptray venv", "language": "python",
    }))
    return tmp / "jupyter"


def _run(name: str, parameters: str, cwd: Path) -> object:
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    assert nb.cells[1].source.startswith("# Parameters"), "the second cell holds the parameters"
    nb.cells[1].source = parameters
    NotebookClient(nb, kernel_name="aptray-venv", timeout=600, resources={"metadata": {"path": str(cwd)}}).execute()
    return nb


@pytest.mark.parametrize("name", ["01_explore_trace.ipynb", "02_compare_detectors.ipynb"])
def test_notebook_is_stripped_and_import_only(name: str) -> None:
    import nbformat

    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(not c.outputs and c.execution_count is None for c in code), "outputs must be stripped"
    source = "\n".join(c.source for c in code)
    assert "import aptray" in source or "from aptray" in source
    assert "def " not in source and "class " not in source, "notebooks define no pipeline logic"


@pytest.mark.timeout(900)
def test_notebooks_execute(ray_cluster: None, shared_data: Path, tmp_path: Path,
                           monkeypatch: pytest.MonkeyPatch) -> None:
    import ray

    from aptray.config import AptrayConfig, Aspect, Protocol, Source
    from aptray.evaluate import run_experiment

    folder = shared_data / "darpa_tc_adapt" / "bovia" / "clearscope"
    # The kernel joins the session's Ray cluster instead of starting a second one.
    monkeypatch.setenv("RAY_ADDRESS", ray.get_runtime_context().gcs_address)
    monkeypatch.setenv("JUPYTER_PATH", str(_kernel_dir(tmp_path)))

    nb = _run("01_explore_trace.ipynb", f"INPUT = {str(folder)!r}\nSOURCE = 'adapt'\nASPECT = 'Event'\n"
              f"OUT = {str(tmp_path / 'nb01')!r}", tmp_path)
    code = [c for c in nb.cells if c.cell_type == "code"]  # type: ignore[attr-defined]
    text = json.dumps(code[-2].outputs)  # the malicious processes' table (the last cell ends the Ray session)
    assert "benign_rows_with_this_sentence" in text and "The process performed" in text  # twins: benign rows only

    # A real (small) experiment for notebook 02: AVF on the raw attributes, two seeds, no embedder.
    cfg = AptrayConfig()
    cfg.ingest.source = Source.ADAPT
    cfg.experiment.embedders = []
    cfg.experiment.detectors = ["avf"]
    cfg.experiment.aspects = [Aspect.EVENT]
    cfg.experiment.seeds = 2
    cfg.experiment.protocols = [Protocol.BENIGN_SPLIT, Protocol.UNSUPERVISED]
    run_experiment(str(folder), str(tmp_path / "exp"), cfg)
    nb = _run("02_compare_detectors.ipynb", f"EXPERIMENT = {str(tmp_path / 'exp')!r}", tmp_path)
    outputs = json.dumps([c.outputs for c in nb.cells if c.cell_type == "code"])  # type: ignore[attr-defined]
    assert "bovia/clearscope" in outputs and "avf" in outputs and "benign-split" in outputs
    assert "unsupervised" not in outputs  # its tables and means are the benign-split protocol's (they mixed both)
