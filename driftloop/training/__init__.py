"""Training: the model interface, reproducible training and the MLflow registry."""
