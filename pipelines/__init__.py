"""Entry points: the Dagster code location (pipelines.definitions), jobs and CLIs."""
