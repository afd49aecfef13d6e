"""A run folder used by one run at a time: a lock, and replacement of an old run.

The lock is an advisory lock (fcntl.flock) on `.sprkit.lock` inside the folder: the kernel
drops it when its process ends, however it ends, so a lock file left by a killed run is
recognized as free at once, and two live runs can never hold it together. The file carries
the holder's process id for the message of a refused run.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import tempfile
from pathlib import Path

from sprkit.atomic import check_output_folder
from sprkit.errors import RunFolderError

LOCK_NAME = ".sprkit.lock"
# Everything a run writes at the top of its folder (a run is these, together).
RUN_PARTS = (
    "baseline",
    "training",
    "network",
    "report.json",
    "report.csv",
    "layers.csv",
    "kept_channels.png",
)


class RunFolder:
    """`with RunFolder(out) as folder:` holds the lock of `out` (created if needed) until the
    block ends; RunFolderError if another live run holds it."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._handle = None

    def __enter__(self) -> RunFolder:
        check_output_folder(self.path)
        self.path.mkdir(parents=True, exist_ok=True)
        handle = open(self.path / LOCK_NAME, "a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            handle.close()
            raise RunFolderError(
                f"{self.path} is in use by another sprkit run (process {holder}); "
                "wait for it to end or choose another folder"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        self._handle = handle
        return self

    def __exit__(self, *exc_info) -> None:
        if self._handle is not None:
            self._handle.close()  # closing drops the lock
            self._handle = None

    def holds_run(self) -> bool:
        """Whether a run (finished or not) is already in the folder."""
        return any((self.path / part).exists() for part in RUN_PARTS)

    def discard_run(self) -> None:
        """Remove every part of the run in the folder together: first all are moved into one
        hidden folder (renames, nothing half-deleted is ever visible beside a new run), then
        that folder is deleted."""
        for left in self.path.glob(".replaced-*"):  # from a discard that was interrupted
            shutil.rmtree(left, ignore_errors=True)
        parts = [self.path / part for part in RUN_PARTS if (self.path / part).exists()]
        if not parts:
            return
        trash = Path(tempfile.mkdtemp(dir=self.path, prefix=".replaced-"))
        for part in parts:
            os.replace(part, trash / part.name)
        shutil.rmtree(trash)
