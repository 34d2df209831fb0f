"""README.md stays a true front door: its API example runs and prints what it says, it stays short.

Every other code block, config key and link of README.md and docs/ is checked by tests/test_docs.py.
"""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()
API_SECTION = "## CodebookEmbed and the compression API"


def _section(title: str) -> str:
  start = README.index(title + "\n")
  end = README.find("\n## ", start + len(title))
  return README[start : end if end >= 0 else len(README)]


def _python_blocks(text: str) -> list[str]:
  return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def _expected_prints(block: str) -> list[str]:
  """Each `print(...)  # expected` line documents its output."""
  return [
    line.split("  # ", 1)[1].split(" click logits")[0]
    for line in block.splitlines()
    if line.startswith("print(") and "  # " in line
  ]


@pytest.mark.parametrize(("index", "prints"), [(0, 3), (1, 2)], ids=["nnx", "linen"])
def test_api_examples_run_and_print_what_their_comments_say(tmp_path, monkeypatch, index, prints):
  block = _python_blocks(_section(API_SECTION))[index]
  if index == 1:
    assert "mec_linen.CodebookEmbed.from_table(table)" in block
  expected = _expected_prints(block)
  assert len(expected) == prints
  monkeypatch.chdir(tmp_path)
  out = io.StringIO()
  with contextlib.redirect_stdout(out):
    exec(compile(block, "README.md", "exec"), {"__name__": "readme_example"})
  assert out.getvalue().splitlines() == expected


def test_two_commands_are_what_ci_runs():
  section = _section("## Two commands")
  run = "pip install -e . && python -m mec_jax.main --config=synthetic"
  test = 'pip install -e ".[dev]" && python -m pytest -q tests'
  assert run in section and test in section
  assert "python -m pytest -q tests" in (REPO / ".ci" / "run").read_text()


def test_readme_is_a_front_door():
  lines = README.splitlines()
  assert len(lines) <= 300, f"README.md has {len(lines)} lines; move reference text to docs/"
  assert len(re.findall(r"^## ", README, flags=re.M)) <= 10


@pytest.mark.parametrize(
  "name", ["01_quickstart", "02_codebook_embed_in_your_model", "03_reproduce_mec"]
)
def test_the_notebooks_the_docs_list_exist(name):
  assert f"`{name}.ipynb`" in (REPO / "docs" / "notebooks.md").read_text()
  assert (REPO / "colab" / f"{name}.ipynb").exists()
