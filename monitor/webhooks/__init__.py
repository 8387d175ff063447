"""Alerts pushed to receivers: registration, signed delivery, an attempt's outcome, safe egress."""
