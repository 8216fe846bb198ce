"""The ingest job of one dataset: a batch of landed files becomes the raw days it fills.

The new-data sensor only lists the landing zone and launches this job with the batch's
file names; the run hashes, reads, validates and stages the files, rewrites every raw day
they touched (corrections included) and records a `<dataset>/raw_data` materialization
and its check evaluations per day. Its second step builds those days' features,
predictions and monitoring in the same process (pipelines/ingest_daily.py); Dagster's
automation (assets/automation.py) requests whatever that left undone or failed.
"""

# No `from __future__ import annotations`: Dagster reads the context/config annotations.
from dagster import (
    AssetKey,
    Config,
    Failure,
    JobDefinition,
    OpExecutionContext,
    Out,
    job,
    op,
)

from assets.job_names import ingest_job_name, ingest_op_name
from assets.raw_checks import log_ingest, record_days
from driftloop.data.contract import Contract
from driftloop.data.raw_days import ingest_batch
from driftloop.names import DATASET_TAG
from pipelines.ingest_daily import build_landed_days, ingest_daily_tags
from resources.lake import LakeResource


class IngestConfig(Config):
    """The landed file names of the batch; empty means every file waiting."""

    files: list[str] = []


def build_ingest_job(contract: Contract) -> JobDefinition:
    key = AssetKey([contract.name, "raw_data"])

    @op(
        name=ingest_op_name(contract),
        description=f"Ingest a batch of landed {contract.name} files and rewrite their raw days.",
        out=Out(dict[str, list[str]], description="each written day: its failed blocking checks"),
    )
    def ingest_files(
        context: OpExecutionContext, config: IngestConfig, lake: LakeResource
    ) -> dict[str, list[str]]:
        run = ingest_batch(contract, lake.paths(contract.name), config.files or None)
        log_ingest(context, run)
        for evaluation in record_days(context, key, run.days):
            context.log_event(evaluation)
        return {raw.day: raw.failing for raw in run.days.written}

    # A step of its own: the raw days' events are in the event log before their downstream
    # runs start (a step's logged events are written when the step ends).
    @op(
        name=f"{contract.name}_build_landed_days",
        description=f"Build the written {contract.name} days' daily assets in this process.",
    )
    def build_days(
        context: OpExecutionContext, written: dict[str, list[str]], lake: LakeResource
    ) -> None:
        build_landed_days(context, contract, lake.paths(contract.name), sorted(written))
        blocked = {day: failing for day, failing in written.items() if failing}
        if blocked:
            # The other days stand; the run fails so that a blocked day is seen.
            raise Failure(
                description=f"{contract.name}: raw day(s) blocked by failed checks: "
                + ", ".join(f"{day} {failing}" for day, failing in sorted(blocked.items()))
            )

    @job(
        name=ingest_job_name(contract),
        description=f"{contract.name}: ingest landed files into the raw days they fill.",
        tags={DATASET_TAG: contract.name, **ingest_daily_tags()},
    )
    def ingest() -> None:
        build_days(ingest_files())

    return ingest
