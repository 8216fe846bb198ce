"""Serving: batch scoring of partitions and online scoring of single rows."""
