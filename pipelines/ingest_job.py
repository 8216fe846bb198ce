"""The ingest job of one dataset: a batch of landed files becomes the raw days it fills.

The new-data sensor only lists the landing zone and launches this job with the batch's
file names; the run hashes, reads, validates and stages the files, rewrites every raw day
they touched (corrections included) and records a `<dataset>/raw_data` materialization
and its check evaluations per day. Dagster's automation (assets/automation.py) then
requests features, predictions and monitoring for the days whose inputs changed.
"""

# No `from __future__ import annotations`: Dagster reads the context/config annotations.
from dagster import (
    AssetKey,
    Config,
    Failure,
    JobDefinition,
    OpExecutionContext,
    job,
    op,
)

from assets.job_names import ingest_job_name, ingest_op_name
from assets.raw_checks import log_ingest, record_days
from driftloop.data.contract import Contract
from driftloop.data.raw_days import ingest_batch
from driftloop.names import DATASET_TAG
from resources.lake import LakeResource


class IngestConfig(Config):
    """The landed file names of the batch; empty means every file waiting."""

    files: list[str] = []


def build_ingest_job(contract: Contract) -> JobDefinition:
    key = AssetKey([contract.name, "raw_data"])

    @op(
        name=ingest_op_name(contract),
        description=f"Ingest a batch of landed {contract.name} files and rewrite their raw days.",
    )
    def ingest_files(context: OpExecutionContext, config: IngestConfig, lake: LakeResource) -> None:
        run = ingest_batch(contract, lake.paths(contract.name), config.files or None)
        log_ingest(context, run)
        for evaluation in record_days(context, key, run.days):
            context.log_event(evaluation)
        if run.days.blocked:
            # The other days stand; the run fails so that a blocked day is seen.
            raise Failure(
                description=f"{contract.name}: raw day(s) blocked by failed checks: "
                + ", ".join(f"{r.day} {r.failing}" for r in run.days.written if r.blocked)
            )

    @job(
        name=ingest_job_name(contract),
        description=f"{contract.name}: ingest landed files into the raw days they fill.",
        tags={DATASET_TAG: contract.name},
    )
    def ingest() -> None:
        ingest_files()

    return ingest
