"""Atomic file replacement: a file is either its old version or its complete new one."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from sprkit.errors import OutputError


def check_output_file(path: Path) -> None:
    """OutputError unless a file can be written at `path`: checked before a long computation,
    so that an unwritable path fails at once."""
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"{path} is a folder, not a file name")
    check_output_folder(path.parent)


def check_output_folder(folder: Path) -> None:
    """Create `folder` if needed and write a probe file into it (permission bits alone do not
    tell: root ignores them, a read-only mount does not show in them); OutputError naming the
    cause if either fails."""
    folder = Path(folder)
    existing = next((f for f in (folder, *folder.parents) if f.exists()), Path("."))
    if not existing.is_dir():
        raise OutputError(f"cannot write into {folder}: {existing} is a file, not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as error:
        raise OutputError(f"cannot write into {folder}: {error.strerror}") from None


def write_atomically(path: Path, write: Callable[[Path], None]) -> None:
    """Call `write` on a temporary path beside `path` (a unique name, so that concurrent
    writers never share one), then rename it over `path`; on any failure the temporary file
    is removed and `path` is left as it was. The file gets the usual mode (0666 & ~umask)."""
    path = Path(path)
    descriptor, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(descriptor)
    temporary = Path(name)
    try:
        write(temporary)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temporary, 0o666 & ~umask)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
