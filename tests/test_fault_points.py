"""Fault points (driftloop/faults.py): `<point>:once` kills the process the first time only,
and several points may be named at once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from driftloop.paths import PROJECT_ROOT


def _reach(point: str, root: Path, wanted: str) -> int:
    env = {**os.environ, "DRIFTLOOP_DATA_DIR": str(root), "DRIFTLOOP_FAULT": wanted}
    code = f"from driftloop.faults import fault_point; fault_point({point!r})"
    return subprocess.run([sys.executable, "-c", code], cwd=PROJECT_ROOT, env=env).returncode


def test_a_once_point_kills_the_first_process_only(tmp_path: Path) -> None:
    wanted = "daily_features:once,daily_drift:once"
    assert _reach("daily_predictions", tmp_path, wanted) == 0  # not named
    assert _reach("daily_drift", tmp_path, wanted) == -signal.SIGKILL
    assert (tmp_path / "faults" / "daily_drift.fired").exists()
    assert _reach("daily_drift", tmp_path, wanted) == 0  # the retry gets past it
    assert _reach("daily_features", tmp_path, wanted) == -signal.SIGKILL
