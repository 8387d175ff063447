// bipn-monitor web pages: the live alert feed (every care role) and the patient page.
// common.js comes first (token, api, el, times).
"use strict";

// ---- the feed ------------------------------------------------------------------------------

const AUDIENCES = ["nurse", "physician", "neurology", "pharmacy", "infusion_unit"];
const feed = { lastId: null, controller: null, items: new Map(), generation: 0 };

function feedQuery() {
  const chosen = $("filter-audience").value;
  const audiences = chosen === "all" ? AUDIENCES : chosen ? [chosen] : [];
  return audiences.map((a) => `audience=${encodeURIComponent(a)}`).join("&");
}

function alertMatches(alert) {
  const severity = $("filter-severity").value;
  if (severity && alert.severity !== severity) return false;
  if ($("filter-unacked").checked && alert.acknowledged) return false;
  return true;
}

// PRO-CTCAE's answer words (POLICY V9): severity and interference of numbness or tingling.
const PRO_SEVERITY = ["none", "mild", "moderate", "severe", "very severe"];
const PRO_INTERFERENCE = ["not at all", "a little bit", "somewhat", "quite a bit", "very much"];

// What the patient reported, in words, beside the review it raised (D9).
function renderPatientReport(report) {
  const answered = report.numbness_tingling_severity !== null && report.numbness_tingling_severity !== undefined;
  const interference = report.numbness_tingling_interference;
  const numbness = !answered ? "not answered"
    : `${PRO_SEVERITY[report.numbness_tingling_severity]}${report.numbness_tingling_severity > 0 && interference !== null && interference !== undefined
      ? `, interfering with daily activities ${PRO_INTERFERENCE[interference]}` : ""}`;
  const rows = [
    ["Reported", timeNode(report.reported_at)],
    ["Numbness or tingling", numbness],
    ["Sensory grade (PRO-CTCAE composite)", report.sensory_grade === null ? "—" : `grade ${report.sensory_grade}`],
    ["New weakness, falls or trouble walking", report.new_weakness ? "yes, reported" : "none reported"],
  ];
  const box = el("div", { class: "patient-report", "data-patient-report": report.event_id },
    el("dl", {}, ...rows.flatMap(([k, v]) => [el("dt", {}, k),
      el("dd", { class: k.startsWith("New weakness") && report.new_weakness ? "weakness" : null }, v)])));
  if (report.comment) {
    box.append(el("p", { class: "comment-label" }, "In the patient's words:"),
      el("blockquote", { class: "patient-comment" }, report.comment));
  }
  return box;
}

function renderAlert(alert) {
  const report = alert.patient_report;
  const item = el("li", { class: `alert ${alert.severity}${alert.acknowledged ? " acknowledged" : ""}${report ? " from-patient" : ""}`, "data-alert-id": String(alert.id) });
  const kind = alert.kind === "new" ? "" : ` (${alert.kind})`;
  const titleId = `alert-${alert.id}-title`;
  item.append(
    el("div", { class: "meta" },
      el("span", { class: `badge ${alert.severity}` }, alert.severity),
      report ? el("span", { class: "badge patient" }, "Patient report") : null,
      el("span", {}, `#${alert.id}`),
      el("a", { href: `/patients/${encodeURIComponent(alert.patient_id)}` }, alert.patient_id),
      alert.unit ? el("span", {}, `unit ${alert.unit}`) : null,
      el("span", {}, `for ${alert.audience.map(words).join(", ")}`)),
    el("div", { class: "title", id: titleId }, `${report ? "Patient-reported change: " : ""}${words(alert.action)}${kind}`),
    el("div", { class: "times" },
      el("span", { class: "clinical" }, el("span", { class: "label" }, "about: "),
        alert.clinical_at ? timeNode(alert.clinical_at) : "—"),
      el("span", { class: "raised" }, el("span", { class: "label" }, "raised: "), timeNode(alert.created_at))),
    ...(report ? [renderPatientReport(report)] : []),
    el("div", { class: "message" }, alert.message),
  );
  const ack = el("div", { class: "ack" });
  if (alert.acknowledged) {
    ack.append(`Acknowledged by ${alert.ack.by} at ${formatTime(alert.ack.at)}${alert.ack.note ? ` — ${alert.ack.note}` : ""}`);
  } else {
    const noteId = `note-${alert.id}`;
    const form = el("form", { class: "ack-form", "aria-labelledby": titleId },
      el("label", { for: noteId }, "Note (optional)"),
      el("input", { id: noteId, class: "ack-note", type: "text", maxLength: 2000, autocomplete: "off" }),
      el("button", { type: "submit", class: "ack-button" }, "Acknowledge"),
      el("p", { class: "error ack-error", role: "alert" }));
    form.addEventListener("submit", (event) => { event.preventDefault(); acknowledge(alert.id, form); });
    ack.append(form);
  }
  item.append(ack);
  return item;
}

function grouped() { return $("group-by-patient").checked; }

function showAlert(alert) {
  feed.items.set(alert.id, alert);
  if (grouped()) { redraw(); return; }
  const old = document.querySelector(`#alerts [data-alert-id="${alert.id}"]`);
  if (!alertMatches(alert)) { if (old) old.remove(); return; }
  const item = renderAlert(alert);
  if (old) {
    const focused = old.contains(document.activeElement);
    old.replaceWith(item);
    if (focused) item.querySelector("a").focus();
    return;
  }
  const list = $("alerts");
  const newer = [...list.children].find((node) => Number(node.dataset.alertId) < alert.id);
  list.insertBefore(item, newer || null);
  $("empty").hidden = true;
}

function redraw() {
  const focusedId = document.activeElement && document.activeElement.id;
  const shown = [...feed.items.values()].filter(alertMatches).sort((a, b) => b.id - a.id);
  const list = $("alerts");
  list.className = grouped() ? "grouped" : "";
  if (grouped()) {
    const groups = new Map();  // newest alert first, so the groups come newest first too
    for (const alert of shown) {
      if (!groups.has(alert.patient_id)) groups.set(alert.patient_id, []);
      groups.get(alert.patient_id).push(alert);
    }
    list.replaceChildren(...[...groups].map(([patientId, alerts]) => {
      const open = alerts.filter((a) => !a.acknowledged).length;
      const headingId = `group-${patientId}`;
      return el("li", { class: "group", "data-patient-group": patientId },
        el("h3", { id: headingId },
          el("a", { href: `/patients/${encodeURIComponent(patientId)}` }, patientId),
          el("span", { class: "muted" }, ` · ${alerts.length} alert${alerts.length === 1 ? "" : "s"}, ${open} unacknowledged`)),
        el("ol", { class: "group-alerts", "aria-labelledby": headingId }, ...alerts.map(renderAlert)));
    }));
  } else {
    list.replaceChildren(...shown.map(renderAlert));
  }
  $("empty").hidden = shown.length > 0;
  if (focusedId && $(focusedId)) $(focusedId).focus();
}

async function acknowledge(alertId, form) {
  const button = form.querySelector("button");
  const note = form.querySelector(".ack-note").value.trim();
  const error = form.querySelector(".ack-error");
  button.disabled = true;
  error.textContent = "";
  try {
    const alert = await postJson(`/v1/alerts/${alertId}/ack`, note ? { note } : {});
    $("feed-error").textContent = "";
    showAlert(alert);
    $("feed-status").textContent = `Alert ${alertId} acknowledged.`;
  } catch (failure) {
    button.disabled = false;
    const message = failure.detail || failure.message;
    error.textContent = `Not acknowledged: ${message}`;
    $("feed-error").textContent = `Could not acknowledge alert ${alertId}: ${failure.message}`;
  }
}

function setLive(on, text) {
  const badge = $("live");
  badge.className = `live ${on ? "on" : "off"}`;
  badge.textContent = text;
}

// SSE over fetch (EventSource cannot send the Authorization header); resumes with Last-Event-ID.
async function stream(generation) {
  const query = feedQuery();
  while (generation === feed.generation) {
    feed.controller = new AbortController();
    try {
      const headers = { Authorization: `Bearer ${token()}`, Accept: "text/event-stream" };
      if (feed.lastId !== null) headers["Last-Event-ID"] = String(feed.lastId);
      const response = await fetch(`/v1/alerts/stream${query ? `?${query}` : ""}`, { headers, signal: feed.controller.signal });
      if (response.status === 401) { logout("Your token was not accepted: log in again."); return; }
      if (!response.ok) throw new Error(`stream answered ${response.status}`);
      setLive(true, "live");
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value.replaceAll("\r\n", "\n");
        let end;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          if (generation === feed.generation) handleFrame(buffer.slice(0, end));
          buffer = buffer.slice(end + 2);
        }
      }
    } catch (error) {
      if (!token() || generation !== feed.generation) return;
    }
    if (generation !== feed.generation) return;
    setLive(false, "reconnecting…");
    await new Promise((resolve) => setTimeout(resolve, 3000));
  }
}

function handleFrame(frame) {
  let event = "message", id = null;
  const data = [];
  for (const line of frame.split("\n")) {
    if (line.startsWith(":")) continue;
    const [field, ...rest] = line.split(":");
    const value = rest.join(":").replace(/^ /, "");
    if (field === "event") event = value;
    else if (field === "id") id = value;
    else if (field === "data") data.push(value);
  }
  if (event !== "alert" || !data.length) return;
  const alert = JSON.parse(data.join("\n"));
  if (id !== null) feed.lastId = Number(id);
  showAlert(alert);
}

function stopStream() {
  feed.generation += 1;
  if (feed.controller) feed.controller.abort();
}

async function loadFeed() {
  stopStream();
  const generation = feed.generation;
  const query = feedQuery();
  const page = await api(`/v1/alerts?limit=200${query ? `&${query}` : ""}`);
  feed.items.clear();
  page.alerts.forEach((alert) => feed.items.set(alert.id, alert));
  feed.lastId = page.last_id;
  redraw();
  stream(generation);
}

async function loadReassessments() {
  $("reassessments-error").textContent = "";
  try {
    const due = await api("/v1/reassessments?within_days=7");
    const rows = due.reassessments.slice().sort((a, b) => (b.overdue - a.overdue)
      || String(a.due_at).localeCompare(String(b.due_at)));
    $("reassessment-list").replaceChildren(...rows.map((r) => el("li", { class: r.overdue ? "overdue" : "due", "data-patient-id": r.patient_id },
      r.overdue ? el("span", { class: "badge urgent" }, "overdue") : el("span", { class: "badge info" }, "due"),
      " ", el("a", { href: `/patients/${encodeURIComponent(r.patient_id)}` }, r.patient_id),
      r.unit ? el("span", { class: "muted" }, ` · unit ${r.unit}`) : null,
      el("span", { class: "muted" }, ` · ${words(r.status)}`),
      el("div", {}, r.overdue ? "was due " : "due ", timeNode(r.due_at)))));
    $("reassessments-empty").hidden = rows.length > 0;
    $("reassessments-empty").textContent = `None due before ${formatTime(due.due_before)}.`;
  } catch (error) {
    if (error.message !== "401") $("reassessments-error").textContent = `Could not load the due reassessments: ${error.message}`;
  }
}

async function startFeed() {
  showSession();
  $("feed").hidden = false;
  await loadFeed();
  loadReassessments();
}

function wireFeed() {
  $("filter-severity").addEventListener("change", redraw);
  $("filter-unacked").addEventListener("change", redraw);
  $("group-by-patient").addEventListener("change", redraw);
  $("filter-audience").addEventListener("change", () => {
    setLive(false, "connecting…");
    loadFeed().catch((error) => { if (error.message !== "401") $("feed-error").textContent = `Could not load the feed: ${error.message}`; });
  });
  $("refresh-reassessments").addEventListener("click", loadReassessments);
  $("open-patient").addEventListener("submit", (event) => {
    event.preventDefault();
    const id = $("patient-id").value.trim();
    if (id) location.href = `/patients/${encodeURIComponent(id)}`;
  });
  onLogout.push(stopStream);
}

// ---- the patient page ----------------------------------------------------------------------

async function startPatient() {
  showSession();
  $("patient").hidden = false;
  const patientId = decodeURIComponent(location.pathname.split("/").pop());
  $("patient-title").textContent = `Patient ${patientId}`;
  const base = `/v1/patients/${encodeURIComponent(patientId)}`;
  try {
    const [state, decisions, history] = await Promise.all(
      [base, `${base}/decisions`, `${base}/history`].map((path) => api(path)));
    renderNow(state, decisions.decisions);
    renderCourse(state);
    renderMonitoring(state);
    renderDecisions(decisions.decisions);
    renderResponse(history);
    renderChart(history, decisions.decisions, state);
    renderMeasures(history);
    renderComparison(history);
    loadClearance(base, state);
    offerInvite($("patient-actions"), patientId);
  } catch (error) {
    if (error.message !== "401") $("patient-error").textContent = `Could not load the patient: ${error.message}`;
  }
}

const DOSE_ACTIONS = ["reduce_dose", "hold", "resume", "discontinue"];
const latest = (decisions, actions) => decisions.filter((d) => actions.includes(d.action)).at(-1);

// What the monitor recommends now: the dose, the reassessment, an unanswered escalation.
function renderNow(state, decisions) {
  const cards = [];
  const doseDecision = latest(decisions, DOSE_ACTIONS);
  const stopped = ["discontinued", "completed", "ended", "none"].includes(state.status);
  const regimen = stopped ? words(state.status)
    : `${state.status === "held" ? "on hold · " : ""}${mgm2(state.dose_mg_m2)} ${state.schedule || ""} ${state.route || ""}`.trim();
  cards.push(el("li", { class: `now-card ${stopped || state.status === "held" ? "warning" : "info"}`, "data-now": "dose" },
    el("h3", {}, "Dose"),
    el("p", { class: "now-main" }, regimen),
    doseDecision ? el("p", {}, `${words(doseDecision.action)}${doseDecision.dose_mg_m2 ? ` to ${mgm2(doseDecision.dose_mg_m2)}` : ""} (${doseDecision.rule}, `, timeNode(doseDecision.at), ")") : el("p", { class: "muted" }, "the enrolment dose: no change advised"),
    doseDecision ? el("p", { class: "rationale" }, doseDecision.rationale) : null));
  const overdue = state.reassessment_overdue_since;
  const due = state.next_reassessment_due;
  if (overdue || due) {
    const reminder = latest(decisions, overdue ? ["reassessment_overdue", "review_required"] : ["schedule_reassessment"]);
    cards.push(el("li", { class: `now-card ${overdue ? "urgent" : "info"}`, "data-now": "reassessment" },
      el("h3", {}, overdue ? "Reassessment overdue" : "Reassessment pending"),
      el("p", { class: "now-main" }, overdue ? "overdue since " : "due ", timeNode(overdue || due)),
      reminder ? el("p", { class: "rationale" }, reminder.rationale) : null));
  }
  const escalation = state.escalation || {};
  if (escalation.escalated_at && !escalation.answered) {
    const asked = latest(decisions, ["escalation_unanswered", "escalate_immunotherapy"]);
    cards.push(el("li", { class: "now-card urgent", "data-now": "escalation" },
      el("h3", {}, "Escalation unanswered"),
      el("p", { class: "now-main" }, "escalated to immunotherapy ", timeNode(escalation.escalated_at), ", no therapy recorded since"),
      asked ? el("p", { class: "rationale" }, asked.rationale) : null));
  }
  if (state.watch && state.watch.state === "active") {
    cards.push(el("li", { class: "now-card info", "data-now": "watch" },
      el("h3", {}, "Coasting watch"),
      el("p", { class: "now-main" }, "until ", timeNode(state.watch.window_end))));
  }
  $("now-cards").replaceChildren(...cards);
}

async function loadClearance(base, state) {
  // only the infusion role (and admin) may ask: for the others the section stays hidden
  let answer;
  try {
    const { role } = await me();
    if (role !== "infusion" && role !== "admin") return;
    answer = await api(`${base}/clearance`);
  } catch (error) {
    if (error.status !== 403 && error.message !== "401") {
      $("clearance").hidden = false;
      $("clearance-verdict").textContent = `Could not check clearance: ${error.message}`;
    }
    return;
  }
  $("clearance").hidden = false;
  const verdict = $("clearance-verdict");
  verdict.className = `verdict ${answer.cleared ? "cleared" : "refused"}`;
  verdict.textContent = answer.cleared ? "Cleared to dose now" : "Not cleared";
  $("clearance-reasons").replaceChildren(...answer.reasons.map((r) => el("li", {}, r)));
  const rows = [
    ["dose", answer.cleared ? mgm2(answer.dose_mg_m2) : "—"],
    ["dose in mg", answer.dose_mg !== undefined && answer.dose_mg !== null ? mg(answer.dose_mg) : null],
    ["body surface area", answer.bsa_m2 ? `${answer.bsa_m2} m²` : null],
    ["schedule", answer.schedule], ["route", answer.route],
    ["last dose", state.last_dose_at ? formatTime(state.last_dose_at) : null],
    ["72 h rule: not before", state.next_dose_not_before ? formatTime(state.next_dose_not_before) : null],
  ];
  $("clearance-facts").replaceChildren(...rows.filter(([, v]) => v !== null && v !== undefined)
    .flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, v)]));
}

function renderCourse(state) {
  const rows = [
    ["status", state.status], ["dose", state.dose_mg_m2 ? mgm2(state.dose_mg_m2) : "—"],
    ["schedule", state.schedule], ["route", state.route], ["unit", state.unit],
    ["watch", state.watch ? words(state.watch.state) : null],
    ["watch ends", state.watch ? when(state.watch.window_end) : null],
    ["next reassessment", when(state.next_reassessment_due)],
    ["overdue since", state.reassessment_overdue_since ? when(state.reassessment_overdue_since) : null],
    ["events pending", state.pending_events],
  ];
  $("course").replaceChildren(...rows.filter(([, v]) => v !== null && v !== undefined)
    .flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, v)]));
}

function renderMonitoring(state) {
  // a dead-lettered fold: the state shown may be out of date, and no new advice will come
  const monitoring = state.monitoring || { status: "running" };
  const stopped = monitoring.status === "stopped";
  $("monitoring").hidden = !stopped;
  if (stopped) {
    const event = monitoring.event_id ? ` at event ${monitoring.event_id}` : "";
    $("monitoring-text").textContent = `Since ${when(monitoring.since)} this patient's events `
      + `have not been evaluated${event} (${words(monitoring.reason)}; dead letter `
      + `${monitoring.dead_letter_id}). The course shown may be out of date and no new advice `
      + "will come until an administrator retries it or sets the failing event aside.";
  }
  const quarantined = state.quarantined_events || [];
  $("quarantine").hidden = !quarantined.length;
  $("quarantined").replaceChildren(...quarantined.map((q) => el("li", {},
    el("div", { class: "when" }, `${when(q.occurred_at)} · ${words(q.type)} · ${q.event_id}`),
    el("div", {}, `Set aside ${when(q.quarantined_at)} by ${q.quarantined_by}: ${q.reason}`))));
}

function renderDecisions(decisions) {
  $("decisions").replaceChildren(...decisions.slice().reverse().map((d) => el("li", {},
    el("div", { class: "when" }, `${formatTime(d.at)} · ${d.rule} · ${d.policy} · `, el("span", { class: `badge ${d.severity}` }, d.severity)),
    el("strong", {}, words(d.action) + (d.dose_mg_m2 ? ` to ${mgm2(d.dose_mg_m2)}` : "")),
    el("div", {}, d.rationale))));
}

// ---- immunotherapy: the D8 response check of each episode, and the measures it compares ----

const THERAPIES = { ivig: "IVIg", plasma_exchange: "plasma exchange", corticosteroids: "corticosteroids", rituximab: "rituximab", other: "other immunotherapy" };
const therapyName = (therapy) => THERAPIES[therapy] || words(therapy);
const RESPONSE_OUTCOMES = {
  response: { title: "Response", level: "info" },
  no_response: { title: "No response", level: "urgent" },
  pending: { title: "Check pending", level: "info" },
  not_done: { title: "Check not done", level: "warning" },
  no_baseline: { title: "Cannot be checked", level: "warning" },
};

function renderResponse(history) {
  const episodes = history.immunotherapy || [];
  $("response-check").hidden = !episodes.length;
  $("response-episodes").replaceChildren(...episodes.slice().reverse().map((e) => {
    const outcome = RESPONSE_OUTCOMES[e.outcome];
    const given = `${therapyName(e.therapy)} from ${formatDate(e.started_at)}${e.events > 1 ? ` to ${formatDate(e.last_at)} (${e.events} events)` : ""}`;
    const detail = {
      response: ["improved at the check of ", timeNode(e.checked_at)],
      no_response: ["not improved at the check of ", timeNode(e.checked_at), ": physician and neurology to review the options"],
      pending: ["due ", timeNode(e.check_due_at), " (28 days after the first event)"],
      not_done: ["was due ", timeNode(e.check_due_at), "; no clinician or nurse grading since"],
      no_baseline: ["no clinician or nurse grading before the therapy to compare with"],
    }[e.outcome];
    return el("li", { class: `now-card ${outcome.level}`, "data-response": e.outcome, "data-therapy": e.therapy },
      el("h3", {}, `${outcome.title}: ${therapyName(e.therapy)}`),
      el("p", { class: "now-main" }, ...detail),
      el("p", { class: "muted" }, given));
  }));
}

const MEASURES = {
  mrc_sum_score: { label: "MRC sum score", max: 60, better: "higher is stronger", shape: "circle", colour: "#1f63a6" },
  incat: { label: "INCAT disability", max: 10, better: "lower is better", shape: "square", colour: "#8a4b00" },
  rankin: { label: "Rankin", max: 5, better: "lower is better", shape: "diamond", colour: "#23802f" },
};

// A point of a given shape (so the series differ without colour), with its value written.
function shape(kind, cx, cy, colour) {
  if (kind === "square") return svg("rect", { x: cx - 4, y: cy - 4, width: 8, height: 8, fill: colour });
  if (kind === "diamond") return svg("path", { d: `M ${cx} ${cy - 5} L ${cx + 5} ${cy} L ${cx} ${cy + 5} L ${cx - 5} ${cy} Z`, fill: colour });
  if (kind === "triangle") return svg("path", { d: `M ${cx} ${cy - 6} L ${cx + 6} ${cy + 4} L ${cx - 6} ${cy + 4} Z`, fill: "#fff", stroke: colour, "stroke-width": 2 });
  return svg("circle", { cx, cy, r: 4, fill: colour });
}

function renderMeasures(history) {
  const points = history.response_measures || [];
  $("measures").hidden = !points.length;
  $("measure-rows").replaceChildren(...points.map((p) => el("tr", { "data-measure-at": p.at },
    el("td", { "data-label": "Assessed" }, timeNode(p.at)),
    ...Object.entries(MEASURES).map(([name, m]) => el("td", { "data-label": m.label }, p[name] ?? "—")))));
  if (!points.length) return;
  const chart = $("measures-chart");
  const width = chart.clientWidth || 640;
  const shown = Object.keys(MEASURES).filter((name) => points.some((p) => p[name] !== undefined));
  const panel = 84, pad = { left: 44, right: 24, top: 6, bottom: 40 };
  const height = pad.top + shown.length * panel + pad.bottom;
  chart.setAttribute("viewBox", `0 0 ${width} ${height}`);
  chart.style.height = `${height}px`;
  chart.replaceChildren();
  const episodes = history.immunotherapy || [];
  const times = [...points.map((p) => Date.parse(p.at)), ...episodes.flatMap((e) => [Date.parse(e.started_at), Date.parse(e.last_at)])];
  const start = Math.min(...times) - 3 * DAY, end = Math.max(...times) + 3 * DAY;
  const x = (t) => pad.left + (t - start) / (end - start) * (width - pad.left - pad.right);
  const bottom = pad.top + shown.length * panel;
  for (const e of episodes) {
    const x0 = x(Date.parse(e.started_at)), x1 = Math.max(x(Date.parse(e.last_at)), x0 + 6);
    const band = svg("g", { class: "episode", "data-episode": e.therapy });
    band.append(svg("title", {}, `${therapyName(e.therapy)} ${formatDate(e.started_at)}`));
    band.append(svg("rect", { x: x0, y: pad.top, width: x1 - x0, height: bottom - pad.top, class: "episode-band" }));
    chart.append(band);
  }
  for (const [row, name] of shown.entries()) {
    const m = MEASURES[name], title = pad.top + row * panel + 12;
    const top = title + 16, low = pad.top + (row + 1) * panel - 8;
    const y = (v) => low - v / m.max * (low - top);
    chart.append(svg("text", { x: 4, y: title, class: "axis-title" }, `${m.label} (0-${m.max}, ${m.better})`));
    for (const v of [0, m.max]) {
      chart.append(svg("line", { x1: pad.left, x2: width - pad.right, y1: y(v), y2: y(v), class: "gridline" }));
      chart.append(svg("text", { x: pad.left - 6, y: y(v) + 4, "text-anchor": "end", class: "tick" }, String(v)));
    }
    const series = points.filter((p) => p[name] !== undefined);
    chart.append(svg("path", { d: series.map((p, i) => `${i ? "L" : "M"} ${x(Date.parse(p.at)).toFixed(1)} ${y(p[name]).toFixed(1)}`).join(" "),
      fill: "none", stroke: m.colour, "stroke-width": 2, "data-series": name, "data-points": String(series.length) }));
    for (const p of series) {
      const px = x(Date.parse(p.at)), py = y(p[name]);
      const mark = shape(m.shape, px, py, m.colour);
      mark.append(svg("title", {}, `${m.label} ${p[name]} · ${formatTime(p.at)}`));
      chart.append(mark);
      chart.append(svg("text", { x: px + 7, y: py - 5, class: "tick value" }, String(p[name])));
    }
  }
  chart.append(svg("line", { x1: pad.left, x2: width - pad.right, y1: bottom, y2: bottom, class: "axis" }));
  let lastYear = null;
  for (const t of ticks(start, end, width - pad.left - pad.right, 58)) {
    const date = new Date(t), year = date.getUTCFullYear();
    chart.append(svg("text", { x: x(t), y: bottom + 16, "text-anchor": "middle", class: "tick" }, `${date.getUTCDate()} ${MONTHS[date.getUTCMonth()]}`));
    if (year !== lastYear) chart.append(svg("text", { x: x(t), y: bottom + 30, "text-anchor": "middle", class: "tick year" }, String(year)));
    lastYear = year;
  }
  chart.setAttribute("aria-label", `Response measures (${shown.map((n) => MEASURES[n].label).join(", ")}) over time, `
    + `from ${formatDate(points[0].at)} to ${formatDate(points.at(-1).at)}, with the immunotherapy episodes shaded. The table below lists the same values.`);
  $("measures-legend").replaceChildren(
    ...shown.map((n) => el("span", { class: `legend measure-${n}` }, `${{ circle: "●", square: "■", diamond: "◆" }[MEASURES[n].shape]} ${MEASURES[n].label}`)),
    ...(episodes.length ? [el("span", { class: "legend episode" }, "▒ immunotherapy episode")] : []));
}

// Each dose decision (and the enrolment's dose) beside the first dose given after it.
function renderComparison(history) {
  const given = history.doses.filter((d) => d.source === "given");
  const advice = [
    ...history.doses.filter((d) => d.source === "enrollment").map((d) => ({ at: d.at, action: "start", dose_mg_m2: d.dose_mg_m2, rule: "enrolment" })),
    ...history.dose_decisions,
  ].sort((a, b) => Date.parse(a.at) - Date.parse(b.at));
  const rows = advice.map((a, index) => {
    const until = index + 1 < advice.length ? Date.parse(advice[index + 1].at) : Infinity;
    const next = given.find((d) => Date.parse(d.at) >= Date.parse(a.at) && Date.parse(d.at) < until);
    const stopped = ["hold", "discontinue"].includes(a.action);
    let verdict, kind;
    if (!next) { verdict = stopped ? "no dose given: as advised" : "no dose recorded after it"; kind = stopped ? "match" : "none"; }
    else if (stopped) { verdict = `a dose was given although ${a.action === "hold" ? "on hold" : "discontinued"}`; kind = "differs"; }
    else if (next.dose_mg_m2 === null) { verdict = "not comparable (mg without body surface area)"; kind = "none"; }
    else if (Math.abs(next.dose_mg_m2 - a.dose_mg_m2) < 0.005) { verdict = "as recommended"; kind = "match"; }
    else { verdict = `${next.dose_mg_m2 > a.dose_mg_m2 ? "above" : "below"} the recommendation`; kind = "differs"; }
    const recommended = a.action === "start" ? `start at ${mgm2(a.dose_mg_m2)}`
      : `${words(a.action)}${a.dose_mg_m2 ? ` to ${mgm2(a.dose_mg_m2)}` : ""}`;
    return el("tr", { class: kind, "data-comparison": kind },
      el("td", { "data-label": "Recommended" }, el("strong", {}, recommended), el("br"), el("span", { class: "muted" }, `${a.rule} · `), timeNode(a.at)),
      el("td", { "data-label": "Given next" }, next ? el("strong", {}, [mgm2(next.dose_mg_m2), mg(next.dose_mg)].filter(Boolean).join(" · ")) : "—",
        next ? el("br") : null, next ? timeNode(next.at) : null),
      el("td", { "data-label": "Comparison" }, verdict));
  });
  $("comparison-rows").replaceChildren(...rows);
  $("comparison-empty").hidden = rows.length > 0;
}

// ---- the chart ---------------------------------------------------------------------------

const DOMAINS = { sensory: "#1f63a6", motor: "#c0262d", pain: "#7a4ea3", autonomic: "#23802f" };
const SVG = "http://www.w3.org/2000/svg";
const DAY = 86400000;
const MARKERS = {
  reduce_dose: { glyph: "↓", label: "dose reduced" },
  hold: { glyph: "H", label: "hold" },
  resume: { glyph: "R", label: "resume" },
  discontinue: { glyph: "✕", label: "discontinued" },
  escalate_immunotherapy: { glyph: "E", label: "escalation to immunotherapy" },
};

function svg(tag, attrs, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
  if (text !== undefined) node.textContent = text;
  return node;
}

// Stretches of time with data; a gap longer than `gap` ms starts a new one (drawn as a break).
function stretches(times, gap, pad) {
  const sorted = [...new Set(times)].sort((a, b) => a - b);
  const found = [];
  for (const t of sorted) {
    const last = found.at(-1);
    if (last && t - last.end <= gap) last.end = t;
    else found.push({ start: t, end: t });
  }
  return found.map((s) => ({ start: s.start - pad, end: s.end + pad }));
}

// Tick times within [start, end]: the smallest step that leaves `minPx` between labels.
function ticks(start, end, pixels, minPx) {
  const steps = [[1, "d"], [2, "d"], [7, "d"], [14, "d"], [1, "m"], [2, "m"], [3, "m"], [6, "m"], [12, "m"]];
  const span = end - start;
  for (const [size, unit] of steps) {
    const approx = unit === "d" ? size * DAY : size * 30.4 * DAY;
    if (pixels * approx / span < minPx) continue;
    const found = [];
    const first = new Date(start);
    let t;
    if (unit === "d") {
      t = Date.UTC(first.getUTCFullYear(), first.getUTCMonth(), first.getUTCDate());
      if (size === 7 || size === 14) { while (new Date(t).getUTCDay() !== 1) t += DAY; }  // Mondays
      while (t < start) t += size * DAY;
      for (; t <= end; t += size * DAY) found.push(t);
    } else {
      let y = first.getUTCFullYear(), m = first.getUTCMonth();
      m = Math.ceil(m / size) * size;
      for (;;) {
        t = Date.UTC(y + Math.floor(m / 12), m % 12, 1);
        if (t > end) break;
        if (t >= start) found.push(t);
        m += size;
      }
    }
    return found;
  }
  return [];
}

function renderChart(history, decisions, state) {
  const chart = $("chart");
  const width = chart.clientWidth || 640, height = chart.clientHeight || 300;
  const narrow = width < 480;
  const pad = { left: narrow ? 30 : 40, right: narrow ? 44 : 60, top: 22, bottom: 40 };
  chart.setAttribute("viewBox", `0 0 ${width} ${height}`);
  chart.replaceChildren();
  const escalations = decisions.filter((d) => d.action === "escalate_immunotherapy");
  const episodes = history.immunotherapy || [];
  const graded = history.grades.filter((g) => g.source !== "patient");
  const reports = history.grades.filter((g) => g.source === "patient");
  const points = [...history.grades, ...history.doses, ...history.dose_decisions, ...escalations,
    ...episodes.flatMap((e) => [{ at: e.started_at }, { at: e.last_at }])];
  const times = points.map((p) => Date.parse(p.at));
  if (!times.length) { chart.append(svg("text", { x: 20, y: 30 }, "No grades or doses yet")); return; }
  const cycle = (state.cycle_length_days || 21) * DAY;
  const parts = stretches(times, cycle * 1.5, 3 * DAY);
  const BREAK = 26;
  const plotW = width - pad.left - pad.right - BREAK * (parts.length - 1);
  const total = parts.reduce((sum, p) => sum + (p.end - p.start), 0);
  // each stretch's width follows its length, but a short one still gets room
  const weights = parts.map((p) => Math.max(p.end - p.start, total * 0.18));
  const weightSum = weights.reduce((a, b) => a + b, 0);
  let cursor = pad.left;
  for (const [i, p] of parts.entries()) {
    p.x0 = cursor;
    p.x1 = cursor + plotW * weights[i] / weightSum;
    cursor = p.x1 + BREAK;
  }
  const partOf = (t) => parts.findIndex((p) => t >= p.start && t <= p.end);
  const x = (at) => {
    const t = typeof at === "number" ? at : Date.parse(at);
    const p = parts[Math.max(0, partOf(t))];
    return p.x0 + (t - p.start) / (p.end - p.start) * (p.x1 - p.x0);
  };
  const bottom = height - pad.bottom;
  const doses = [...history.doses.map((d) => d.dose_mg_m2), ...history.dose_decisions.map((d) => d.dose_mg_m2)].filter((d) => typeof d === "number");
  const doseMax = Math.max(1.5, Math.ceil(Math.max(0, ...doses) * 2) / 2);
  const yGrade = (g) => bottom - g / 4 * (bottom - pad.top);
  const yDose = (d) => bottom - d / doseMax * (bottom - pad.top);

  // the grade axis (left) and its grid
  chart.append(svg("text", { x: 4, y: 12, class: "axis-title" }, "grade"));
  for (let g = 0; g <= 4; g++) {
    chart.append(svg("line", { x1: pad.left, x2: width - pad.right, y1: yGrade(g), y2: yGrade(g), class: "gridline" }));
    chart.append(svg("text", { x: pad.left - 6, y: yGrade(g) + 4, "text-anchor": "end", class: "tick" }, `G${g}`));
  }
  // the dose axis (right): its own scale, mg/m²
  const right = width - pad.right;
  chart.append(svg("line", { x1: right, x2: right, y1: pad.top, y2: bottom, class: "axis dose-axis" }));
  chart.append(svg("text", { x: width - 4, y: 12, "text-anchor": "end", class: "axis-title dose" }, "mg/m²"));
  for (let d = 0; d <= doseMax + 1e-9; d += 0.5) {
    chart.append(svg("line", { x1: right, x2: right + 4, y1: yDose(d), y2: yDose(d), class: "axis" }));
    chart.append(svg("text", { x: right + 6, y: yDose(d) + 4, class: "tick dose", "data-dose-tick": d.toFixed(1) }, d.toFixed(1)));
  }
  // the time axis: one per stretch, with ticks and dates; a break between stretches
  let lastYear = null;
  for (const [i, p] of parts.entries()) {
    chart.append(svg("line", { x1: p.x0, x2: p.x1, y1: bottom, y2: bottom, class: "axis" }));
    for (const t of ticks(p.start, p.end, p.x1 - p.x0, narrow ? 46 : 58)) {
      const tx = x(t), date = new Date(t), year = date.getUTCFullYear();
      chart.append(svg("line", { x1: tx, x2: tx, y1: bottom, y2: bottom + 4, class: "axis" }));
      chart.append(svg("text", { x: tx, y: bottom + 16, "text-anchor": "middle", class: "tick", "data-time-tick": date.toISOString().slice(0, 10) },
        `${date.getUTCDate()} ${MONTHS[date.getUTCMonth()]}`));
      if (year !== lastYear) chart.append(svg("text", { x: tx, y: bottom + 30, "text-anchor": "middle", class: "tick year" }, String(year)));
      lastYear = year;
    }
    if (i + 1 < parts.length) {
      const gx = p.x1 + BREAK / 2, months = Math.round((parts[i + 1].start - p.end) / (30.4 * DAY));
      const label = months >= 1 ? `${months} mo` : `${Math.round((parts[i + 1].start - p.end) / DAY)} d`;
      const gap = svg("g", { class: "gap", "data-gap": label });
      gap.append(svg("title", {}, `no data for ${label}`));
      gap.append(svg("rect", { x: p.x1 + 3, y: pad.top, width: BREAK - 6, height: bottom - pad.top, class: "gap-band" }));
      gap.append(svg("text", { x: gx, y: bottom + 16, "text-anchor": "middle", class: "tick gap-label" }, "//"));
      gap.append(svg("text", { x: gx, y: pad.top - 6, "text-anchor": "middle", class: "tick gap-label" }, label));
      chart.append(gap);
    }
  }
  // the recommended dose level over time (enrolment, then each dose decision), per stretch
  const levels = [...history.doses.filter((d) => d.source === "enrollment").map((d) => ({ at: Date.parse(d.at), dose: d.dose_mg_m2 })),
    ...history.dose_decisions.map((d) => ({ at: Date.parse(d.at), dose: ["discontinue", "hold"].includes(d.action) ? 0 : d.dose_mg_m2 }))]
    .filter((s) => typeof s.dose === "number").sort((a, b) => a.at - b.at);
  if (levels.length) {
    let path = "";
    for (const p of parts) {
      const before = levels.filter((l) => l.at <= p.start).at(-1);
      const inside = levels.filter((l) => l.at > p.start && l.at <= p.end);
      if (!before && !inside.length) continue;
      let level = before ? before.dose : inside[0].dose;
      path += ` M ${(before ? p.x0 : x(inside[0].at)).toFixed(1)} ${yDose(level).toFixed(1)}`;
      for (const l of inside) { path += ` H ${x(l.at).toFixed(1)} V ${yDose(l.dose).toFixed(1)}`; level = l.dose; }
      path += ` H ${p.x1.toFixed(1)}`;
    }
    chart.append(svg("path", { d: path.trim(), class: "dose-level", "data-series": "dose" }));
  }
  // immunotherapy episodes: a shaded band from the first event to the last, labelled
  for (const e of episodes) {
    const x0 = x(e.started_at), x1 = Math.max(x(e.last_at), x0 + 6);
    const band = svg("g", { class: "episode", "data-episode": e.therapy });
    band.append(svg("title", {}, `${therapyName(e.therapy)} ${formatDate(e.started_at)}${e.events > 1 ? ` to ${formatDate(e.last_at)}` : ""}`));
    band.append(svg("rect", { x: x0, y: pad.top, width: x1 - x0, height: bottom - pad.top, class: "episode-band" }));
    band.append(svg("text", { x: x0 + 2, y: bottom - 4, class: "tick episode-label" }, "IT"));
    chart.append(band);
  }
  // doses given: squares on the dose axis
  for (const d of history.doses.filter((d) => d.source === "given" && typeof d.dose_mg_m2 === "number")) {
    const mark = svg("rect", { x: x(d.at) - 4, y: yDose(d.dose_mg_m2) - 4, width: 8, height: 8, class: "dose-given", "data-series": "given" });
    mark.append(svg("title", {}, `given ${formatTime(d.at)}: ${mgm2(d.dose_mg_m2)}${d.dose_mg ? ` (${d.dose_mg} mg)` : ""}`));
    chart.append(mark);
  }
  // grades: one path per domain, broken at each gap
  for (const [domain, colour] of Object.entries(DOMAINS)) {
    const domainGraded = graded.filter((g) => g[domain] !== undefined && g[domain] !== null);
    if (!domainGraded.length) continue;
    let path = "", previous = null;
    for (const g of domainGraded) {
      const t = Date.parse(g.at);
      const joined = previous !== null && partOf(previous) === partOf(t);
      path += `${joined ? " L" : " M"} ${x(g.at).toFixed(1)} ${yGrade(g[domain]).toFixed(1)}`;
      previous = t;
    }
    chart.append(svg("path", { d: path.trim(), fill: "none", stroke: colour, "stroke-width": 2, "data-series": domain, "data-points": String(domainGraded.length) }));
    for (const g of domainGraded) {
      const dot = svg("circle", { cx: x(g.at), cy: yGrade(g[domain]), r: 3.5, fill: colour });
      dot.append(svg("title", {}, `${domain} G${g[domain]} · ${formatTime(g.at)}`));
      chart.append(dot);
    }
  }
  // patient reports: hollow triangles at the composite sensory grade (not joined to the
  // clinicians' line: they advise, clinicians decide), "W" above one that reports new weakness
  for (const r of reports) {
    const rx = x(r.at), ry = yGrade(r.sensory ?? 0);
    const mark = svg("g", { class: "patient-report-mark", "data-patient-report": r.new_weakness ? "weakness" : "report" });
    mark.append(svg("title", {}, `patient report ${formatTime(r.at)}: sensory G${r.sensory ?? "—"} (PRO-CTCAE composite)${r.new_weakness ? ", new weakness" : ""}`));
    mark.append(shape("triangle", rx, ry, DOMAINS.sensory));
    if (r.new_weakness) mark.append(svg("text", { x: rx, y: ry - 9, "text-anchor": "middle", class: "marker-glyph weakness" }, "W"));
    chart.append(mark);
  }
  // decision markers: a line and a glyph at the top
  for (const d of [...history.dose_decisions, ...escalations]) {
    const marker = MARKERS[d.action];
    if (!marker) continue;
    const mx = x(d.at);
    const group = svg("g", { class: `marker ${d.action}`, "data-marker": d.action });
    group.append(svg("title", {}, `${marker.label}${d.dose_mg_m2 ? ` to ${mgm2(d.dose_mg_m2)}` : ""} · ${d.rule} · ${formatTime(d.at)}`));
    group.append(svg("line", { x1: mx, x2: mx, y1: pad.top, y2: bottom, class: "marker-line" }));
    group.append(svg("text", { x: mx, y: pad.top - 6, "text-anchor": "middle", class: "marker-glyph" }, marker.glyph));
    chart.append(group);
  }
  const shown = Object.keys(DOMAINS).filter((d) => graded.some((g) => g[d] !== undefined));
  chart.setAttribute("aria-label", `Neuropathy grades (${shown.join(", ") || "none"}) on a 0 to 4 scale, and the dose in mg/m² on its own scale, `
    + `${reports.length ? `${reports.length} patient report(s) marked apart, ` : ""}${episodes.length ? `${episodes.length} immunotherapy episode(s) shaded, ` : ""}`
    + `from ${formatDate(new Date(parts[0].start + 3 * DAY).toISOString())} to ${formatDate(new Date(parts.at(-1).end - 3 * DAY).toISOString())}`
    + `${parts.length > 1 ? `, with ${parts.length - 1} gap(s) in the record` : ""}. The tables below list the same decisions and doses.`);
  $("chart-legend").replaceChildren(
    ...shown.map((d) => el("span", { class: `legend ${d}` }, `— ${d} grade`)),
    el("span", { class: "legend dose" }, "┅ recommended dose (right axis)"),
    el("span", { class: "legend given" }, "■ dose given"),
    ...(reports.length ? [el("span", { class: "legend pro-report" }, "△ patient report (sensory, PRO-CTCAE composite; W new weakness)")] : []),
    ...(episodes.length ? [el("span", { class: "legend episode" }, "▒ IT immunotherapy episode")] : []),
    el("span", { class: "legend markers" }, "markers: ↓ reduce · H hold · R resume · ✕ discontinue · E escalation · // gap"));
}

// ---- start -----------------------------------------------------------------------------------

if (document.body.dataset.page === "feed") { wireFeed(); startPage(startFeed); }
else startPage(startPatient);
