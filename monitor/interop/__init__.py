"""Standards at the edge: FHIR R4 and CDS Hooks."""
