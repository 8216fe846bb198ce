"""Is the process that started some work still alive? Tokens that survive pid reuse."""

from __future__ import annotations

import os
import socket
from pathlib import Path


def _start_ticks(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (Linux /proc), None elsewhere."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after its end.
    fields = stat[stat.rfind(")") + 2 :].split()
    return fields[19] if len(fields) > 19 else None


def started_at(pid: int) -> float | None:
    """When a process started (seconds since the epoch; Linux /proc), None if unknown."""
    ticks = _start_ticks(pid)
    if ticks is None:
        return None
    try:
        boot = next(
            float(line.split()[1])
            for line in Path("/proc/stat").read_text().splitlines()
            if line.startswith("btime ")
        )
    except (OSError, StopIteration, ValueError):
        return None
    return boot + int(ticks) / os.sysconf("SC_CLK_TCK")


def ran_since(pid: int, since: float, slack: float = 5.0) -> bool:
    """Whether the process `pid` is alive and started no later than `since` (+ slack): a
    process started afterwards reused the number and is not the one that did the work."""
    if not pid_alive(pid):
        return False
    start = started_at(pid)
    return start is None or start <= since + slack


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists on this machine (zombies count as gone)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    try:
        state = Path(f"/proc/{pid}/stat").read_text()
        return state[state.rfind(")") + 2 :].split()[0] != "Z"
    except OSError:
        return True


def process_token(pid: int | None = None) -> str:
    """host:pid:start of a process (default: this one), recorded where work starts."""
    pid = os.getpid() if pid is None else pid
    return f"{socket.gethostname()}:{pid}:{_start_ticks(pid) or ''}"


def token_alive(token: str) -> bool | None:
    """Whether the process a token names still runs; None when it ran on another host
    (or the token is unreadable), where this machine cannot tell."""
    host, _, rest = token.partition(":")
    pid_text, _, start = rest.partition(":")
    if host != socket.gethostname() or not pid_text.isdigit():
        return None
    pid = int(pid_text)
    if not pid_alive(pid):
        return False
    # The same pid with another start time is a new process that reused the number.
    return not start or _start_ticks(pid) in (None, start)
