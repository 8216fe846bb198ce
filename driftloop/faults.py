"""Fault points for the fault suite: DRIFTLOOP_FAULT names a step where the process dies.

``DRIFTLOOP_FAULT=<point>`` makes the process kill itself with SIGKILL when it reaches
``fault_point("<point>")``, as a crash or an out-of-memory kill would: no cleanup, no
``finally``. ``DRIFTLOOP_FAULT=<point>:pause`` instead writes
``<data root>/faults/<point>.paused`` and waits until that file is removed (at most
``PAUSE_LIMIT_S``), so a test can change the world (delete a store) at that exact step.
``<point>:once`` dies there the first time only (``<data root>/faults/<point>.fired`` says
it did), so that the run that retries the step gets past it. Several points may be named,
separated by commas. Unset, a fault point is one dictionary lookup. The points are listed
in docs/reliability.md.
"""

from __future__ import annotations

import os
import signal
import time

from driftloop.paths import data_root

ENV = "DRIFTLOOP_FAULT"
PAUSE_LIMIT_S = 300.0


def fault_point(name: str) -> None:
    """Die (or pause) here if $DRIFTLOOP_FAULT names this point."""
    raw = os.environ.get(ENV)
    if not raw:
        return
    wanted = next((w for w in raw.split(",") if w.split(":", 1)[0] == name), None)
    if wanted is None:
        return
    if wanted.endswith(":once"):
        fired = data_root() / "faults" / f"{name}.fired"
        if fired.exists():
            return
        fired.parent.mkdir(parents=True, exist_ok=True)
        fired.write_text(str(os.getpid()))
        os.kill(os.getpid(), signal.SIGKILL)
    if not wanted.endswith(":pause"):
        os.kill(os.getpid(), signal.SIGKILL)
    marker = data_root() / "faults" / f"{name}.paused"
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(str(os.getpid()))
    deadline = time.monotonic() + PAUSE_LIMIT_S
    while marker.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
