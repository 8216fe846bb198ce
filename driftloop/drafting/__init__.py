"""Drafting a contract from a sample file: profiles, quick fits on the sample, commented YAML."""
