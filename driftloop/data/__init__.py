"""Data in: the contract, landing-zone ingestion, validation and the lake's Parquet files."""
