"""Names the whole loop shares (lake tables, registry aliases, columns, run tags), defined once."""

from __future__ import annotations

# Tables of the lake: <data root>/lake/<dataset>/<table>/date=YYYY-MM-DD/data.parquet.
RAW_TABLE = "raw"
FEATURES_TABLE = "features"
PREDICTIONS_TABLE = "predictions"
DRIFT_TABLE = "drift"
PERFORMANCE_TABLE = "performance"

# The features table's target column (NULL until the label is known).
LABEL = "label"
# The features table's partition day column (YYYY-MM-DD).
DAY = "partition_date"

# MLflow registered-model aliases.
CHAMPION = "champion"
CHALLENGER = "challenger"

# Dagster run tags written by sensors and schedules and read by the status and history tools.
TRIGGER_TAG = "driftloop/trigger"
TRIGGER_REASON_TAG = "driftloop/trigger_reason"
DATA_DAY_TAG = "driftloop/data_day"
DATASET_TAG = "driftloop/dataset"
CHAMPION_TAG = "driftloop/champion"
TRAINING_TAG = "driftloop/training"
# On a run executed inside another run's process (the ingest run's daily runs): that
# process's pid, known before the run starts (its engine events may be lost with the store).
PROCESS_TAG = "driftloop/pid"
