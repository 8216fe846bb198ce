"""An append-only JSON-lines log of accepted events, shared by the server's worker processes.

A worker that accepts events appends them (one write under an exclusive `flock`, so lines
of two workers never interleave); every worker reads what is new before it answers a
request (one `stat` when nothing is), so an event accepted by any worker is seen by the
next request whichever worker answers it. The log also lets a restarted server recover the
events of days the lake does not hold yet.
"""

from __future__ import annotations

import fcntl
import json
import os
from datetime import datetime
from pathlib import Path
from typing import Any

from driftloop.data.contract import ColumnType, Contract


class EventLog:
    """One dataset's event log file; `read_new` returns records not read by this instance."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._offset = 0
        self._partial = b""

    def append(self, records: list[dict[str, Any]]) -> None:
        """Append validated records (datetimes become ISO strings)."""
        lines = [
            json.dumps(
                {k: v.isoformat() if isinstance(v, datetime) else v for k, v in r.items()},
                allow_nan=False,
                separators=(",", ":"),
            )
            for r in records
        ]
        data = ("\n".join(lines) + "\n").encode()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("ab") as file:
            fcntl.flock(file, fcntl.LOCK_EX)
            try:
                file.write(data)
                file.flush()
            finally:
                fcntl.flock(file, fcntl.LOCK_UN)

    def read_new(self, contract: Contract) -> list[dict[str, Any]]:
        """Complete lines appended since the last call, parsed back into validated values."""
        try:
            size = os.stat(self.path).st_size
        except FileNotFoundError:
            return []
        if size == self._offset:
            return []
        if size < self._offset:  # replaced by a shorter file: read it again from the start
            self._offset, self._partial = 0, b""
        with self.path.open("rb") as file:
            file.seek(self._offset)
            data = file.read(size - self._offset)
        self._offset += len(data)
        data = self._partial + data
        complete, _, self._partial = data.rpartition(b"\n")
        if not complete:
            return []
        stamps = [n for n, c in contract.columns.items() if c.type == ColumnType.timestamp]
        records = []
        for line in complete.split(b"\n"):
            record = json.loads(line)
            for name in stamps:
                if isinstance(record.get(name), str):
                    record[name] = datetime.fromisoformat(record[name])
            records.append(record)
        return records
