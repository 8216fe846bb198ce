"""Dagster assets and checks, built per dataset contract by pipelines.factory."""
