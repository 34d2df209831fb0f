"""Where the command line puts tracebacks, so that the terminal shows one line per failure.

A failure ends ``python -m mec_jax.main`` with one ``error:`` line. What used to print pages
around it (Orbax's background threads and asyncio tasks reporting a failed write, an exception
in a thread or a finalizer, the traceback of a bug) goes to ``<workdir>/logs/error-<time>.log``
instead, and the last line names that file. `ErrorLog.install` routes all of them there: it sets
``threading.excepthook``, ``sys.unraisablehook`` and ``sys.excepthook``, and its `logging_filter`
moves log records that carry a traceback or come at ERROR level from a library (not mec_jax)
off the terminal into the file. The file is created at the first write; when the work directory
cannot take it (missing, read-only, full disk), it goes to the system's temp directory.
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
import threading
import time
import traceback


class ErrorLog:
  """A lazily created log file of tracebacks for one run.

  Args:
    workdir: the run's ``--workdir`` (may not exist yet).
  """

  def __init__(self, workdir: str | None):
    self.workdir = workdir
    self.path: str | None = None
    self._lock = threading.Lock()
    self._stamp = time.strftime("%Y%m%d-%H%M%S")

  def _candidates(self) -> list[str]:
    folders = []
    if self.workdir and os.path.isdir(self.workdir):
      folders.append(os.path.join(self.workdir, "logs"))
    return [*folders, tempfile.gettempdir()]

  def write(self, title: str, text: str) -> str | None:
    """Appends ``text`` under ``title``; returns the file's path (None if nothing can be written).

    A log that cannot be written (a full disk, a read-only work directory) moves to the temp
    directory, with what it held so far.
    """
    entry = f"--- {time.strftime('%H:%M:%S')} {title}\n{text.rstrip()}\n\n"
    with self._lock:
      folders = self._candidates()
      if self.path is not None and os.path.dirname(self.path) in folders:
        folders = folders[folders.index(os.path.dirname(self.path)) :]
      for folder in folders:
        path = os.path.join(folder, f"error-{self._stamp}.log")
        if folder == tempfile.gettempdir():
          path = os.path.join(folder, f"mec_jax-error-{self._stamp}-{os.getpid()}.log")
        try:
          os.makedirs(folder, exist_ok=True)
          before = ""
          if self.path is not None and self.path != path:
            with open(self.path, errors="replace") as fh:
              before = fh.read()
          with open(path, "a") as fh:
            fh.write(before + entry)
          self.path = path
          return path
        except OSError:
          continue
    return None

  def exception(self, title: str, err: BaseException) -> str | None:
    """Appends ``err``'s traceback (with its causes); returns the file's path."""
    return self.write(title, "".join(traceback.format_exception(err)))

  def install(self) -> None:
    """Routes thread, finalizer and uncaught-exception tracebacks into this log."""

    def thread_hook(args) -> None:
      if args.exc_type is SystemExit:
        return
      name = args.thread.name if args.thread is not None else "?"
      self.exception(f"exception in thread {name}", args.exc_value)

    def unraisable_hook(unraisable) -> None:
      text = "".join(
        traceback.format_exception(
          unraisable.exc_type, unraisable.exc_value, unraisable.exc_traceback
        )
      )
      self.write(f"{unraisable.err_msg or 'unraisable exception'}: {unraisable.object!r}", text)

    def except_hook(kind, value, tb) -> None:  # the main thread's: say so in one line too
      path = self.write("uncaught exception", "".join(traceback.format_exception(kind, value, tb)))
      line = " ".join(str(value).split()) or kind.__name__
      print(f"error: internal error {kind.__name__}: {line} (traceback in {path})", file=sys.stderr)

    threading.excepthook = thread_hook
    sys.unraisablehook = unraisable_hook
    sys.excepthook = except_hook

  def logging_filter(self, record: logging.LogRecord) -> bool:
    """A `logging.Filter` function: records with a traceback, and library records at ERROR
    or above, go to the file (False: not to the terminal); others pass."""
    from_library = not record.name.startswith("mec_jax") and "mec_jax" not in record.pathname
    if record.exc_info or (from_library and record.levelno >= logging.ERROR):
      text = record.getMessage()
      if record.exc_info:
        text += "\n" + "".join(traceback.format_exception(*record.exc_info))
      self.write(f"log record {record.name} {record.levelname}", text)
      return False
    return True
