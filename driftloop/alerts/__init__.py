"""Alerts people can act on: what to say (events) and how it is delivered (notify)."""
