"""Sensors and schedules that turn new data, drift and decay into runs."""
