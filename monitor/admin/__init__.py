"""Operators' controls: dead letters, quarantined events, API tokens."""
