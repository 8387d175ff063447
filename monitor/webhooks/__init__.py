"""Alerts pushed to receivers: registration, signed delivery, safe egress."""
