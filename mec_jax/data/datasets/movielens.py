"""MovieLens as CTR: label ``rating >= 4``; fields user, item, demographics, year, first genre.

Two layouts in ``data.dir`` are read:

  * RecBole atomic files ``<name>.inter`` / ``<name>.user`` / ``<name>.item`` (tab-separated,
    header ``field:type``), e.g. ``ml-100k.*`` or ``ml-1m.*``;
  * GroupLens ML-1M ``ratings.dat`` / ``users.dat`` / ``movies.dat`` (``::``-separated).

Fields: ``user_id, item_id, age, gender, occupation, zip3`` (first 3 characters of the zip
code), ``release_year`` (RecBole's column; from the ``(YYYY)`` at the end of an ML-1M title) and
``genre``, the **first** genre listed for the movie: genres are multi-valued (up to 6) but the
batch format has one id per field, and the first listed genre is the one most used as a single
label. Missing side information is a value of its own. Rows are split at random by
``data.split_fractions`` (default 80/10/10) with ``data.split_seed``.
"""

from __future__ import annotations

import glob
import os

import numpy as np
import pandas as pd

from mec_jax.data import text_lines
from mec_jax.data.raw import RawData, data_dir_of, max_rows_of, random_split, require_file
from mec_jax.errors import DataError

VERSION = 1
CONFIG_KEYS = ("dir", "max_rows", "split_fractions", "split_seed")
FIELDS = ["user_id", "item_id", "age", "gender", "occupation", "zip3", "release_year", "genre"]
HINT = (
  "Put the RecBole atomic files ml-100k.inter/.user/.item (pip download --no-deps recbole, "
  "recbole/dataset_example/ml-100k/) or the GroupLens ML-1M ratings.dat/users.dat/movies.dat "
  "(https://grouplens.org/datasets/movielens/) in data.dir."
)


def read(data_config) -> RawData:
  directory = data_dir_of(data_config, "movielens", HINT)
  max_rows = max_rows_of(data_config)
  inters = sorted(glob.glob(os.path.join(directory, "*.inter")))
  if len(inters) > 1:
    raise DataError(f"{directory}: several .inter files {inters}; keep one dataset per directory")
  if inters:
    frame = _read_atomic(inters[0][: -len(".inter")], max_rows)
  elif os.path.isfile(os.path.join(directory, "ratings.dat")):
    frame = _read_ml1m(directory, max_rows)
  else:
    raise DataError(f"{directory}: no <name>.inter file and no ratings.dat. {HINT}")
  splits = random_split(frame, data_config.split_fractions, int(data_config.split_seed))
  return RawData("movielens", splits, FIELDS)


def _read_atomic(stem: str, max_rows: int) -> pd.DataFrame:
  inter = _read_table(f"{stem}.inter", "\t", None, ["user_id", "item_id", "rating"], max_rows)
  users = _read_table(
    f"{stem}.user", "\t", None, ["user_id", "age", "gender", "occupation", "zip_code"]
  )
  items = _read_table(f"{stem}.item", "\t", None, ["item_id", "release_year"])
  genre_col = next((c for c in ("class", "genre") if c in items.columns), None)
  if genre_col is None:
    raise DataError(f"{stem}.item: missing column 'class' (or 'genre') with the movie genres")
  items["genre"] = items[genre_col].str.split(" ").str[0]
  return _join(inter, f"{stem}.inter", users, items)


def _read_ml1m(directory: str, max_rows: int) -> pd.DataFrame:
  path = os.path.join(directory, "ratings.dat")
  names = ["user_id", "item_id", "rating", "timestamp"]
  inter = _read_table(path, "::", names, names, max_rows, numbers=names)
  names = ["user_id", "gender", "age", "occupation", "zip_code"]
  numbers = ["user_id", "age", "occupation"]
  users = _read_table(os.path.join(directory, "users.dat"), "::", names, names, numbers=numbers)
  names = ["item_id", "title", "genres"]
  items = _read_table(
    os.path.join(directory, "movies.dat"), "::", names, names, numbers=["item_id"]
  )
  items["release_year"] = items["title"].str.extract(r"\((\d{4})\)\s*$", expand=False)
  items["genre"] = items["genres"].str.split("|").str[0]
  return _join(inter, path, users, items)


def _join(inter: pd.DataFrame, path: str, users: pd.DataFrame, items: pd.DataFrame):
  rating = pd.to_numeric(inter["rating"], errors="coerce").to_numpy()
  if np.isnan(rating).any():
    row = int(np.argmax(np.isnan(rating)))
    line = int(inter["_line"].iloc[row])
    raise DataError(
      f"{path}, line {line}, column 'rating': expected a number, got {inter['rating'].iloc[row]!r}"
    )
  users = users.drop_duplicates("user_id").set_index("user_id")
  items = items.drop_duplicates("item_id").set_index("item_id")
  frame = pd.DataFrame({"user_id": inter["user_id"], "item_id": inter["item_id"]})
  for col in ("age", "gender", "occupation"):
    frame[col] = users[col].reindex(inter["user_id"]).to_numpy()
  frame["zip3"] = users["zip_code"].str[:3].reindex(inter["user_id"]).to_numpy()
  for col in ("release_year", "genre"):
    frame[col] = items[col].reindex(inter["item_id"]).to_numpy()
  frame["label"] = (rating >= 4).astype(np.float32)
  return frame


def _read_table(path, sep, names, required, max_rows=0, numbers=()) -> pd.DataFrame:
  """Reads a small separator-delimited file as strings, strictly (field counts, numbers, last line).

  Args:
    names: column names, or ``None`` when line 1 is a RecBole ``name:type`` header (then the
      ``float`` columns must hold numbers).
    required: columns that must be present.
    numbers: columns that must hold a finite number (or be empty) on every line.

  Returns:
    A DataFrame of strings (empty -> NaN) with an extra ``_line`` column (1-based line numbers).
  """
  require_file(path, HINT)
  encoding = "utf-8" if sep == "\t" else "latin-1"
  header = names is None
  if header:
    with open(path, encoding=encoding) as fh:
      columns = [h.strip().split(":", 1) for h in fh.readline().rstrip("\r\n").split(sep)]
    names = [c[0] for c in columns]
    numbers = [c[0] for c in columns if c[1:] == ["float"]]
  missing = [c for c in required if c not in names]
  if missing:
    raise DataError(f"{path}: missing columns {missing}; the header has {names}")
  checked = [(i, c) for i, c in enumerate(names) if c in set(numbers)]
  rows, line_numbers, chunk = [], [], None
  for chunk in text_lines.iter_chunks(path, skip_lines=int(header)):
    for lineno, line in chunk.lines(encoding):
      parts = line.split(sep)
      if len(parts) != len(names):
        last = names[len(parts) - 1] if len(parts) <= len(names) else f"#{len(parts)}"
        raise DataError(
          f"{path}, line {lineno}: expected {len(names)} {sep!r}-separated fields, got "
          f"{len(parts)}; the line ends in column {last!r} with {parts[-1][-24:]!r}"
        )
      for i, col in checked:
        if parts[i] and text_lines.finite_number(parts[i]) is None:
          raise DataError(
            f"{path}, line {lineno}, column {col!r}: expected a number, got {parts[i]!r}"
          )
      rows.append(parts)
      line_numbers.append(lineno)
      if max_rows and len(rows) >= max_rows:
        return _frame(rows, names, line_numbers)
  if not rows:
    raise DataError(f"{path}: no data rows")
  text_lines.require_line_end(chunk, names[-1])
  return _frame(rows, names, line_numbers)


def _frame(rows, names, line_numbers) -> pd.DataFrame:
  frame = pd.DataFrame(rows, columns=names).replace("", np.nan)
  frame["_line"] = line_numbers
  return frame
