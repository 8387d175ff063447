"""Measuring the pipeline on synthetic cohorts (`python -m monitor bench`)."""
