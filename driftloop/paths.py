"""Where everything lives: one data root (DRIFTLOOP_DATA_DIR, default ./data) per installation."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA_DIR = "data"
DEFAULT_CONTRACTS_DIR = "contracts"


def data_root(value: str | None = None) -> Path:
    """The data root: the argument, else $DRIFTLOOP_DATA_DIR, else ./data of the project."""
    raw = value or os.environ.get("DRIFTLOOP_DATA_DIR") or str(PROJECT_ROOT / DEFAULT_DATA_DIR)
    return Path(raw).expanduser().resolve()


def contracts_dir(value: str | None = None) -> Path:
    """Folder of contract files: the argument, else $DRIFTLOOP_CONTRACTS_DIR, else ./contracts."""
    raw = value or os.environ.get("DRIFTLOOP_CONTRACTS_DIR")
    return Path(raw).expanduser().resolve() if raw else PROJECT_ROOT / DEFAULT_CONTRACTS_DIR


def default_mlflow_uri(root: Path | None = None) -> str:
    """$MLFLOW_TRACKING_URI, else a SQLite store under the data root."""
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return uri
    root = root or data_root()
    root.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{root / 'mlflow.db'}"


@dataclass(frozen=True)
class DatasetPaths:
    """The folders of one dataset under the data root."""

    root: Path
    dataset: str

    @property
    def landing(self) -> Path:
        """Where new files are dropped."""
        return self.root / "landing" / self.dataset

    @property
    def archive(self) -> Path:
        """Landed files after ingestion, named by content hash (the lake's provenance)."""
        return self.root / "archive" / self.dataset

    @property
    def quarantine(self) -> Path:
        """Rejected files and rows, each beside a readable reason file."""
        return self.root / "quarantine" / self.dataset

    @property
    def lake(self) -> Path:
        return self.root / "lake" / self.dataset

    @property
    def staged(self) -> Path:
        """Per-file, per-day pieces of ingested rows (staged/date=D/<file key>.parquet) and a
        manifest per landed file name (staged/_files/<file key>.json)."""
        return self.lake / "staged"

    def table(self, name: str) -> Path:
        """A partitioned table: <lake>/<name>/date=YYYY-MM-DD/data.parquet."""
        return self.lake / name

    def partition_file(self, table: str, day: str) -> Path:
        return self.table(table) / f"date={day}" / "data.parquet"

    @property
    def reports(self) -> Path:
        return self.root / "reports" / self.dataset

    @property
    def models(self) -> Path:
        """Derived forms of registered versions (ONNX exports, compiled trees), per version:
        models/<dataset>/v<N>/<form>/."""
        return self.root / "models" / self.dataset

    @property
    def ledger(self) -> Path:
        """Append-only promotion ledger: one Parquet file per entry."""
        return self.root / "ledger" / self.dataset


def dataset_paths(dataset: str, root: Path | None = None) -> DatasetPaths:
    return DatasetPaths(root=root or data_root(), dataset=dataset)
