"""Evaluation and governance: metrics, the eval report, the gate and the ledger."""
