"""FHIR resources in, contract events out (README, "FHIR ingest", has the table).

`map_fhir` reads a Bundle (transaction, batch or collection) or one resource and returns the
events it maps to, validated exactly as `POST /v1/events` validates them, and every problem
with its entry and location. It stores nothing: the API decides what a problem means for the
rest of the request (a transaction: nothing; a batch: the other entries proceed).

Event ids derive from what identifies the resource in the sending system (its first
identifier, else the entry's fullUrl, else `Type/id`), so a bundle sent again maps to the same
ids and is a no-op.

The package, in the order a request goes through it: `bundle` walks the Bundle (or the lone
resource) and dispatches each entry by resourceType; `parse` validates an entry's JSON with its
fhir.resources model; `observation`, `adverse_event`, `medication_request`,
`medication_administration`, `procedure` and `questionnaire_response` (a patient's report) map
one resource type each, and `medication` finds
the drug an order or administration is about (inline, contained, or a Medication entry of the
Bundle); `subject` turns a subject into the pseudonymous patient id (a Patient entry of the
Bundle, an identifier under MONITOR_PATIENT_ID_KEY); `body_size` gives administrations and
orders the body size of the vital-sign Observations beside them; `validation` checks each draft
as `POST /v1/events` does and gives it its id; `common` holds what they share.
"""

from monitor.interop.fhir.inbound.bundle import (
    BUNDLE_ELEMENTS,
    LOOKUP_TYPES,
    MAPPED_TYPES,
    map_fhir,
)
from monitor.interop.fhir.inbound.common import (
    BundleKind,
    EntryProblem,
    FhirMapping,
    MappedEvent,
    patient_id_of,
)
from monitor.interop.fhir.inbound.medication_request import ORDER_STATUSES
from monitor.interop.fhir.inbound.observation import DOMAIN_TERMS, GRADING_STATUSES
from monitor.interop.fhir.inbound.subject import pseudonym

__all__ = [
    "BUNDLE_ELEMENTS",
    "DOMAIN_TERMS",
    "GRADING_STATUSES",
    "LOOKUP_TYPES",
    "MAPPED_TYPES",
    "ORDER_STATUSES",
    "BundleKind",
    "EntryProblem",
    "FhirMapping",
    "MappedEvent",
    "map_fhir",
    "patient_id_of",
    "pseudonym",
]
