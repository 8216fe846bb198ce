"""One asset graph per dataset contract, every key prefixed with the dataset's name."""

from __future__ import annotations

from dagster import Definitions

from driftloop.contract import Contract


def build_dataset_definitions(contract: Contract) -> Definitions:
    """Assets, checks, jobs and sensors for one dataset; adding a contract adds a graph."""
    from assets import features, raw_data

    builders = [raw_data.build, features.build]
    return Definitions.merge(*(build(contract) for build in builders))
