"""Dagster assets and checks, built per dataset contract by assets.factory."""
