"""FHIR R4 in and out (issue 6): EHR resources mapped to the contract's events, summaries back.

Built on `fhir.resources` (its R4B models, which carry R4's resources unchanged).
"""
