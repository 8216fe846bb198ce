"""Starting and stopping `dagster dev` for end-to-end tests, and waiting on its instance."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import TypeVar

from driftloop.paths import PROJECT_ROOT

T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def process_group(
    args: list[str], env: dict[str, str], log_path: Path, stop: int = signal.SIGINT
) -> Iterator[subprocess.Popen]:
    """A command in its own process group, stopped (then killed) with its whole group."""
    with log_path.open("w") as log:
        process = subprocess.Popen(
            args,
            cwd=PROJECT_ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield process
    finally:
        if process.poll() is None:
            with suppress(ProcessLookupError):
                os.killpg(process.pid, stop)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)
        # Nothing of the group may outlive the test.
        with suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)


@contextmanager
def dagster_dev(env: dict[str, str], log_path: Path, port: int) -> Iterator[subprocess.Popen]:
    """`python -m pipelines.dev` (dagster dev: webserver + daemon) in its own process group.

    Stopped with SIGINT, as Ctrl-C does: dagster dev then takes its webserver, daemon and
    code servers down with it (SIGTERM would leave them running).
    """
    args = [sys.executable, "-m", "pipelines.dev", "--host", "127.0.0.1", "--port", str(port)]
    with process_group(args, env, log_path) as process:
        yield process


def wait_for(what: str, probe: Callable[[], T | None], timeout: float, every: float = 3) -> T:
    """Poll `probe` until it returns something truthy; fail naming `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(every)
