"""Bad input -> ValueError naming the file, the 1-based line and the column, with a hint."""

from __future__ import annotations

import re

import pytest

from mec_jax.data import load_dataset
from mec_jax.data.datasets import kuairand

CRITEO_HEADER = ["label", *[f"I{i}" for i in range(1, 14)], *[f"C{i}" for i in range(1, 27)]]


def _criteo_line(label="0", i5="3", num_cats=26, sep=","):
  ints = ["1", "", "2", "0", i5, "7", "", "1", "2", "0", "1", "", "4"]
  return sep.join([label, *ints, *[f"{j:08x}" for j in range(num_cats)]])


def _write_criteo_x1(tmp_path, train_lines, header=CRITEO_HEADER):
  good = [",".join(CRITEO_HEADER), _criteo_line()]
  (tmp_path / "train.csv").write_text("\n".join([",".join(header), *train_lines]) + "\n")
  (tmp_path / "valid.csv").write_text("\n".join(good) + "\n")
  (tmp_path / "test.csv").write_text("\n".join(good) + "\n")


def _load(data_config, name, directory, **overrides):
  data_config.name, data_config.dir = name, str(directory)
  for key, value in overrides.items():
    data_config[key] = value
  return load_dataset(data_config, "")


@pytest.mark.parametrize(
  "lines, message",
  [
    ([_criteo_line(), _criteo_line(label="abc")], r"train.csv, line 3, column 'label': expected a number, got 'abc'"),
    ([_criteo_line(), _criteo_line(), _criteo_line(label="2")], r"train.csv, line 4, column 'label': label must be 0 or 1"),
    ([_criteo_line(label="")], r"train.csv, line 2, column 'label'"),
    ([_criteo_line(i5="x7")], r"train.csv, line 2, column 'I5': expected a number, got 'x7'"),
    ([_criteo_line(), _criteo_line(num_cats=25)], r"train.csv, line 3: expected 40 comma-separated fields"),
    ([], r"train.csv: no data rows after the header"),
  ],
)  # fmt: skip
def test_criteo_x1_bad_rows(tmp_path, data_config, lines, message):
  _write_criteo_x1(tmp_path, lines)
  with pytest.raises(ValueError, match=message):
    _load(data_config, "criteo_x1", tmp_path)


def test_line_numbers_count_blank_lines(tmp_path, data_config):
  _write_criteo_x1(tmp_path, [_criteo_line(), "", "", _criteo_line(label="3")])
  with pytest.raises(ValueError, match=r"train.csv, line 5, column 'label': label must be 0 or 1"):
    _load(data_config, "criteo_x1", tmp_path)


def test_criteo_x1_missing_columns_are_named(tmp_path, data_config):
  header = [c for c in CRITEO_HEADER if c not in ("C26", "I3")]
  _write_criteo_x1(tmp_path, [_criteo_line(num_cats=25)[: -len(",00000018")]], header=header)
  with pytest.raises(ValueError, match=r"train.csv: missing columns \['I3', 'C26'\]"):
    _load(data_config, "criteo_x1", tmp_path)


def test_criteo_x1_empty_and_missing_files(tmp_path, data_config):
  _write_criteo_x1(tmp_path, [_criteo_line()])
  (tmp_path / "valid.csv").write_text("")
  with pytest.raises(ValueError, match=r"valid.csv: file is empty.*Criteo_x1"):
    _load(data_config, "criteo_x1", tmp_path)
  (tmp_path / "valid.csv").unlink()
  with pytest.raises(ValueError, match=r"valid.csv: file not found.*unpack it so that"):
    _load(data_config, "criteo_x1", tmp_path)
  with pytest.raises(ValueError, match=r"nowhere: directory does not exist.*Download Criteo_x1"):
    _load(data_config, "criteo_x1", tmp_path / "nowhere")
  with pytest.raises(ValueError, match=r"criteo_x1: data.dir is empty"):
    _load(data_config, "criteo_x1", "")


def test_criteo_kaggle_wrong_field_count(tmp_path, data_config):
  lines = [_criteo_line(sep="\t")] * 4 + [_criteo_line(sep="\t", num_cats=24)]
  (tmp_path / "train.txt").write_text("\n".join(lines) + "\n")
  with pytest.raises(
    ValueError, match=r"train.txt, line 5: expected 40 tab-separated fields .* got 38"
  ):
    _load(data_config, "criteo_kaggle", tmp_path)


def _frappe_line(label="1", pairs=10, index="5"):
  return " ".join([label, *[f"{index}:1"] * pairs])


@pytest.mark.parametrize(
  "bad, message",
  [
    (_frappe_line(pairs=9), r"frappe.test.libfm, line 3: expected a label and 10 idx:val pairs .*got 9"),
    (_frappe_line(label="yes"), r"frappe.test.libfm, line 3, column 'label': expected a number"),
    (_frappe_line(label="2"), r"frappe.test.libfm, line 3, column 'label': expected 1 or -1, got 2"),
    (_frappe_line(index="x"), r"frappe.test.libfm, line 3, field 'user': expected 'idx:val'"),
  ],
)  # fmt: skip
def test_frappe_bad_lines(tmp_path, data_config, bad, message):
  (tmp_path / "frappe.validation.libfm").write_text(_frappe_line() + "\n")
  (tmp_path / "frappe.test.libfm").write_text("\n".join([_frappe_line("-1"), _frappe_line(), bad]))
  with pytest.raises(ValueError, match=message):
    _load(data_config, "frappe", tmp_path)


def test_frappe_empty_and_missing_files(tmp_path, data_config):
  (tmp_path / "frappe.validation.libfm").write_text(_frappe_line() + "\n")
  with pytest.raises(ValueError, match=r"frappe.test.libfm: file not found.*Download Frappe"):
    _load(data_config, "frappe", tmp_path)
  (tmp_path / "frappe.test.libfm").write_text("")
  with pytest.raises(ValueError, match=r"frappe.test.libfm: file is empty"):
    _load(data_config, "frappe", tmp_path)


def test_ipinyou_wrong_number_of_fields(tmp_path, data_config):
  line = " ".join(["0", *[f"{i}:1" for i in range(16)]])
  (tmp_path / "train.fm.txt").write_text(line + "\n" + line.rsplit(" ", 1)[0] + "\n")
  (tmp_path / "test.fm.txt").write_text(line + "\n")
  with pytest.raises(ValueError, match=r"train.fm.txt, line 2: expected a label and 16 .*got 15"):
    _load(data_config, "ipinyou", tmp_path)


def _write_movielens(tmp_path, inter_rows, user_header="user_id:token\tage:token\tgender:token"):
  (tmp_path / "ml.inter").write_text(
    "user_id:token\titem_id:token\trating:float\n" + "".join(r + "\n" for r in inter_rows)
  )
  (tmp_path / "ml.user").write_text(
    f"{user_header}\toccupation:token\tzip_code:token\n1\t2\tM\tx\t1\n"
  )
  (tmp_path / "ml.item").write_text(
    "item_id:token\trelease_year:token\tclass:token_seq\n1\t1990\tA\n"
  )


def test_movielens_errors(tmp_path, data_config):
  _write_movielens(tmp_path, ["1\t1\t5", "1\t1\tfive"])
  with pytest.raises(ValueError, match=r"ml.inter, line 3, column 'rating': expected a number"):
    _load(data_config, "movielens", tmp_path)
  _write_movielens(tmp_path, ["1\t1\t5", "1\t1"])
  with pytest.raises(
    ValueError, match=r"ml.inter, line 3: expected 3 '\\t'-separated fields, got 2"
  ):
    _load(data_config, "movielens", tmp_path)
  _write_movielens(tmp_path, ["1\t1\t5"], user_header="user_id:token\tage:token\tsex:token")
  with pytest.raises(ValueError, match=r"ml.user: missing columns \['gender'\]"):
    _load(data_config, "movielens", tmp_path)
  for f in tmp_path.iterdir():
    f.unlink()
  with pytest.raises(ValueError, match=r"no <name>.inter file and no ratings.dat"):
    _load(data_config, "movielens", tmp_path)


def test_kuairand_missing_files_say_what_to_download(tmp_path, data_config):
  with pytest.raises(ValueError, match=r"does not exist.*KuaiRand-1K from https://kuairand.com"):
    _load(data_config, "kuairand", tmp_path / "KuaiRand-1K", variant="1k")
  (tmp_path / "data").mkdir()
  with pytest.raises(
    ValueError,
    match=re.escape(str(tmp_path / "data" / "log_standard_4_08_to_4_21_pure.csv"))
    + r": file not found.*Download KuaiRand-Pure from https://kuairand.com and unpack it so "
    r"that <data.dir>/data/log_standard_4_08_to_4_21_pure.csv exists",
  ):
    _load(data_config, "kuairand", tmp_path, variant="pure")
  kuairand.write_tiny_kuairand(str(tmp_path), variant="pure", num_rows=100)
  (tmp_path / "data" / "user_features_pure.csv").unlink()
  with pytest.raises(ValueError, match=r"user_features_pure.csv: file not found.*KuaiRand-Pure"):
    _load(data_config, "kuairand", tmp_path, variant="pure")
  with pytest.raises(ValueError, match=r"data.variant must be one of .*got '2k'"):
    _load(data_config, "kuairand", tmp_path, variant="2k")


def test_kuairand_bad_click_value(tmp_path, data_config):
  kuairand.write_tiny_kuairand(str(tmp_path), variant="pure", num_rows=100)
  path = tmp_path / "data" / "log_standard_4_22_to_5_08_pure.csv"
  lines = path.read_text().splitlines()
  columns = lines[0].split(",")
  row = lines[3].split(",")
  row[columns.index("is_click")] = "maybe"
  lines[3] = ",".join(row)
  path.write_text("\n".join(lines) + "\n")
  with pytest.raises(ValueError, match=r"4_22_to_5_08_pure.csv, line 4, column 'is_click'"):
    _load(data_config, "kuairand", tmp_path, variant="pure")


def test_bad_split_fractions(tmp_path, data_config):
  data_config.synthetic.num_rows = 100
  with pytest.raises(ValueError, match=r"split_fractions must be three non-negative numbers"):
    _load(data_config, "synthetic", "", split_fractions=(0.8, 0.3, 0.1))
  with pytest.raises(ValueError, match=r"data.synthetic.click_rate: invalid value 1.5"):
    data_config.synthetic.click_rate = 1.5
    _load(data_config, "synthetic", "")
