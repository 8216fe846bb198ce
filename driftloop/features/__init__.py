"""Features: one DuckDB definition for training and scoring, written per day."""
