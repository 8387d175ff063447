"""Replaying an events file through the pure engine (the command line)."""
