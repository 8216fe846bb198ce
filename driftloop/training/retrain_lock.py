"""One retrain per dataset between training and the gate's decision: a lock under the data root.

The daemon's run queue limits retraining runs to one per dataset (a tag concurrency
limit), but runs launched from the CLI do not pass through that queue. So the training
step takes this lock before it trains and the promotion step gives it back after the
decision; a second retrain that finds it held by a run still in progress stops before
training, with a message naming that run. A holder that died (killed, crashed, or a run
that failed after training) does not block anyone: whether it is still in progress is
the caller's question (`is_active`), answered from the Dagster instance and the process.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from driftloop.paths import DatasetPaths
from driftloop.processes import process_token


class RetrainBusy(RuntimeError):
    """Another retrain of the dataset is between training and its gate decision."""


@dataclass(frozen=True)
class Holder:
    owner: str  # the Dagster run id
    token: str  # driftloop.processes.process_token of the training step's process
    since: str  # ISO time the lock was taken


def lock_path(paths: DatasetPaths) -> Path:
    return paths.root / "locks" / f"{paths.dataset}.retrain.json"


@contextmanager
def _exclusive(path: Path) -> Iterator[None]:
    """Serialise readers and writers of the lock file across processes (held briefly)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".flock"), "w") as guard:
        fcntl.flock(guard, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(guard, fcntl.LOCK_UN)


def holder(paths: DatasetPaths) -> Holder | None:
    """Who holds the lock (whether or not it is still active), None if nobody."""
    path = lock_path(paths)
    try:
        data = json.loads(path.read_text())
        return Holder(data["owner"], data["token"], data["since"])
    except (OSError, ValueError, KeyError):
        return None


def acquire(paths: DatasetPaths, owner: str, is_active: Callable[[Holder], bool]) -> Holder:
    """Take the lock for run `owner`; RetrainBusy if another active run holds it."""
    path = lock_path(paths)
    with _exclusive(path):
        current = holder(paths)
        if current is not None and current.owner != owner and is_active(current):
            raise RetrainBusy(
                f"another retrain of {paths.dataset} (Dagster run {current.owner}, since "
                f"{current.since}) is between training and its gate decision; this run does "
                f"not train. At most one runs at a time ({path})."
            )
        mine = Holder(owner, process_token(), datetime.now(UTC).isoformat())
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(asdict(mine)))
        os.replace(tmp, path)
        return mine


def release(paths: DatasetPaths, owner: str) -> bool:
    """Give the lock back if `owner` holds it; returns whether it did."""
    path = lock_path(paths)
    with _exclusive(path):
        current = holder(paths)
        if current is None or current.owner != owner:
            return False
        path.unlink(missing_ok=True)
        return True
