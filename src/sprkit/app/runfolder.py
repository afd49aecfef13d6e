"""A run folder used by one run at a time: a lock, a run marker, replacement of an old run.

The lock is an advisory lock (fcntl.flock) on `.sprkit.lock` inside the folder: the kernel
drops it when its process ends, however it ends, so a lock file left by a killed run is
recognized as free at once, and two live runs can never hold it together. The file carries
the holder's process id for the message of a refused run. A run writes `.sprkit-run` when it
starts: only a folder with that marker holds a run, so sprkit never takes a user's own
`training/` or `network/` folder for one, let alone deletes it.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sprkit.app.reports import REPORT_FILES
from sprkit.atomic import check_output_folder, write_atomically
from sprkit.errors import RunExistsError, RunFolderError

LOCK_NAME = ".sprkit.lock"
MARKER = ".sprkit-run"
# Everything a run writes at the top of its folder (a run is these, together, and the marker).
RUN_PARTS = ("baseline", "training", "network", *REPORT_FILES, MARKER)
CHECKPOINTS = ("training/checkpoint.pt", "baseline/checkpoint.pt")


class RunFolder:
    """`with RunFolder(out) as folder:` holds the lock of `out` (created if needed) until the
    block ends; RunFolderError if another live run holds it. A folder of another kind of run
    (a sweep) names its own `marker`, `parts` and `kind` (for messages)."""

    def __init__(
        self,
        path: Path,
        *,
        marker: str = MARKER,
        parts: tuple[str, ...] = RUN_PARTS,
        kind: str = "run",
    ) -> None:
        self.path = Path(path)
        self.marker, self.parts, self.kind = marker, parts, kind
        self._handle = None

    def __enter__(self) -> RunFolder:
        check_output_folder(self.path)  # creates the folder
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

    def check_free(self, *, resume: bool, overwrite: bool) -> None:
        """RunExistsError if the folder holds a run and neither `resume` nor `overwrite` is
        given; RunFolderError if it holds files named like a run's parts but no marker."""
        if (self.path / self.marker).exists():
            if not (resume or overwrite):
                raise RunExistsError(f"{self.path} already holds a {self.kind}")
            return
        foreign = [p for p in self.parts if (self.path / p).exists()]
        if foreign:
            raise RunFolderError(
                f"{self.path} holds {', '.join(foreign)} but no sprkit {self.kind}: "
                "choose another folder"
            )

    def mark(self) -> None:
        """Write the run marker (the folder now holds a run)."""
        write_atomically(
            self.path / self.marker, lambda path: path.write_text(f"sprkit {self.kind}\n")
        )

    @contextmanager
    def replacing(self) -> Iterator[None]:
        """Set the prune run (RUN_PARTS) in the folder aside (one hidden folder) for the block. If
        the block fails before the new run wrote a checkpoint, the new run's parts are removed
        and the old run is put back whole; otherwise the old run is deleted."""
        for left in self.path.glob(".replaced-*"):  # from a replacement that was killed
            shutil.rmtree(left, ignore_errors=True)
        aside = Path(tempfile.mkdtemp(dir=self.path, prefix=".replaced-"))
        moved: list[str] = []
        started = False
        try:
            for part in RUN_PARTS:
                if (self.path / part).exists():
                    os.replace(self.path / part, aside / part)
                    moved.append(part)
            started = True
            yield
        except BaseException:
            if not any((self.path / c).exists() for c in CHECKPOINTS):
                if started:  # the new run's parts go; the old run's parts come back
                    for part in RUN_PARTS:
                        _remove(self.path / part)
                for part in moved:
                    os.replace(aside / part, self.path / part)
            raise
        finally:
            shutil.rmtree(aside, ignore_errors=True)


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()
