"""The sources behind the rules: the ids each rule cites, and what each id stands for."""

from typing import NamedTuple

D0 = ("S3", "S5")
D0_PRIOR_COURSE = ("S5",)  # V6: the label's careful benefit-risk review
D0_NEUROTOXIC = ("S9",)  # V8: the neurotoxic co-medications
D1 = ("S3", "S5", "S6")
D1_LOWEST = ("S5", "S6")
D2 = ("S3", "S5")
D2_WORKUP = ("S1", "S2", "S3")
D3 = ("S3", "S7")
D4_OPTIONS = ("S1", "S4", "S8")
D4_BY_TRIGGER = {
    "motor_worsening": ("S1", "S2", "S3"),
    "two_grade_rise": ("S2", "S3"),
    "grade_4": ("S3",),
    "red_flag_worsening": ("S3",),
    "worsening_after_window": ("S1", "S3"),
}
D5 = ("S3", "S6")
D6 = ("S5",)
D7 = ("S3", "S5")
D8 = ("S4", "S8", "S10")  # V10: response to immunotherapy
D9 = ("S11", "S12")  # V9: patient-reported symptoms
LABEL = ("S5", "S6")


class Source(NamedTuple):
    """What a source id in a decision's `sources` stands for."""

    id: str
    reference: str  # the full bibliographic reference
    supports: str  # what this service takes from it


# Every id a rule above may cite. `docs/clinical-policy.md` lists the same, with the rules
# that cite each one; `GET /v1/sources` serves this list.
CATALOGUE: tuple[Source, ...] = (
    Source(
        "S1",
        "Jeter A, Kang Y. Immune modulation therapy in the management of bortezomib-induced "
        "peripheral neuropathy. Exp Hematol Oncol. 2012;1:20.",
        "Severe motor neuropathy that kept worsening after bortezomib was stopped, with a high "
        "CSF protein, recovered with plasma exchange then prednisone: red flags for an immune "
        "mechanism, and immunotherapy as an option.",
    ),
    Source(
        "S2",
        "Case report: multiple-myeloma-related paraproteinemic polyradiculoneuropathy during "
        "bortezomib treatment (seed document of the project).",
        "Severe, asymmetric motor weakness with paraprotein in the CSF, treated with plasma "
        "exchange: a motor-predominant or rapidly rising course calls for a work-up.",
    ),
    Source(
        "S3",
        "Clinical summary: elevated beta-2 microglobulin and peripheral neuropathy in multiple "
        "myeloma (seed document of the project).",
        "Grades 1-2: reduce the dose and prefer weekly subcutaneous dosing; grades 3-4: "
        "discontinue; immune red flags; coasting for 2-3 months after the drug stops; IVIg.",
    ),
    Source(
        "S4",
        "Léger JM et al. Intravenous immunoglobulin in multifocal motor neuropathy and in "
        "polyneuropathy associated with a monoclonal gammopathy (seed document of the project).",
        "IVIg 2 g/kg in monthly courses; response measured on MRC and Prineas scores.",
    ),
    Source(
        "S5",
        "Bortezomib (Velcade) prescribing information: dose modification for neuropathic pain "
        "and/or peripheral sensory or motor neuropathy.",
        "The dose levels 1.3, 1.0 and 0.7 mg/m2; withholding; discontinuation at grade 4; the "
        "table the `label` pack follows.",
    ),
    Source(
        "S6",
        "Richardson PG et al. (International Myeloma Working Group). Management of "
        "treatment-emergent peripheral neuropathy in multiple myeloma. Leukemia. 2012. "
        "doi:10.1038/leu.2011.346.",
        "Dose reduction and weekly subcutaneous dosing for grade 1-2 neuropathy; in APEX, 64% "
        "of grade >= 2 neuropathy improved or resolved, after a median of 110 days.",
    ),
    Source(
        "S7",
        "Coasting after platinum chemotherapy: worsening of neuropathy for up to about three "
        "months after the last dose (Eur J Neurol. 1994).",
        "The length of the coasting watch. The evidence for bortezomib itself is weak: the "
        "window is a pack setting.",
    ),
    Source(
        "S8",
        "Sarosiek S, Doughty C, Castillo JJ. Monoclonal gammopathy-associated neuropathy. Curr "
        "Hematol Malig Rep. 2025;20:2.",
        "Immunotherapy by syndrome (IVIg, rituximab, plasma exchange); the modified Rankin "
        "scale as an outcome.",
    ),
    Source(
        "S9",
        "Drug-induced peripheral neuropathy: the commonly neurotoxic drug classes (vinca "
        "alkaloids, platinum compounds, taxanes, MMAE antibody-drug conjugates, thalidomide; "
        "metronidazole, linezolid, nitrofurantoin).",
        "Which co-medications version 2 counts as neurotoxic at enrolment: a list for the site "
        "to review and extend (brand names), not an exhaustive one.",
    ),
    Source(
        "S10",
        "Merkies ISJ et al. Responsiveness of the ICE trial outcome measures (IVIg in chronic "
        "inflammatory demyelinating polyradiculoneuropathy). J Neurol Neurosurg Psychiatry. "
        "2010;81:1194.",
        "What counts as a response to immunotherapy: 1 point or more on the INCAT disability "
        "scale; 2 points on the MRC sum score as the clinically important difference.",
    ),
    Source(
        "S11",
        "Basch E et al. Composite grading algorithm for the National Cancer Institute's "
        "PRO-CTCAE. Clin Trials. 2021;18:104.",
        "The composite grade 0-3 of the patient's answers on numbness and tingling (severity "
        "and interference), the sensory grade of a patient report.",
    ),
    Source(
        "S12",
        "Basch E et al. Symptom monitoring with patient-reported outcomes during routine "
        "cancer treatment (JCO 2016; JAMA 2017; the PRO-TECT trial).",
        "Weekly patient-reported symptoms with nurse alerts on severe or worsening symptoms "
        "improve outcomes; the alert burden is the main cost, so reports advise and "
        "clinicians decide.",
    ),
)
SOURCES: dict[str, Source] = {source.id: source for source in CATALOGUE}

# Which rules cite which sources (the groups above, by rule id).
RULE_SOURCES: dict[str, tuple[str, ...]] = {
    "D0": D0 + D0_PRIOR_COURSE + D0_NEUROTOXIC,
    "D1": D1 + D1_LOWEST,
    "D2": D2 + D2_WORKUP,
    "D3": D3,
    "D4": D4_OPTIONS + tuple(s for ids in D4_BY_TRIGGER.values() for s in ids),
    "D5": D5,
    "D6": D6,
    "D7": D7,
    "D8": D8,
    "D9": D9,
    "L1-L3": LABEL,
}


def cited_by(source_id: str) -> list[str]:
    """The rule ids that cite `source_id`, in rule order."""
    return [rule for rule, ids in RULE_SOURCES.items() if source_id in ids]
