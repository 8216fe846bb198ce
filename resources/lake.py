"""LakeResource: where a dataset's files live, from DRIFTLOOP_DATA_DIR (default ./data)."""

from __future__ import annotations

from pathlib import Path

from dagster import ConfigurableResource

from driftloop.paths import DatasetPaths, data_root, dataset_paths


class LakeResource(ConfigurableResource):
    """The data root; every dataset's landing zone, lake, quarantine and reports are below it."""

    data_dir: str | None = None

    def root(self) -> Path:
        """The data root: `data_dir`, else $DRIFTLOOP_DATA_DIR, else ./data."""
        return data_root(self.data_dir)

    def paths(self, dataset: str) -> DatasetPaths:
        return dataset_paths(dataset, self.root())
