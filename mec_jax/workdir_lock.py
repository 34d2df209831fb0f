"""One run at a time per work directory: an exclusive ``flock`` on ``<workdir>/.lock``.

Two runs writing the same checkpoints and tables corrupt each other (Orbax fails half way through
a write the other run renamed away). `hold` takes the lock without waiting, for the whole run;
a second run stops at once with a `BusyError` naming the work directory and the process that
holds it (its pid, host, start time and command, written into the lock file). The kernel drops
the lock when its holder exits, however it exits (an exception, a kill, a crash), so a stale
lock file never blocks a later run. ``--config.stage=report`` only reads and takes no lock (it
works on a read-only work directory).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import socket
import sys
import time
from collections.abc import Iterator

from absl import logging

from mec_jax.errors import BusyError

LOCK_NAME = ".lock"


def describe_holder(text: str) -> str:
  """The lock file's record of its holder in words (``"pid 12 on host, since ...: cmd"``)."""
  try:
    info = json.loads(text)
    return f"pid {info['pid']} on {info['host']}, since {info['started']}: {info['command']}"
  except (ValueError, KeyError, TypeError):
    return "a process that has not written its pid yet" if not text.strip() else text.strip()


@contextlib.contextmanager
def hold(root: str) -> Iterator[None]:
  """Holds the lock of work directory ``root`` (which exists) for the ``with`` block.

  Raises:
    BusyError: another process holds it (naming ``root`` and that process).
  """
  path = os.path.join(root, LOCK_NAME)
  fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
  try:
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      holder = describe_holder(os.pread(fd, 4096, 0).decode("utf-8", "replace"))
      raise BusyError(
        f"--workdir={root} is in use by another run ({holder}); wait for it to finish or "
        "use another --workdir"
      ) from None
    except OSError as err:  # a file system without flock (some network mounts)
      if err.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):
        raise
      logging.warning("%s: cannot lock (%s); nothing stops a second run here", path, err)
    record = {
      "pid": os.getpid(),
      "host": socket.gethostname(),
      "started": time.strftime("%Y-%m-%d %H:%M:%S"),
      "command": " ".join([os.path.basename(sys.executable), *sys.argv]),
    }
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(record).encode(), 0)
    yield
  finally:
    os.close(fd)  # releases the lock
