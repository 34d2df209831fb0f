"""Every notebook in colab/ is valid, runs top to bottom in a fresh kernel, and ships its outputs.

Each notebook is executed with nbclient exactly as Jupyter or Colab would run it (one kernel, cells
in order, shell escapes included), on the small settings that ``MEC_SMALL=1`` selects. A cell that
raises, or that only works after a later cell, fails the test; so does a file that is not a valid
notebook. The committed copy must carry the outputs of one clean top-to-bottom run, plots included,
so that they render on GitHub.
"""

from __future__ import annotations

from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

REPO = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted((REPO / "colab").glob("*.ipynb"))
# Notebooks whose committed outputs must show at least this many plots.
PLOTS = {"01_quickstart.ipynb": 2, "03_reproduce_mec.ipynb": 2}
# What each notebook leaves in its work directory (globs under MEC_WORKDIR).
ARTIFACTS = {
  "01_quickstart.ipynb": ["report.json", "auc_vs_bytes.png", "code_usage.png"],
  "02_codebook_embed_in_your_model.ipynb": ["*.npz", "finetuned/*.npz"],
  "03_reproduce_mec.ipynb": ["*/K*/report.json"],
}


def _read(path: Path):
  nb = nbformat.read(path, as_version=4)  # raises on malformed JSON
  nbformat.validate(nb)  # raises on a notebook that breaks the schema
  return nb


def _outputs(nb, output_type: str | None = None) -> list[dict]:
  cells = [c for c in nb.cells if c.cell_type == "code"]
  return [o for c in cells for o in c.outputs if output_type in (None, o.output_type)]


def _images(nb) -> int:
  return sum("image/png" in o.get("data", {}) for o in _outputs(nb))


def test_the_three_notebooks_are_there():
  assert [p.name for p in NOTEBOOKS] == [
    "01_quickstart.ipynb",
    "02_codebook_embed_in_your_model.ipynb",
    "03_reproduce_mec.ipynb",
  ]


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_committed_outputs_come_from_one_clean_run(notebook):
  nb = _read(notebook)
  code = [c for c in nb.cells if c.cell_type == "code"]
  counts = [c.execution_count for c in code]
  assert counts == list(range(1, len(code) + 1)), f"cells not run once, in order: {counts}"
  assert not _outputs(nb, "error"), "a committed cell shows an error"
  assert _images(nb) >= PLOTS.get(notebook.name, 0), "the committed plots are missing"


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_runs_top_to_bottom(notebook, tmp_path, monkeypatch):
  # The kernel inherits this environment: small settings, a fresh work directory, CPU only.
  monkeypatch.setenv("MEC_SMALL", "1")
  monkeypatch.setenv("MEC_WORKDIR", str(tmp_path / "run"))
  monkeypatch.setenv("JAX_PLATFORMS", "cpu")
  nb = _read(notebook)
  client = nbclient.NotebookClient(
    nb,
    timeout=600,
    kernel_name="python3",
    resources={"metadata": {"path": str(notebook.parent)}},
  )
  client.execute()  # raises CellExecutionError at the first cell that fails
  assert not _outputs(nb, "error")
  assert _images(nb) >= PLOTS.get(notebook.name, 0)
  for pattern in ARTIFACTS[notebook.name]:
    assert list((tmp_path / "run").glob(pattern)), f"no {pattern} in the work directory"


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_no_shell_escapes_and_subprocesses_raise(notebook):
  # `!python ...` is whichever python is first on PATH, not the kernel's, and `|| tail` swallows a
  # failed run: commands go through subprocess.run with sys.executable and check=True instead.
  code = [c.source for c in _read(notebook).cells if c.cell_type == "code"]
  shell = [line for cell in code for line in cell.splitlines() if line.lstrip().startswith("!")]
  assert not shell, shell
  for cell in code:
    calls = cell.count("subprocess.run(")
    assert cell.count("check=True") >= calls, cell
  cli = [cell for cell in code if '"mec_jax.main"' in cell]
  assert all("sys.executable" in cell for cell in cli)
