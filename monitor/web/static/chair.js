// bipn-monitor web pages: the infusion chair list of a unit for a day (GET /v1/units/{unit}/chair),
// with a grading form and "record administration" per patient. common.js comes first.
"use strict";

const UNIT_KEY = "bipn-monitor-unit";  // the unit is remembered in this browser (not patient data)
const chair = { unit: "", date: "", patients: new Map(), asOf: null };
const DOMAIN_NAMES = ["sensory", "motor", "pain", "autonomic"];

function today() {
  const now = new Date();
  return `${now.getFullYear()}-${String(now.getMonth() + 1).padStart(2, "0")}-${String(now.getDate()).padStart(2, "0")}`;
}

const unitPath = () => `/v1/units/${encodeURIComponent(chair.unit)}/chair`;

async function fetchChair() {
  const list = await api(`${unitPath()}?date=${encodeURIComponent(chair.date)}`);
  chair.asOf = list.as_of;
  chair.patients = new Map(list.patients.map((p) => [p.patient_id, p]));
  return list;
}

async function loadChair() {
  $("chair-error").textContent = "";
  $("chair-status").textContent = `Loading unit ${chair.unit}…`;
  try {
    const list = await fetchChair();
    $("chair-patients").replaceChildren(...list.patients.map(renderPatient));
    $("chair-empty").hidden = list.patients.length > 0;
    $("chair-status").textContent = `Unit ${list.unit}, ${formatDate(list.date)}: ${list.patients.length} patient(s), as of ${formatTime(list.as_of)}.`;
  } catch (error) {
    $("chair-status").textContent = "";
    $("chair-patients").replaceChildren();
    if (error.message !== "401") $("chair-error").textContent = `Could not load the chair list: ${error.message}`;
  }
}

function fact(term, ...value) { return [el("dt", {}, term), el("dd", {}, ...value)]; }

function reassessmentDue(patient) {
  const r = patient.reassessment;
  return Boolean(r && (r.overdue || (r.due_at && chair.asOf && Date.parse(r.due_at) <= Date.parse(chair.asOf))));
}

// The patient's own symptom report this week (GET /v1/units/{unit}/reports has the unit's list):
// said in words, colour only repeats it.
function weeklyReport(w) {
  if (!w) return "not asked";
  const missed = w.missed ? `; ${w.missed} week(s) missed` : "";
  return w.state === "reported"
    ? el("span", {}, "reported ", timeNode(w.reported_at), missed)
    : el("span", { class: w.missed ? "overdue" : "due" }, "not yet this week (due by ", timeNode(w.window_end), ")", missed);
}

// The part of a card that a re-check replaces (the forms below it stay as typed).
function renderSummary(patient) {
  const c = patient.clearance, reg = patient.regimen || {};
  const waiting = patient.next_dose_not_before && chair.asOf && Date.parse(patient.next_dose_not_before) > Date.parse(chair.asOf);
  const r = patient.reassessment;
  const facts = [
    ...fact("dose", [mgm2(reg.dose_mg_m2), mg(reg.dose_mg)].filter(Boolean).join(" · ")),
    ...fact("schedule · route", `${reg.schedule || "—"} · ${reg.route || "—"}`),
    ...fact("status", words(patient.status)),
    ...fact("last dose", timeNode(patient.last_dose_at)),
    ...fact("72 h rule", patient.next_dose_not_before
      ? el("span", { class: waiting ? "wait" : "" }, waiting ? "wait: not before " : "passed: not before ", timeNode(patient.next_dose_not_before))
      : "no recent dose"),
    ...fact("reassessment", r ? el("span", { class: r.overdue ? "overdue" : reassessmentDue(patient) ? "due" : "" },
      r.overdue ? "overdue, was due " : reassessmentDue(patient) ? "due now, since " : "next due ", timeNode(r.due_at)) : "none pending"),
    ...fact("weekly report", weeklyReport(patient.weekly_report)),
  ];
  return el("div", { class: "chair-summary" },
    el("p", { class: `verdict ${c.cleared ? "cleared" : "refused"}` }, c.cleared ? "Cleared" : "Not cleared"),
    el("ul", { class: "reasons", "aria-label": c.cleared ? "clearance" : "why not cleared" }, ...c.reasons.map((reason) => el("li", {}, reason))),
    el("dl", {}, ...facts));
}

function select(id, label, options, value) {
  return el("div", { class: "field" },
    el("label", { for: id }, label),
    el("select", { id }, ...options.map(([v, text]) => el("option", { value: v, selected: v === value }, text))));
}

function input(id, label, attrs) {
  return el("div", { class: "field" }, el("label", { for: id }, label), el("input", Object.assign({ id }, attrs)));
}

function renderGradingForm(patient, key) {
  const grades = [["", "not graded"], ["0", "0"], ["1", "1"], ["2", "2"], ["3", "3"], ["4", "4"]];
  const form = el("form", { class: "grading-form", "data-form": "grading" },
    el("fieldset", {}, el("legend", {}, "CTCAE grade per domain"),
      ...DOMAIN_NAMES.map((d) => select(`${key}-grade-${d}`, d, grades, ""))),
    input(`${key}-grade-cycle`, "cycle (optional)", { type: "number", min: 1, step: 1, inputMode: "numeric" }),
    el("button", { type: "submit" }, "Record grading"),
    el("p", { class: "form-result", role: "status" }));
  form.addEventListener("submit", (event) => { event.preventDefault(); recordGrading(patient.patient_id, form, key); });
  const details = el("details", { class: "action", open: reassessmentDue(patient) },
    el("summary", {}, reassessmentDue(patient) ? "Record a grading (reassessment due)" : "Record a grading"), form);
  return details;
}

function renderAdministrationForm(patient, key) {
  const reg = patient.regimen || {};
  const form = el("form", { class: "administration-form", "data-form": "administration" },
    input(`${key}-dose-m2`, "dose (mg/m²)", { type: "number", min: 0, step: 0.01, value: reg.dose_mg_m2 ?? "" }),
    input(`${key}-dose-mg`, reg.dose_mg ? `or dose (mg), recommended ${reg.dose_mg} mg` : "or dose (mg)", { type: "number", min: 0, step: 0.01 }),
    select(`${key}-route`, "route", [["SC", "SC"], ["IV", "IV"]], reg.route === "IV" ? "IV" : "SC"),
    input(`${key}-given-at`, "given at (blank: now)", { type: "datetime-local" }),
    input(`${key}-cycle`, "cycle (optional)", { type: "number", min: 1, step: 1 }),
    input(`${key}-day`, "day (optional)", { type: "number", min: 1, step: 1 }),
    el("button", { type: "submit" }, "Record administration"),
    el("div", { class: "form-result", role: "status" }));
  form.addEventListener("submit", (event) => { event.preventDefault(); recordAdministration(patient.patient_id, form, key); });
  return el("details", { class: "action" }, el("summary", {}, "Record administration"), form);
}

function renderPatient(patient) {
  const key = `p-${patient.patient_id.replace(/[^A-Za-z0-9_-]/g, "_")}`;
  const titleId = `${key}-title`;
  return el("li", { class: `chair-patient ${patient.clearance.cleared ? "cleared" : "refused"}`, "data-patient-id": patient.patient_id, "aria-labelledby": titleId },
    el("h2", { id: titleId }, el("a", { href: `/patients/${encodeURIComponent(patient.patient_id)}` }, patient.patient_id)),
    renderSummary(patient),
    el("div", { class: "actions" }, renderGradingForm(patient, key), renderAdministrationForm(patient, key),
      el("p", { class: "action invite" }, inviteButton(patient.patient_id))));
}

function card(patientId) {
  return [...document.querySelectorAll("#chair-patients [data-patient-id]")].find((n) => n.dataset.patientId === patientId);
}

function showResult(form, ok, message, reasons) {
  const result = form.querySelector(".form-result");
  result.className = `form-result ${ok ? "ok" : "error"}`;
  result.replaceChildren(el("p", {}, message), reasons && reasons.length ? el("ul", { class: "reasons" }, ...reasons.map((r) => el("li", {}, r))) : null);
}

const number = (form, id) => { const v = form.querySelector(`#${id}`).value; return v === "" ? undefined : Number(v); };

async function recordGrading(patientId, form, key) {
  const grades = {};
  for (const d of DOMAIN_NAMES) { const v = number(form, `${key}-grade-${d}`); if (v !== undefined) grades[d] = v; }
  if (!Object.keys(grades).length) { showResult(form, false, "Grade at least one domain."); return; }
  const body = { grades };
  const cycle = number(form, `${key}-grade-cycle`);
  if (cycle !== undefined) body.cycle = cycle;
  const button = form.querySelector("button");
  button.disabled = true;
  try {
    const answer = await postJson(`${unitPath()}/${encodeURIComponent(patientId)}/assessments`, body);
    showResult(form, true, `Grading recorded (event ${answer.event_id}).`);
    await refreshSummary(patientId);
  } catch (error) {
    if (error.message !== "401") showResult(form, false, `Grading not recorded: ${error.detail || error.message}`, error.reasons);
  } finally {
    button.disabled = false;
  }
}

async function refreshSummary(patientId) {
  await fetchChair();
  const patient = chair.patients.get(patientId), node = card(patientId);
  if (patient && node) node.querySelector(".chair-summary").replaceWith(renderSummary(patient));
  return patient;
}

async function recordAdministration(patientId, form, key) {
  const button = form.querySelector("button");
  button.disabled = true;
  try {
    // clearance first, as of now: the card shows the fresh answer before the dose is posted
    const patient = await refreshSummary(patientId);
    if (!patient) { showResult(form, false, `${patientId} is no longer on this unit's list: nothing recorded.`); return; }
    const body = { route: form.querySelector(`#${key}-route`).value };
    const perM2 = number(form, `${key}-dose-m2`), inMg = number(form, `${key}-dose-mg`);
    if (perM2 !== undefined) body.dose_mg_m2 = perM2;
    if (inMg !== undefined) body.dose_mg = inMg;
    const givenAt = form.querySelector(`#${key}-given-at`).value;
    if (givenAt) body.given_at = new Date(givenAt).toISOString();
    for (const field of ["cycle", "day"]) { const v = number(form, `${key}-${field}`); if (v !== undefined) body[field] = v; }
    const answer = await postJson(`${unitPath()}/${encodeURIComponent(patientId)}/administrations`, body);
    showResult(form, true, `Administration recorded (event ${answer.event_id}).`);
    await refreshSummary(patientId);
  } catch (error) {
    if (error.message === "401") return;
    const refused = error.status === 409 ? "Administration refused" : "Administration not recorded";
    showResult(form, false, `${refused}: ${error.detail || error.message}`, error.reasons);
  } finally {
    button.disabled = false;
  }
}

async function startChair() {
  showSession();
  $("chair").hidden = false;
  if (!$("chair-date").value) $("chair-date").value = today();
  chair.unit = $("unit").value.trim() || localStorage.getItem(UNIT_KEY) || "";
  $("unit").value = chair.unit;
  chair.date = $("chair-date").value;
  if (chair.unit) await loadChair();
  else { $("chair-status").textContent = "Enter the unit to list its patients."; $("unit").focus(); }
}

$("chair-query").addEventListener("submit", (event) => {
  event.preventDefault();
  chair.unit = $("unit").value.trim();
  chair.date = $("chair-date").value || today();
  localStorage.setItem(UNIT_KEY, chair.unit);
  loadChair();
});
startPage(startChair);
