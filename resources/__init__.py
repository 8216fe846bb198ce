"""Dagster resources: thin, typed wrappers configured from environment variables."""
