"""Whom a resource is about: its `subject` as the contract's pseudonymous patient id.

`Patient/{id}` is taken as the id, as it always was, unless the Bundle holds that Patient (its
id is then the EHR's, not a pseudonym). Hospitals more often name the patient by an
identifier (an MRN): `subject.identifier`, a conditional `Patient?identifier=system|value`, or a
reference to a `Patient` entry of the same Bundle (usually `urn:uuid:...`) whose identifier holds
it. Such a subject becomes `pid-` + HMAC-SHA256(MONITOR_PATIENT_ID_KEY, `system|value`): the same
patient always gets the same id, and the id cannot be turned back into the MRN without the key.
The identifier is never stored, logged or repeated in a problem's message.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field
from urllib.parse import parse_qsl

from fhir.resources.R4B.identifier import Identifier
from fhir.resources.R4B.patient import Patient
from fhir.resources.R4B.reference import Reference

from monitor.interop.fhir.inbound.common import _Source, patient_id_of
from monitor.interop.fhir.problems import Problem
from monitor.settings import Settings

IDENTIFIER_TYPES = "http://terminology.hl7.org/CodeSystem/v2-0203"
PSEUDONYM_PREFIX = "pid-"
PSEUDONYM_HEX_DIGITS = 40  # 160 bits; with the prefix well inside the contract's 64 characters


def pseudonym(system: str, value: str, key: bytes) -> str:
    """The patient id of the identifier `system|value` (fits the contract's patient-id pattern)."""
    digest = hmac.new(key, f"{system}|{value}".encode(), hashlib.sha256).hexdigest()
    return PSEUDONYM_PREFIX + digest[:PSEUDONYM_HEX_DIGITS]


def _is_record_number(identifier: Identifier) -> bool:
    codings = (identifier.type.coding or []) if identifier.type is not None else []
    return any(c.system == IDENTIFIER_TYPES and c.code == "MR" for c in codings)


@dataclass(slots=True)
class _Subjects:
    """The Bundle's Patient entries (looked up, never mapped) and the key that hides their ids."""

    settings: Settings
    patients: dict[str, _Source] = field(default_factory=dict)  # fullUrl or Patient/{id}
    holders: dict[tuple[str, str], set[int]] = field(default_factory=dict)  # identifier: entries
    used: set[int] = field(default_factory=set)  # Patient entries some subject referenced

    @classmethod
    def of(cls, sources: list[_Source], settings: Settings) -> _Subjects:
        subjects = cls(settings)
        for source in sources:
            if not isinstance(source.resource, Patient) or source.entry is None:
                continue
            if source.full_url:
                subjects.patients[source.full_url] = source
            if source.resource_id:
                subjects.patients[f"Patient/{source.resource_id}"] = source
            for identifier in source.resource.identifier or []:
                if identifier.system and identifier.value:
                    held = subjects.holders.setdefault((identifier.system, identifier.value), set())
                    held.add(source.entry)
        return subjects

    def patient_id(self, source: _Source, subject: Reference) -> tuple[str | None, list[Problem]]:
        """The patient id of a `subject`, or why it cannot be read (naming no identifier)."""
        where = f"{source.path}.subject"
        reference = subject.reference
        if reference:
            entry = self.patients.get(reference)
            if entry is not None:  # a Patient of the Bundle: its identifier, not its EHR id
                return self._of_entry(entry, f"{where}.reference")
            if reference.startswith("Patient?"):
                return self._conditional(reference[len("Patient?") :], f"{where}.reference")
            found = patient_id_of(reference)
            if found is not None:
                return found, []
            shown = "a urn:uuid reference" if reference.startswith("urn:") else repr(reference)
            why = (
                " that is no Patient entry of this Bundle"
                if reference.startswith("urn:")
                else " is not a Patient/{id} reference"
            )
            return None, [
                Problem(
                    f"{where}.reference",
                    "value",
                    f"{shown}{why}: the service needs the patient's (pseudonymous) id, a "
                    "Patient entry of the Bundle, Patient?identifier=system|value, or "
                    "subject.identifier",
                )
            ]
        if subject.identifier is not None:
            identifier = subject.identifier
            return self._of_identifier(identifier.system, identifier.value, f"{where}.identifier")
        return None, [
            Problem(
                f"{where}.reference",
                "value",
                "no reference: the service needs Patient/{id}, a Patient entry of the Bundle, "
                "Patient?identifier=system|value, or subject.identifier",
            )
        ]

    def consumed(self) -> dict[int, str]:
        return {
            entry: "read as the subject of other entries (only its pseudonymous id is kept)"
            for entry in self.used
        }

    def _of_entry(self, entry: _Source, location: str) -> tuple[str | None, list[Problem]]:
        assert entry.entry is not None
        assert isinstance(entry.resource, Patient)
        self.used.add(entry.entry)
        usable = [
            (index, identifier)
            for index, identifier in enumerate(entry.resource.identifier or [])
            if identifier.system and identifier.value and identifier.use != "old"
        ]
        # the medical record number if it is marked so (v2 table 0203 MR), else the first
        records = [(i, x) for i, x in usable if _is_record_number(x)]
        for index, identifier in records + usable:
            return self._of_identifier(
                identifier.system, identifier.value, f"{entry.path}.identifier[{index}]"
            )
        return None, [
            Problem(
                f"{entry.path}.identifier",
                "required",
                f"the Patient that {location} references needs an identifier with a system and "
                "a value (e.g. the MRN): the patient's pseudonymous id is derived from it",
            )
        ]

    def _conditional(self, query: str, location: str) -> tuple[str | None, list[Problem]]:
        pairs = parse_qsl(query, keep_blank_values=True)
        system, bar, value = pairs[0][1].partition("|") if len(pairs) == 1 else ("", "", "")
        if len(pairs) != 1 or pairs[0][0] != "identifier" or not bar or not system or not value:
            return None, [
                Problem(
                    location,
                    "not-supported",
                    "a conditional reference is read only as Patient?identifier=system|value "
                    "(one identifier, with its system)",
                )
            ]
        return self._of_identifier(system, value, location)

    def _of_identifier(
        self, system: str | None, value: str | None, location: str
    ) -> tuple[str | None, list[Problem]]:
        if not system or not value:
            return None, [
                Problem(
                    location,
                    "required",
                    "an identifier needs its system and its value: an MRN is unique only within "
                    "the system that issued it",
                )
            ]
        # the Patient entry a conditional reference or an identifier names is read, not lost
        self.used |= self.holders.get((system, value), set())
        key = self.settings.patient_id_key
        if key is None:
            return None, [
                Problem(
                    location,
                    "not-supported",
                    "a patient named by identifier needs MONITOR_PATIENT_ID_KEY (a random "
                    "secret of at least 32 characters) to derive its pseudonymous id; it is "
                    "not set, so only Patient/{id} subjects are read",
                )
            ]
        return pseudonym(system, value, key.get_secret_value().encode()), []
