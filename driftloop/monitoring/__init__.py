"""Monitoring: drift, realised performance and the retraining trigger."""
