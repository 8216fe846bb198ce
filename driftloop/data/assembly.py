"""A raw day assembled from the staged pieces of every file that landed rows in it."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

from pathlib import Path

from driftloop.data.contract import Contract
from driftloop.data.raw_table import conform, raw_schema
from driftloop.paths import DatasetPaths


def staged_pieces(paths: DatasetPaths, day: str) -> list[Path]:
    folder = paths.staged / f"date={day}"
    if not folder.is_dir():
        return []
    pieces = [p for p in folder.glob("*.parquet") if not p.name.startswith(".")]
    # Oldest first, so that on duplicate ids the most recently landed version wins.
    return sorted(pieces, key=lambda p: (p.stat().st_mtime_ns, p.name))


def assemble_partition(contract: Contract, paths: DatasetPaths, day: str) -> pd.DataFrame:
    """All staged rows of one local day, de-duplicated on the id columns, in event-time order."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = raw_schema(contract)
    tables = []
    for piece in staged_pieces(paths, day):
        try:
            tables.append(pq.read_table(piece, schema=schema))
        except FileNotFoundError:
            continue
    table = pa.concat_tables(tables) if tables else schema.empty_table()
    frame = conform(contract, table.to_pandas())
    if contract.id_columns and len(frame):
        frame = frame.drop_duplicates(subset=contract.id_columns, keep="last")
    order = [contract.event_time.column, *contract.id_columns]
    frame = frame.sort_values(order, kind="stable", na_position="last")
    return frame.reset_index(drop=True)
