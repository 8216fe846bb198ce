"""driftloop's framework-free core: contracts, storage, features, training, gate, drift.

Nothing in this package imports Dagster; the Dagster layer (assets/, resources/,
sensors/, pipelines/) calls into it and adds metadata.
"""
