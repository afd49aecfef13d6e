"""Silencing what solver libraries print from C on stdout or stderr (HiGHS's banner, SCIP's
messages), which would corrupt `--json` output or break the one-line error rule."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator


@contextlib.contextmanager
def c_level_silence(descriptors: tuple[int, ...] = (1, 2)) -> Iterator[None]:
    """Point the file descriptors (1: stdout, 2: stderr) to /dev/null for the block: C code
    writes to them directly, past sys.stdout and sys.stderr."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved: list[int] = []
    try:
        saved.extend(os.dup(descriptor) for descriptor in descriptors)
        with open(os.devnull, "w") as devnull:
            for descriptor in descriptors:
                os.dup2(devnull.fileno(), descriptor)
            yield
    finally:
        for descriptor, copy in zip(descriptors, saved, strict=False):
            os.dup2(copy, descriptor)
            os.close(copy)
