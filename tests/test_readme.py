"""README.md stays true: its API example runs and prints what it says, its names exist."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest

from configs import default
from mec_jax.configs import builtin_names

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()
API_SECTION = "## CodebookEmbed and the compression API"


def _section(title: str) -> str:
  start = README.index(title + "\n")
  end = README.find("\n## ", start + len(title))
  return README[start : end if end >= 0 else len(README)]


def _python_blocks(text: str) -> list[str]:
  return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def test_api_examples_run_and_print_what_their_comments_say(tmp_path, monkeypatch):
  # The section's blocks run in order in one namespace (the linen one continues the first).
  # Each `print(...)  # expected` line documents its output; collect those and compare.
  blocks = _python_blocks(_section(API_SECTION))
  assert len(blocks) == 2 and "mec_linen.CodebookEmbed.from_table(table)" in blocks[1]
  monkeypatch.chdir(tmp_path)
  namespace = {"__name__": "readme_example"}
  for block, count in zip(blocks, (3, 2), strict=True):
    expected = [
      line.split("  # ", 1)[1].split(" click logits")[0]
      for line in block.splitlines()
      if line.startswith("print(") and "  # " in line
    ]
    assert len(expected) == count
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
      exec(compile(block, "README.md", "exec"), namespace)
    assert out.getvalue().splitlines() == expected


def test_two_commands_are_what_ci_runs():
  section = _section("## Two commands")
  run = "pip install -e . && python -m mec_jax.main --config=synthetic"
  test = 'pip install -e ".[dev]" && python -m pytest -q tests'
  assert run in section and test in section
  assert "python -m pytest -q tests" in (REPO / ".ci" / "run").read_text()


def test_every_config_file_and_key_the_readme_names_exists():
  configs = set(re.findall(r"configs/(\w+)\.py", README))
  configs |= set(re.findall(r"^\| `(\w+)\.py`", _section("## Datasets: download and layout"), re.M))
  assert {"synthetic", "frappe", "criteo", "avazu", "kuairand"} <= configs
  for name in configs:
    assert (REPO / "configs" / f"{name}.py").exists(), name
  builtin = set(re.findall(r"--config=(\w+) ", README))  # built-in names, no path
  assert {"synthetic", "frappe"} <= builtin <= set(builtin_names()), builtin
  flat = set(_flatten(default.get_config().to_dict()))
  keys = set(re.findall(r"--config\.([a-z_][a-z_.0-9]*)=", README))
  table = _section("## Config keys")
  keys |= set(re.findall(r"^\| `([a-z_]+\.[a-z_]+)`", table, flags=re.M))
  assert len(keys) > 15
  missing = sorted(k for k in keys if k not in flat)
  assert not missing, f"README names config keys that configs/default.py lacks: {missing}"


def _flatten(tree: dict, prefix: str = "") -> list[str]:
  out = []
  for key, value in tree.items():
    out += _flatten(value, f"{prefix}{key}.") if isinstance(value, dict) else [prefix + key]
  return out


@pytest.mark.parametrize(
  "name", ["01_quickstart", "02_codebook_embed_in_your_model", "03_reproduce_mec"]
)
def test_the_notebooks_the_readme_lists_exist(name):
  assert f"`{name}.ipynb`" in README
  assert (REPO / "colab" / f"{name}.ipynb").exists()
