"""Files still being written: when a landed file is taken, and what happens if it changes after.

A file is taken only once it has been quiet for `IngestLimits.quiet_seconds`
(DRIFTLOOP_LANDING_QUIET_SECONDS): its modification time is at least that old. A writer can
still pause longer than that and go on writing; what it writes then is not lost:

- written while the ingest read the file: the file's size or modification time differ
  after reading from before, so it stays in landing and is ingested again as a correction
  (same name, new content: its rows replace the partial ones, `ingest.py`);
- written after the file was archived (a rename keeps the writer's open handle on it): an
  archived file keeps the modification time it had when it was read, which is older than
  the rename's status change time; a later write sets both to the same instant. Such a
  file (its content no longer matches the hash in its archive name) goes back to landing
  under its own name and is ingested again, as a correction.

Landing a file safely (docs/reliability.md): write it under a hidden or temporary name
(`.name`, `name.tmp`, `name.part`) and rename it when complete; the landing zone ignores
such names.
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path

from driftloop.data.limits import file_digest
from driftloop.paths import DatasetPaths


def is_quiet(stat: os.stat_result, quiet_seconds: float, now: float | None = None) -> bool:
    """True when the file was last modified at least `quiet_seconds` ago."""
    now = time.time() if now is None else now
    return now - stat.st_mtime >= quiet_seconds


def same_file_state(before: os.stat_result, after: os.stat_result) -> bool:
    """Size and modification time unchanged: nothing was written in between."""
    return (before.st_size, before.st_mtime_ns) == (after.st_size, after.st_mtime_ns)


def mark_archived(archived: Path, read: os.stat_result) -> None:
    """Give the archived file back the modification time it had when read (module docstring):
    its status change time, set now, is then later, until someone writes to it."""
    with contextlib.suppress(FileNotFoundError):
        os.utime(archived, ns=(read.st_atime_ns, read.st_mtime_ns))


def written_after_archiving(paths: DatasetPaths) -> list[Path]:
    """Archived files whose last write is not older than their archiving: from stat only."""
    if not paths.archive.is_dir():
        return []
    found = []
    for path in paths.archive.iterdir():
        if "__" not in path.name or not path.is_file():
            continue
        try:
            stat = path.stat()
        except FileNotFoundError:
            continue
        if stat.st_mtime_ns >= stat.st_ctime_ns:
            found.append(path)
    return sorted(found)


def reclaim_written_archives(paths: DatasetPaths) -> list[str]:
    """Move archived files written to after archiving back to landing under their own names
    (ingested again as corrections); returns those names. A file whose content still matches
    its archive name is marked archived again instead."""
    reclaimed = []
    for path in written_after_archiving(paths):
        digest, name = path.name.split("__", 1)
        try:
            stat = path.stat()
            if file_digest(path) == digest:
                mark_archived(path, stat)
                continue
            paths.landing.mkdir(parents=True, exist_ok=True)
            target = paths.landing / name
            if target.exists():  # a newer version already waits: it supersedes this one
                mark_archived(path, stat)
                continue
            os.replace(path, target)
        except FileNotFoundError:
            continue
        reclaimed.append(name)
    return reclaimed
