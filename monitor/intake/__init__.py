"""Patients' own reports between visits (issue 16): invite links, the report page's endpoint."""
