"""The online request log and each arm's realised performance once labels arrive.

Every scored online row is buffered in memory and written to the lake in Parquet files,
one folder per day of the row's event time
(``<lake>/online_predictions/date=D/<time>-<uuid>.parquet``), when the buffer is full,
when it is older than ``flush_seconds`` (then in a thread of its own, so the request or
the stream batch that found it due does not wait for the write) and when the server stops.
Each file is written atomically, so a reader never sees half of one. `arm_performance`
joins a day's log with the day's labels (the features table, by the contract's id
columns) and computes the primary metric per arm and version.
"""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from driftloop.data.contract import Contract
from driftloop.data.lake import write_parquet_atomic
from driftloop.evaluation.canary_evidence import ArmFigures
from driftloop.metrics import PRIMARY_METRIC, percentile_interval
from driftloop.names import FEATURES_TABLE, LABEL
from driftloop.paths import DatasetPaths

if TYPE_CHECKING:
    import pandas as pd

ONLINE_TABLE = "online_predictions"
ARM_PERFORMANCE_TABLE = "arm_performance"
COLUMNS = ["request_id", "row_id", "day", "arm", "model_version", "prediction", "received_at"]


@dataclass
class RequestLog:
    """Buffered writer of online predictions (thread-safe; ``flush`` writes what is held)."""

    paths: DatasetPaths
    max_rows: int = 10_000
    flush_seconds: float = 30.0
    _rows: list[dict[str, Any]] = field(default_factory=list)
    _oldest: float | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _flushing: threading.Thread | None = None

    def append(self, rows: list[dict[str, Any]]) -> None:
        with self._lock:
            if not self._rows:
                self._oldest = time.monotonic()
            self._rows.extend(rows)
            due = len(self._rows) >= self.max_rows
            due = due or time.monotonic() - (self._oldest or 0) >= self.flush_seconds
        if due:
            with self._lock:
                if self._flushing is not None and self._flushing.is_alive():
                    return  # the running write takes these rows too, or the next one does
                self._flushing = threading.Thread(
                    target=self._write, name="request-log-flush", daemon=True
                )
                self._flushing.start()

    def flush(self) -> int:
        """Write the held rows, a file per day (after a write in progress ends); returns
        how many this call wrote."""
        running = self._flushing
        if running is not None and running is not threading.current_thread():
            running.join()
        return self._write()

    def _write(self) -> int:
        import pandas as pd

        with self._lock:
            rows, self._rows, self._oldest = self._rows, [], None
        if not rows:
            return 0
        frame = pd.DataFrame(rows, columns=COLUMNS)
        frame["row_id"] = frame["row_id"].astype(str)
        for day, part in frame.groupby("day", sort=True):
            name = f"{time.time_ns():020d}-{uuid.uuid4().hex[:8]}.parquet"
            folder = self.paths.table(ONLINE_TABLE) / f"date={day}"
            write_parquet_atomic(part.reset_index(drop=True), folder / name)
        return len(rows)


def read_day(paths: DatasetPaths, day: str, since: pd.Timestamp | None = None) -> pd.DataFrame:
    """The logged rows of an event-time day (those received at or after ``since``)."""
    import pandas as pd

    folder = paths.table(ONLINE_TABLE) / f"date={day}"
    files = sorted(folder.glob("*.parquet")) if folder.exists() else []
    if since is not None:
        # A file is named by the time it was written, after every row in it was received.
        files = [f for f in files if int(f.name.split("-", 1)[0]) >= since.value]
    if not files:
        return pd.DataFrame(columns=COLUMNS)
    frame = pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)
    if since is not None:
        frame = frame[pd.to_datetime(frame["received_at"], utc=True) >= since]
    return frame.reset_index(drop=True)


def online_days(paths: DatasetPaths) -> list[str]:
    folder = paths.table(ONLINE_TABLE)
    if not folder.exists():
        return []
    return sorted(p.name.removeprefix("date=") for p in folder.glob("date=*") if p.is_dir())


def _joined(
    contract: Contract, paths: DatasetPaths, day: str, since: pd.Timestamp | None = None
) -> pd.DataFrame:
    """The day's log (the latest prediction of each row per arm: a row asked for twice is
    one row) with its label from the features table (NaN until known)."""
    import pandas as pd

    log = read_day(paths, day, since)
    latest = log.sort_values("received_at").drop_duplicates(["row_id", "arm"], keep="last")
    features = paths.partition_file(FEATURES_TABLE, day)
    if not features.exists() or latest.empty:
        return latest.assign(**{LABEL: float("nan")})
    key = contract.id_columns[0]
    labels = pd.read_parquet(features, columns=[key, LABEL]).rename(columns={key: "row_id"})
    labels["row_id"] = labels["row_id"].astype(str)
    return latest.merge(labels, on="row_id", how="left")


def _metric(contract: Contract, part: pd.DataFrame) -> tuple[str, float, int]:
    """(metric name, value on the labelled rows, labelled rows)."""
    # On use: bootstrap imports numpy, and the code location loads this module.
    from driftloop.evaluation.bootstrap import point_metric

    metric = PRIMARY_METRIC[contract.task]
    known = part[part[LABEL].notna()]
    if known.empty:
        return metric, float("nan"), 0
    y, p = known[LABEL].to_numpy(float), known["prediction"].to_numpy(float)
    return metric, point_metric(metric, y, p), len(known)


def arm_performance(contract: Contract, paths: DatasetPaths, day: str) -> pd.DataFrame:
    """Per arm and version: rows served, rows labelled, the primary metric on them."""
    import pandas as pd

    columns = ["day", "arm", "model_version", "rows", "labelled_rows", "metric", "value"]
    joined = _joined(contract, paths, day)
    out = []
    for (arm, version), part in joined.groupby(["arm", "model_version"], sort=True):
        metric, value, labelled = _metric(contract, part)
        out.append([day, arm, str(version), len(part), labelled, metric, value])
    return pd.DataFrame(out, columns=columns)


def write_arm_performance(contract: Contract, paths: DatasetPaths, day: str) -> pd.DataFrame:
    """`arm_performance` of the day, stored as its partition of ``arm_performance``."""
    table = arm_performance(contract, paths, day)
    if not table.empty:
        write_parquet_atomic(table, paths.partition_file(ARM_PERFORMANCE_TABLE, day))
    return table


def timestamp(value: str) -> pd.Timestamp:
    """An ISO time or date as a UTC timestamp (a naive one is read as UTC)."""
    import pandas as pd

    stamp = pd.Timestamp(value)
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def evidence(
    contract: Contract, paths: DatasetPaths, since: str, confidence: float = 0.90
) -> tuple[list[str], dict[str, ArmFigures]]:
    """The online evidence of the rows served since ``since`` (an ISO time), whatever
    event-time day they belong to, so replayed, backfilled and live traffic all count:
    the days they fall on and, per arm, its versions, rows, labelled rows and the primary
    metric on all of them pooled, with its bootstrap interval."""
    import pandas as pd

    start = timestamp(since)
    frames = [(day, _joined(contract, paths, day, start)) for day in online_days(paths)]
    frames = [(day, f) for day, f in frames if not f.empty]
    joined = pd.concat([f for _, f in frames] or [pd.DataFrame(columns=[*COLUMNS, LABEL])])
    arms = {}
    for arm, part in joined.groupby("arm"):
        metric, value, labelled = _metric(contract, part)
        low, high = _interval(metric, part, confidence)
        arms[str(arm)] = ArmFigures(
            versions=sorted(part["model_version"].astype(str).unique().tolist()),
            rows=len(part),
            labelled_rows=labelled,
            metric=metric,
            value=value,
            ci_low=low,
            ci_high=high,
        )
    return [day for day, _ in frames], arms


def _interval(metric: str, part: pd.DataFrame, confidence: float) -> tuple[float, float]:
    from driftloop.evaluation.bootstrap import metric_resamples  # numpy: on use

    known = part[part[LABEL].notna()]
    if known.empty:
        return float("nan"), float("nan")
    y, p = known[LABEL].to_numpy(float), known["prediction"].to_numpy(float)
    return percentile_interval(metric_resamples(metric, y, p), confidence)
