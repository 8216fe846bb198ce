"""The retraining-policy backtest: history replayed through the production code."""
