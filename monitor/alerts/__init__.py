"""Alerts raised by decisions: the nurse feed, its live stream, acknowledgement."""
