"""README.md and docs/*.md stay true: their code runs, the names they use exist, their links resolve.

Every ```python block executes in a temporary directory. A block that reads a finished work
directory names one of `WORKDIR_PLACEHOLDERS`; it runs against a copy of the quick smoke run of
`tests/conftest.py`. A block that cannot run here is preceded by ``<!-- not run: <reason> -->``.
"""

from __future__ import annotations

import importlib
import json
import re
import shutil
from pathlib import Path

import pytest

from configs import default

REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
# The README's API examples run in tests/test_readme.py, which also checks what they print;
# docs/methods.md's example method runs end to end in tests/test_methods_docs.py.
CHECKED_ELSEWHERE = {("README.md", 0), ("README.md", 1), ("docs/methods.md", 0)}
WORKDIR_PLACEHOLDERS = ("/tmp/mec_synthetic", "/tmp/mec_smoke")
NOT_RUN = re.compile(r"<!-- not run: (.*?) -->\s*$")
MAX_NOT_RUN = 3  # sparingly: a block that does not run is a block that can go stale


def _name(page: Path) -> str:
  return str(page.relative_to(REPO))


def _strip_fences(text: str) -> str:
  return re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)


def _python_blocks(text: str) -> list[tuple[str, str | None]]:
  """``(code, not_run_reason)`` for every ```python block, in order."""
  blocks = []
  for match in re.finditer(r"^```python\n(.*?)^```", text, flags=re.S | re.M):
    before = text[: match.start()].rstrip("\n").rsplit("\n", 1)[-1]
    reason = NOT_RUN.search(before)
    blocks.append((match.group(1), reason.group(1).strip() if reason else None))
  return blocks


BLOCKS = [
  (_name(page), i, code, reason)
  for page in PAGES
  for i, (code, reason) in enumerate(_python_blocks(page.read_text()))
]


def test_pages_have_python_blocks_and_few_are_not_run():
  assert len(BLOCKS) >= 3
  not_run = [(page, i, reason) for page, i, _, reason in BLOCKS if reason is not None]
  assert all(reason for _, _, reason in not_run), f"a not-run block needs a reason: {not_run}"
  assert len(not_run) <= MAX_NOT_RUN, not_run


@pytest.mark.parametrize(
  "page,index,code,reason",
  [b for b in BLOCKS if (b[0], b[1]) not in CHECKED_ELSEWHERE],
  ids=[f"{b[0]}:{b[1]}" for b in BLOCKS if (b[0], b[1]) not in CHECKED_ELSEWHERE],
)
def test_python_block_runs(page, index, code, reason, tmp_path, monkeypatch, request):
  if reason is not None:
    pytest.skip(f"marked not run: {reason}")
  placeholders = [p for p in WORKDIR_PLACEHOLDERS if p in code]
  if placeholders:
    _, finished, _ = request.getfixturevalue("finished_quick")
    workdir = tmp_path / "run"
    shutil.copytree(finished, workdir)
    for placeholder in placeholders:
      code = code.replace(placeholder, str(workdir))
  monkeypatch.chdir(tmp_path)
  exec(compile(code, f"{page} block {index}", "exec"), {"__name__": "docs_example"})


def _flatten(tree: dict, prefix: str = "") -> list[str]:
  out = []
  for key, value in tree.items():
    out += _flatten(value, f"{prefix}{key}.") if isinstance(value, dict) else [prefix + key]
  return out


FILE_SUFFIXES = (
  ".csv",
  ".txt",
  ".py",
  ".npz",
  ".npy",
  ".json",
  ".md",
  ".libfm",
  ".parquet",
  ".stablehlo",
)


def _is_api(name: str) -> bool:
  """``export.load`` names a function of `mec_jax.export`, not a config key of section ``export``."""
  section, _, attr = name.partition(".")
  try:
    module = importlib.import_module(f"mec_jax.{section}")
  except ImportError:
    return False
  return hasattr(module, attr.split(".")[0])


def test_every_config_key_the_pages_name_exists():
  config = default.get_config().to_dict()
  flat = set(_flatten(config))
  sections = "|".join(key for key, value in config.items() if isinstance(value, dict))
  named = re.compile(rf"`((?:{sections})\.[a-z_][a-z_0-9.]*)(?:=[^`]*)?`")
  keys = {}
  for page in PAGES:
    text = page.read_text()
    found = set(re.findall(r"--config\.([a-z_][a-z_.0-9]*)=", text))
    found |= {k for k in named.findall(text) if not k.endswith(FILE_SUFFIXES) and not _is_api(k)}
    for key in found:
      keys.setdefault(key, _name(page))
  table = (REPO / "docs" / "config.md").read_text()
  table_keys = set(re.findall(r"^\| `([a-z_]+\.[a-z_]+)`", table, flags=re.M))
  assert len(table_keys) > 15 and len(keys) > 40
  missing = sorted(f"{k} ({page})" for k, page in keys.items() if k not in flat)
  assert not missing, f"pages name config keys that configs/default.py lacks: {missing}"
  assert table_keys <= flat, sorted(table_keys - flat)


def test_every_config_file_the_pages_name_exists():
  names = set()
  for page in PAGES:
    names |= set(re.findall(r"configs/((?:sweeps/)?\w+)\.py", page.read_text()))
  datasets = (REPO / "docs" / "datasets.md").read_text()
  names |= set(re.findall(r"^\| `(\w+)\.py`", datasets, flags=re.M))
  assert {"synthetic", "smoke", "frappe", "criteo", "avazu", "kuairand", "sweeps/frappe"} <= names
  missing = sorted(n for n in names if not (REPO / "configs" / f"{n}.py").exists())
  assert not missing, missing


def _anchors(path: Path) -> set[str]:
  """GitHub's heading ids: lower case, punctuation but ``-`` and ``_`` dropped, spaces to ``-``."""
  headings = re.findall(r"^#+ (.*)$", _strip_fences(path.read_text()), flags=re.M)
  return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}


def test_every_relative_link_resolves():
  pages = [*PAGES, REPO / "bench" / "RESULTS.md", REPO / "bench" / "HISTORY.md"]
  checked, broken = 0, []
  for page in pages:
    for target in re.findall(r"\]\(([^)\s]+)\)", _strip_fences(page.read_text())):
      if re.match(r"[a-z]+:", target):
        continue  # http(s), mailto: not ours to check offline
      path, _, anchor = target.partition("#")
      resolved = (page.parent / path).resolve() if path else page
      checked += 1
      if not resolved.exists() or REPO not in [resolved, *resolved.parents]:
        broken.append(f"{_name(page)}: {target} (no such file in the repository)")
      elif anchor and resolved.suffix == ".md" and anchor not in _anchors(resolved):
        broken.append(f"{_name(page)}: {target} (no heading with that anchor)")
  assert checked > 40
  assert not broken, "\n".join(broken)


def test_every_docs_page_is_in_the_index():
  index = (REPO / "docs" / "index.md").read_text()
  readme = (REPO / "README.md").read_text()
  for page in (REPO / "docs").glob("*.md"):
    if page.name != "index.md":
      assert f"]({page.name})" in index, f"docs/index.md does not link {page.name}"
  assert "](docs/index.md)" in readme


def test_report_json_keys_are_documented(finished_quick):
  _, workdir, _ = finished_quick
  report = json.loads((Path(workdir) / "report.json").read_text())
  text = (REPO / "docs" / "config.md").read_text()
  section = text[text.index("## report.json") :]
  rows = re.findall(r"^\| (`.*?) \| (.*) \|$", section, flags=re.M)
  documented = {k: what for keys, what in rows for k in re.findall(r"`(\w+)`", keys)}
  assert set(report) <= set(documented), sorted(set(report) - set(documented))
  conditional = {k for k, what in documented.items() if what.startswith("only when")}
  assert set(documented) - set(report) <= conditional, sorted(set(documented) - set(report))
  per_field = set().union(*(set(stats) for stats in report["compressed_fields"].values()))
  named = set(re.findall(r"`(\w+)`", documented["compressed_fields"]))
  assert named <= per_field, sorted(named - per_field)
  assert set(re.findall(r"`(\w+)`", documented["memory"])) <= set(report["memory"])
