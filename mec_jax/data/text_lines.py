"""Whole-line chunks of a text file with exact 1-based line numbers, read in bounded memory.

Every reader of a text format goes through `iter_chunks`: it reads ``chunk_bytes`` at a time, cuts
each chunk after its last line end, and knows the line number of every line, so an error found in
row ``r`` of a chunk names the line an editor shows without rescanning the file. These rules hold for
every file read this way:

  * the file is plain text: a compressed file (gzip, zip, bzip2, xz, zstd; whatever its name)
    is refused naming its format, by `check_plain_text` (also run by `raw.require_file`);
  * line ends are ``\\n`` or ``\\r\\n``; a ``\\r`` elsewhere is refused (parsers would split the line),
    and a file whose lines end in ``\\r`` alone (old Mac style) is refused as such;
  * the last line ends with a line end. A file cut short (a partial download, a full disk) almost
    always ends inside a line, and a cut right after a delimiter or inside a free-form token leaves
    a line that still parses; so a missing final line end is refused by `require_line_end`, which
    the readers call after their own checks of that line (a malformed token is named first).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator

import numpy as np

from mec_jax.errors import DataError

CHUNK_BYTES = 16 << 20  # 16 MiB: ~70k Criteo rows; large enough that per-chunk overhead vanishes
_NEWLINE, _RETURN = 10, 13


@dataclasses.dataclass
class TextChunk:
  """Consecutive whole lines of one file.

  Attributes:
    path: the file.
    data: the bytes of the lines, line ends included (the last line of a file may lack one).
    first_line: 1-based number of the first line in ``data``.
    terminated: whether ``data`` ends with a line end (False only for a file's last chunk).
  """

  path: str
  data: bytes
  first_line: int
  terminated: bool = True

  def _bounds(self) -> tuple[np.ndarray, np.ndarray]:
    """Start and end (exclusive, line end excluded) byte offsets of each line."""
    arr = np.frombuffer(self.data, np.uint8)
    ends = np.flatnonzero(arr == _NEWLINE)
    if not self.terminated:
      ends = np.append(ends, len(arr))
    starts = np.concatenate([[0], ends[:-1] + 1]).astype(np.int64)
    stops = ends.copy()
    crlf = (stops > starts) & (arr[np.maximum(stops - 1, 0)] == _RETURN)
    return starts, stops - crlf.astype(np.int64)

  def data_lines(self) -> np.ndarray:
    """1-based line numbers of the non-blank lines, int64 ``[rows]`` (the rows a parser sees).

    Raises:
      DataError: a carriage return inside a line (naming the line).
    """
    starts, stops = self._bounds()
    arr = np.frombuffer(self.data, np.uint8)
    returns = np.flatnonzero(arr == _RETURN)
    if len(returns):
      line_of = np.searchsorted(starts, returns, side="right") - 1
      stray = returns < stops[line_of]
      if stray.any():
        lineno = self.first_line + int(line_of[np.argmax(stray)])
        raise DataError(
          f"{self.path}, line {lineno}: carriage return inside the line (line ends must be "
          f"\\n or \\r\\n), got {self.line_text(lineno)[:80]!r}"
        )
    return self.first_line + np.flatnonzero(stops > starts)

  def line_text(self, lineno: int) -> str:
    """The text of line ``lineno`` (which must lie in this chunk), without its line end."""
    starts, stops = self._bounds()
    i = lineno - self.first_line
    return self.data[starts[i] : stops[i]].decode("utf-8", errors="replace")

  def lines(self, encoding: str = "utf-8") -> Iterator[tuple[int, str]]:
    """``(lineno, text)`` of every non-blank line; undecodable bytes are a DataError."""
    self.data_lines()  # refuses stray carriage returns
    starts, stops = self._bounds()
    for i in np.flatnonzero(stops > starts):
      lineno = self.first_line + int(i)
      raw = self.data[starts[i] : stops[i]]
      try:
        yield lineno, raw.decode(encoding)
      except UnicodeDecodeError as err:
        raise DataError(
          f"{self.path}, line {lineno}: not valid {encoding} at byte {err.start} ({raw[:60]!r})"
        ) from None

  @property
  def last_line(self) -> int:
    return self.first_line + self.data.count(b"\n") - (1 if self.terminated else 0)


# Leading bytes of compressed formats (a download that was not unpacked, whatever its name).
_COMPRESSED = {
  b"\x1f\x8b": ("gzip", "gunzip it"),
  b"PK\x03\x04": ("zip", "unzip it"),
  b"BZh": ("bzip2", "bunzip2 it"),
  b"\xfd7zXZ\x00": ("xz", "unxz it"),
  b"\x28\xb5\x2f\xfd": ("zstd", "unzstd it"),
}
_SNIFF_BYTES = 1 << 16


def check_plain_text(path: str) -> None:
  """Refuses a file that is compressed, or whose lines end in ``\\r`` alone (reads 64 KiB).

  Raises:
    DataError: naming the file and what it is (``gzip-compressed``, ``CR-only line ends``).
  """
  with open(path, "rb") as fh:
    head = fh.read(_SNIFF_BYTES)
  for magic, (kind, fix) in _COMPRESSED.items():
    if head.startswith(magic):
      raise DataError(
        f"{path}: the file is {kind}-compressed, not plain text (its first bytes are "
        f"{head[: len(magic)]!r}); {fix} and point data.dir at the result"
      )
  if b"\r" in head and b"\n" not in head:
    raise DataError(
      f"{path}: lines end in a carriage return alone (CR-only line ends, old Mac style); "
      "convert them to \\n (e.g. tr '\\r' '\\n')"
    )


def iter_chunks(
  path: str, chunk_bytes: int = CHUNK_BYTES, skip_lines: int = 0
) -> Iterator[TextChunk]:
  """Yields the file as chunks of whole lines (memory: about two chunks).

  Args:
    path: the file.
    chunk_bytes: bytes read at a time; a line longer than this makes a larger chunk.
    skip_lines: lines to drop at the start (a header the caller has read already).

  Raises:
    DataError: a compressed file or CR-only line ends (`check_plain_text`).
  """
  check_plain_text(path)
  lineno = 1
  carry = b""
  with open(path, "rb") as fh:
    for _ in range(skip_lines):
      if fh.readline():
        lineno += 1
    while True:
      block = fh.read(chunk_bytes)
      if not block:
        break
      data = carry + block
      cut = data.rfind(b"\n") + 1
      if cut == 0:
        carry = data
        continue
      carry = data[cut:]
      yield TextChunk(path, data[:cut], lineno)
      lineno += data.count(b"\n", 0, cut)
  if carry:
    yield TextChunk(path, carry, lineno, terminated=False)


def require_line_end(chunk: TextChunk, field: str | None = None) -> None:
  """Refuses the file when ``chunk`` (its last chunk) ends inside a line.

  Args:
    chunk: the last chunk a reader parsed.
    field: the column/field the last line ends in, for the message.

  Raises:
    DataError: naming the file, the last line, the field and the value it ends with.
  """
  if chunk.terminated:
    return
  lineno = chunk.last_line
  tail = chunk.line_text(lineno)[-24:]
  where = f", column {field!r}" if field else ""
  raise DataError(
    f"{chunk.path}, line {lineno}{where}: the file ends inside this line (no line end after "
    f"{tail!r}), so it looks cut short; if the file is complete, end it with a newline"
  )


def finite_number(token: str) -> float | None:
  """``float(token)`` when ``token`` is a finite number written plainly (no ``_``), else None."""
  try:
    value = float(token)
  except ValueError:
    return None
  return value if math.isfinite(value) and "_" not in token else None


def count_data_lines(path: str, skip_lines: int = 0) -> int:
  """Non-blank lines of ``path`` after ``skip_lines`` (one pass, no parsing; bounded memory)."""
  return sum(len(chunk.data_lines()) for chunk in iter_chunks(path, skip_lines=skip_lines))
