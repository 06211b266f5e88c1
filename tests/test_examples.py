"""The example notebooks run (at tiny sizes) and are committed without outputs."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from sfnet.cli import main

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
_STORE_FILES = shutil.ignore_patterns("packed", "packed.new", ".packed.lock", "bad_images.txt")
NOTEBOOKS = ["quickstart.ipynb", "real_sample.ipynb"]


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_is_committed_without_outputs(name):
    nb = nbformat.read(EXAMPLES / name, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code
    for cell in code:
        assert cell.outputs == [] and cell.execution_count is None, cell.source[:60]


@pytest.mark.slow
@pytest.mark.parametrize("name", ["real_sample.ipynb"])  # the quickstart: tests/test_docs.py
def test_notebook_executes(name, tmp_path, monkeypatch):
    monkeypatch.setenv("SFNET_EXAMPLE_SIZE", "tiny")
    monkeypatch.setenv("SFNET_EXAMPLE_DIR", str(tmp_path))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    # the kernel is this interpreter (its kernelspec says "python", found on PATH)
    monkeypatch.setenv(
        "PATH", os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]])
    )
    if name == "real_sample.ipynb":  # a copy, prepared as the README says: never examples/
        sample = tmp_path / "sdss-metallicity-400"
        shutil.copytree(EXAMPLES / "sdss-metallicity-400", sample, ignore=_STORE_FILES)
        assert main(["prepare", str(sample), "--workers", "1", "--no-progress"]) == 0
        monkeypatch.setenv("SFNET_SAMPLE", str(sample))
    nb = nbformat.read(EXAMPLES / name, as_version=4)
    NotebookClient(nb, timeout=300, resources={"metadata": {"path": str(EXAMPLES)}}).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) >= 2  # training curves and the feature figure, inline
    assert list(tmp_path.glob("runs/*/model.safetensors"))
    text = "".join(
        str(o.get("data", {}).get("text/plain", "")) + o.get("text", "") for o in outputs
    )
    if name == "quickstart.ipynb":
        assert (tmp_path / "predictions.fits").is_file() and "dex" in text
    else:
        assert "validation RMSE" in text


def test_readme_from_python_is_the_quickstart_code():
    readme = (EXAMPLES.parent / "README.md").read_text()
    block = readme.split("### From Python", 1)[1].split("```python", 1)[1].split("```", 1)[0]
    nb = nbformat.read(EXAMPLES / "quickstart.ipynb", as_version=4)
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    lines = [line.strip() for line in block.splitlines() if line.strip()]
    assert len(lines) >= 8
    for line in lines:
        assert line in code, f"README line not in examples/quickstart.ipynb: {line}"


def test_real_example_recipe_is_the_same_in_both_readmes_and_the_notebook():
    readme = (EXAMPLES.parent / "README.md").read_text()
    block = readme.split("## Real data example", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    commands = [line.strip() for line in block.splitlines() if line.strip()]
    assert any("--k 2 --resize 64 --crop 64" in c for c in commands), commands
    assert "sfnet prepare examples/sdss-metallicity-400 --resize 64" in commands
    example = (EXAMPLES / "sdss-metallicity-400" / "README.md").read_text()
    for command in commands:
        assert command in example, f"not in the example's README: {command}"
    nb = nbformat.read(EXAMPLES / "real_sample.ipynb", as_version=4)
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    for setting in ("RESIZE = 32 if TINY else 64", "K = 2", "EPOCHS = 1 if TINY else 20"):
        assert setting in code, f"real_sample.ipynb lacks {setting!r}"
