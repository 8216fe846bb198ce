"""Names the jobs of pipelines/ give their runs' parts, for the assets and sensors below them
that refer to those parts (a sensor launching the ingest job, the model asset's pool)."""

from __future__ import annotations

from typing import Any

from driftloop.data.contract import Contract

# What `dagster.define_asset_job` returns: Dagster exports no public name for its class;
# sensors, schedules and Definitions take it wherever a job goes.
AssetJob = Any

# The model asset's concurrency pool: at most `pools.default_limit` trainings at once across
# datasets and runs (deploy/dagster.yaml; `dagster instance concurrency set training N`).
TRAINING_POOL = "training"


def ingest_job_name(contract: Contract) -> str:
    return f"{contract.name}_ingest"


def ingest_op_name(contract: Contract) -> str:
    return f"{contract.name}_ingest_files"
