"""Strict parsing, reader by reader: a malformed token, pair, number or label on the first, a middle
or the last line, and a last line cut at every byte offset, are DataErrors that name the file, the
1-based line, the column/field and the value (issue 13, item 1)."""

from __future__ import annotations

import re
from pathlib import Path

import data_fixtures as fx
import pytest

from mec_jax.data import load_dataset, registry, text_lines
from mec_jax.data.datasets import kuairand
from mec_jax.data.datasets.libfm import read_libfm
from mec_jax.errors import DataError


def _consume(data_config, name: str, directory, **overrides):
  """Parses every file of a reader (no encoding): the streamed readers' chunks or `read`."""
  data_config.name, data_config.dir = name, str(directory)
  for key, value in overrides.items():
    data_config[key] = value
  reader = registry.get_reader(name)
  if hasattr(reader, "source"):
    source = reader.source(data_config)
    for path in source.files.values():
      for _ in source.chunks(path):
        pass
  else:
    reader.read(data_config)


def _cut_last_line(path: Path, keep: int, original: bytes) -> int:
  """Rewrites ``path`` as ``original`` with its last line cut to ``keep`` bytes (no line end);
  returns that line's number."""
  body = original.rstrip(b"\r\n")
  start = body.rfind(b"\n") + 1
  path.write_bytes(body[: start + keep])
  return body[:start].count(b"\n") + 1


def _assert_cuts_refused(path: Path, parse, offsets=None):
  """Every cut of the last line of ``path`` is refused naming that line and a column/field."""
  original = path.read_bytes()
  last = original.rstrip(b"\r\n")
  length = len(last) - (last.rfind(b"\n") + 1)
  for keep in offsets or range(1, length + 1):
    lineno = _cut_last_line(path, keep, original)
    with pytest.raises(DataError) as err:
      parse()
    message = str(err.value)
    assert re.search(rf"{re.escape(path.name)}, line {lineno}\b", message), (keep, message)
    assert re.search(r"(column|field) '[^']+'", message), (keep, message)
  path.write_bytes(original[: len(original.rstrip(b"\r\n"))] + b"\n")
  parse()  # restored with a line end: accepted


# --- the streamed CSV readers --------------------------------------------------------------------


def test_criteo_x1_every_cut_of_the_last_line(tmp_path, data_config):
  fx.write_criteo_x1(tmp_path, {"train": 6, "valid": 3, "test": 3})
  _assert_cuts_refused(tmp_path / "test.csv", lambda: _consume(data_config, "criteo_x1", tmp_path))


def test_criteo_kaggle_every_cut_of_the_last_line(tmp_path, data_config):
  path = fx.write_criteo_kaggle(tmp_path, rows=12)
  _assert_cuts_refused(path, lambda: _consume(data_config, "criteo_kaggle", path))


def test_avazu_x1_every_cut_of_the_last_line(tmp_path, data_config):
  fx.write_avazu_x1(tmp_path)
  _assert_cuts_refused(tmp_path / "train.csv", lambda: _consume(data_config, "avazu_x1", tmp_path))


def test_avazu_kaggle_every_cut_of_the_last_line(tmp_path, data_config):
  path = Path(tmp_path / "train.csv")
  header = ["id", "click", "hour", *registry.get_reader("avazu_kaggle").CATEGORICAL]
  rows = [[str(10**18 + r), str(r % 2), "14102100", *["1fbe01fe"] * 21] for r in range(5)]
  path.write_text("\n".join(",".join(r) for r in [header, *rows]) + "\n")
  _assert_cuts_refused(path, lambda: _consume(data_config, "avazu_kaggle", path))


CRITEO_BAD = [
  ("label", "abc", r"column 'label': expected a number, got 'abc'"),
  ("label", "2", r"column 'label': label must be 0 or 1, got 2"),
  ("label", "", r"column 'label': label is empty"),
  ("I5", "x7", r"column 'I5': expected a number, got 'x7'"),
  ("I5", "nan", r"column 'I5': expected a finite number, got 'nan'"),
  ("I5", "inf", r"column 'I5': expected a finite number, got 'inf'"),
  ("I5", "NA", r"column 'I5': expected a number, got 'NA'"),
]


@pytest.mark.parametrize("column, value, message", CRITEO_BAD)
@pytest.mark.parametrize("row", [0, 3, 5])  # first, middle and last data line
def test_criteo_x1_bad_value_anywhere(tmp_path, data_config, column, value, message, row):
  fx.write_criteo_x1(tmp_path, {"train": 6, "valid": 2, "test": 2})
  path = tmp_path / "train.csv"
  lines = path.read_text().splitlines()
  cells = lines[row + 1].split(",")
  cells[fx.CRITEO_COLUMNS.index(column)] = value
  lines[row + 1] = ",".join(cells)
  path.write_text("\n".join(lines) + "\n")
  with pytest.raises(DataError, match=rf"train.csv, line {row + 2}, {message}"):
    _consume(data_config, "criteo_x1", tmp_path)


def test_csv_stray_carriage_return_and_missing_final_newline(tmp_path, data_config):
  fx.write_criteo_x1(tmp_path, {"train": 4, "valid": 2, "test": 2})
  path = tmp_path / "valid.csv"
  lines = path.read_text().splitlines()
  path.write_text(lines[0] + "\n" + lines[1] + "\r" + lines[2] + "\n")
  with pytest.raises(DataError, match=r"valid.csv, line 2: carriage return inside the line"):
    _consume(data_config, "criteo_x1", tmp_path)
  path.write_text("\n".join(lines))
  with pytest.raises(
    DataError, match=r"valid.csv, line 3, column 'C26': the file ends inside this line"
  ):
    _consume(data_config, "criteo_x1", tmp_path)
  path.write_text("\r\n".join(lines) + "\r\n")  # CRLF line ends are fine
  _consume(data_config, "criteo_x1", tmp_path)


# --- libFM readers -------------------------------------------------------------------------------


def _frappe_files(tmp_path, test_lines=3):
  line = "1 5:1 957:1 5039:1 5046:1 5053:1 5055:1 5058:1 5060:1 5069:1 5149:1"
  (tmp_path / "frappe.validation.libfm").write_text((line + "\n") * 3)
  (tmp_path / "frappe.test.libfm").write_text("-1" + line[1:] + "\n" + (line + "\n") * test_lines)
  return tmp_path / "frappe.test.libfm"


def test_frappe_every_cut_of_the_last_line(tmp_path, data_config):
  path = _frappe_files(tmp_path)
  _assert_cuts_refused(path, lambda: _consume(data_config, "frappe", tmp_path))


def test_libfm_last_token_cut_inside_a_pair(tmp_path):
  # The case: the last token `51` lost its `:value`, the pair count is still right.
  path = tmp_path / "x.libfm"
  path.write_text("1 3:1 7:1 51:1\n0 3:1 7:1 51")
  with pytest.raises(DataError, match=r"x.libfm, line 2, field 'c': expected 'idx:val'.*got '51'"):
    read_libfm(str(path), ["a", "b", "c"])
  path.write_text("1 3:1 7:1 51:1\n0 3:1 7:1 51:\n")
  with pytest.raises(DataError, match=r"line 2, field 'c'.*got '51:'"):
    read_libfm(str(path), ["a", "b", "c"])


@pytest.mark.parametrize(
  "bad, message",
  [
    ("1 3:1 x7:1 5:1", r"field 'b': expected 'idx:val'.*got 'x7:1'"),
    ("1 3:1 -7:1 5:1", r"field 'b': expected 'idx:val' with an integer idx >= 0.*got '-7:1'"),
    ("1 3:1 7:nan 5:1", r"field 'b'.*got '7:nan'"),
    ("1 3:1 7 5:1", r"field 'b'.*got '7'"),
    ("nan 3:1 7:1 5:1", r"column 'label': expected a number, got 'nan'"),
    (
      "1 3:1 7:1",
      r"expected a label and 3 idx:val pairs .*got 2 pairs; the line ends in field 'b'",
    ),
  ],
)
@pytest.mark.parametrize("row", [0, 2, 4])
def test_libfm_malformed_anywhere(tmp_path, bad, message, row):
  lines = ["0 3:1 7:1 5:1"] * 5
  lines[row] = bad
  path = tmp_path / "x.libfm"
  path.write_text("\n".join(lines) + "\n")
  with pytest.raises(DataError, match=rf"x.libfm, line {row + 1}(, |: ){message}"):
    read_libfm(str(path), ["a", "b", "c"])


def test_ipinyou_every_cut_of_the_last_line(tmp_path, data_config):
  names = ["weekday", "hour", "IP"]
  index = "".join(f"{f}:v{j}\t{3 * i + j}\n" for i, f in enumerate(names) for j in range(3))
  (tmp_path / "featindex.fm.txt").write_text(index)
  line = "0 1:1 4:1 7:1\n"
  (tmp_path / "train.fm.txt").write_text(line * 9)
  (tmp_path / "test.fm.txt").write_text(line * 3)
  parse = lambda: _consume(data_config, "ipinyou", tmp_path)  # noqa: E731
  _assert_cuts_refused(tmp_path / "train.fm.txt", parse)
  _assert_cuts_refused(tmp_path / "featindex.fm.txt", parse)


# --- MovieLens and KuaiRand ----------------------------------------------------------------------


def test_movielens_every_cut_of_the_last_line(tmp_path, data_config):
  (tmp_path / "ml.inter").write_text(
    "user_id:token\titem_id:token\trating:float\ttimestamp:float\n1\t1\t5\t881250949\n"
    "1\t1\t3\t881250950\n"
  )
  (tmp_path / "ml.user").write_text(
    "user_id:token\tage:token\tgender:token\toccupation:token\tzip_code:token\n1\t24\tM\tx\t85711\n"
  )
  (tmp_path / "ml.item").write_text(
    "item_id:token\trelease_year:token\tclass:token_seq\n1\t1995\tAnimation Comedy\n"
  )
  parse = lambda: _consume(data_config, "movielens", tmp_path)  # noqa: E731
  for name in ("ml.inter", "ml.user", "ml.item"):
    _assert_cuts_refused(tmp_path / name, parse)
  lines = (tmp_path / "ml.inter").read_text().splitlines()
  (tmp_path / "ml.inter").write_text("\n".join([lines[0], "1\t1\t5\t88125x949", lines[2]]) + "\n")
  with pytest.raises(DataError, match=r"ml.inter, line 2, column 'timestamp': expected a number"):
    parse()


def test_movielens_1m_dat_cuts_and_bad_integers(tmp_path, data_config):
  (tmp_path / "ratings.dat").write_text("1::10::5::978300760\n1::20::3::978302109\n")
  (tmp_path / "users.dat").write_text("1::F::1::10::48067\n")
  (tmp_path / "movies.dat").write_text("10::Toy Story (1995)::Animation\n20::Heat (1995)::Drama\n")
  parse = lambda: _consume(data_config, "movielens", tmp_path)  # noqa: E731
  _assert_cuts_refused(tmp_path / "ratings.dat", parse)
  (tmp_path / "users.dat").write_text("1::F::one::10::48067\n")
  with pytest.raises(DataError, match=r"users.dat, line 1, column 'age': expected a number"):
    parse()


def test_kuairand_cuts_of_the_last_log_line(tmp_path, data_config):
  root = kuairand.write_tiny_kuairand(str(tmp_path), variant="pure", num_rows=60)
  log = Path(root, "data", "log_standard_4_22_to_5_08_pure.csv")
  length = len(log.read_bytes().rstrip(b"\n").rsplit(b"\n", 1)[1])
  sample = sorted({1, 2, 3, length // 2, length - 2, length - 1, length, *range(5, length, 9)})
  parse = lambda: _consume(data_config, "kuairand", root, variant="pure")  # noqa: E731
  _assert_cuts_refused(log, parse, offsets=sample)
  users = Path(root, "data", "user_features_pure.csv")
  _assert_cuts_refused(users, parse, offsets=[1, 3, 10, 40])


def test_chunks_number_lines_across_chunk_boundaries(tmp_path, monkeypatch, data_config):
  monkeypatch.setattr(text_lines, "CHUNK_BYTES", 64)
  fx.write_criteo_x1(tmp_path, {"train": 9, "valid": 2, "test": 2})
  path = tmp_path / "train.csv"
  lines = path.read_text().splitlines()
  lines.insert(4, "")  # a blank line: skipped, but counted in line numbers
  lines[8] = "7" + lines[8][1:]
  path.write_text("\n".join(lines) + "\n")
  with pytest.raises(DataError, match=r"train.csv, line 9, column 'label': label must be 0 or 1"):
    data_config.name, data_config.dir = "criteo_x1", str(tmp_path)
    load_dataset(data_config, "")
