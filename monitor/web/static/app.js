// bipn-monitor web page: the live alert feed (nurse) and the patient page. No build step.
// Data is written with textContent only (never as HTML). The token lives in sessionStorage.
"use strict";

const TOKEN_KEY = "bipn-monitor-token";
const $ = (id) => document.getElementById(id);
const token = () => sessionStorage.getItem(TOKEN_KEY);

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (key === "class") node.className = value;
    else if (key.startsWith("data-")) node.setAttribute(key, value);
    else node[key] = value;
  }
  for (const child of children) {
    if (child !== null && child !== undefined) node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

async function api(path, options = {}) {
  const headers = Object.assign({ Authorization: `Bearer ${token()}` }, options.headers || {});
  const response = await fetch(path, Object.assign({}, options, { headers }));
  if (response.status === 401) { logout("Your token was not accepted: log in again."); throw new Error("401"); }
  if (!response.ok) {
    let detail = response.statusText;
    try { detail = (await response.json()).detail || detail; } catch (_) { /* not JSON */ }
    throw new Error(`${response.status}: ${detail}`);
  }
  return response.json();
}

function logout(message) {
  sessionStorage.removeItem(TOKEN_KEY);
  showLogin(message);
}

function showLogin(message) {
  $("login").hidden = false;
  $("session").hidden = true;
  for (const id of ["feed", "patient"]) if ($(id)) $(id).hidden = true;
  $("login-error").textContent = message || "";
}

function when(text) {
  if (!text) return "—";
  const date = new Date(text);
  return `${date.toLocaleString()} (${text.replace("T", " ").replace(/\.\d+/, "").replace("Z", " UTC")})`;
}

const words = (text) => (text || "").replaceAll("_", " ");

// ---- the feed ------------------------------------------------------------------------------

const feed = { lastId: null, controller: null, items: new Map() };

function alertMatches(alert) {
  const severity = $("filter-severity").value;
  if (severity && alert.severity !== severity) return false;
  if ($("filter-unacked").checked && alert.acknowledged) return false;
  return true;
}

function renderAlert(alert) {
  const item = el("li", { class: `alert ${alert.severity}${alert.acknowledged ? " acknowledged" : ""}`, "data-alert-id": String(alert.id) });
  const kind = alert.kind === "new" ? "" : ` (${alert.kind})`;
  item.append(
    el("div", { class: "meta" },
      el("span", { class: `badge ${alert.severity}` }, alert.severity),
      el("span", {}, `#${alert.id}`),
      el("a", { href: `/patients/${encodeURIComponent(alert.patient_id)}` }, alert.patient_id),
      alert.unit ? el("span", {}, `unit ${alert.unit}`) : null,
      el("span", {}, `for ${alert.audience.join(", ")}`),
      el("time", { dateTime: alert.created_at }, when(alert.created_at))),
    el("div", { class: "title" }, `${words(alert.action)}${kind}`),
    el("div", { class: "message" }, alert.message),
  );
  const ack = el("div", { class: "ack" });
  if (alert.acknowledged) {
    ack.append(`Acknowledged by ${alert.ack.by} at ${when(alert.ack.at)}${alert.ack.note ? ` — ${alert.ack.note}` : ""}`);
  } else {
    const button = el("button", { type: "button", class: "ack-button" }, "Acknowledge");
    button.addEventListener("click", () => acknowledge(alert.id, button));
    ack.append(button);
  }
  item.append(ack);
  return item;
}

function showAlert(alert) {
  feed.items.set(alert.id, alert);
  const old = document.querySelector(`[data-alert-id="${alert.id}"]`);
  if (!alertMatches(alert)) { if (old) old.remove(); return; }
  const item = renderAlert(alert);
  if (old) { old.replaceWith(item); return; }
  const list = $("alerts");
  const newer = [...list.children].find((node) => Number(node.dataset.alertId) < alert.id);
  list.insertBefore(item, newer || null);
  $("empty").hidden = true;
}

function redraw() {
  $("alerts").replaceChildren();
  [...feed.items.values()].sort((a, b) => b.id - a.id).forEach(showAlert);
  $("empty").hidden = $("alerts").children.length > 0;
}

async function acknowledge(alertId, button) {
  button.disabled = true;
  try {
    const alert = await api(`/v1/alerts/${alertId}/ack`, {
      method: "POST", headers: { "Content-Type": "application/json" }, body: "{}",
    });
    showAlert(alert);
  } catch (error) {
    button.disabled = false;
    $("feed-error").textContent = `Could not acknowledge alert ${alertId}: ${error.message}`;
  }
}

function setLive(on, text) {
  const badge = $("live");
  badge.className = `live ${on ? "on" : "off"}`;
  badge.textContent = text;
}

// SSE over fetch (EventSource cannot send the Authorization header); resumes with Last-Event-ID.
async function stream() {
  for (;;) {
    feed.controller = new AbortController();
    try {
      const headers = { Authorization: `Bearer ${token()}`, Accept: "text/event-stream" };
      if (feed.lastId !== null) headers["Last-Event-ID"] = String(feed.lastId);
      const response = await fetch("/v1/alerts/stream", { headers, signal: feed.controller.signal });
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
          handleFrame(buffer.slice(0, end));
          buffer = buffer.slice(end + 2);
        }
      }
    } catch (error) {
      if (!token()) return;
    }
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

async function startFeed() {
  $("login").hidden = true;
  $("session").hidden = false;
  $("feed").hidden = false;
  const page = await api("/v1/alerts?limit=200");
  feed.items.clear();
  page.alerts.forEach((alert) => feed.items.set(alert.id, alert));
  feed.lastId = page.last_id;
  redraw();
  stream();
}

// ---- the patient page ----------------------------------------------------------------------

async function startPatient() {
  $("login").hidden = true;
  $("session").hidden = false;
  $("patient").hidden = false;
  const patientId = decodeURIComponent(location.pathname.split("/").pop());
  $("patient-title").textContent = `Patient ${patientId}`;
  const base = `/v1/patients/${encodeURIComponent(patientId)}`;
  try {
    const [state, decisions, history] = await Promise.all(
      [base, `${base}/decisions`, `${base}/history`].map((path) => api(path)));
    renderCourse(state);
    renderMonitoring(state);
    renderDecisions(decisions.decisions);
    renderChart(history);
  } catch (error) {
    $("patient-error").textContent = `Could not load the patient: ${error.message}`;
  }
}

function renderCourse(state) {
  const rows = [
    ["status", state.status], ["dose", state.dose_mg_m2 ? `${state.dose_mg_m2} mg/m²` : "—"],
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
    el("div", { class: "when" }, `${when(d.at)} · ${d.rule} · ${d.policy} · `, el("span", { class: `badge ${d.severity}` }, d.severity)),
    el("strong", {}, words(d.action) + (d.dose_mg_m2 ? ` to ${d.dose_mg_m2} mg/m²` : "")),
    el("div", {}, d.rationale))));
}

const DOMAINS = { sensory: "#1f77b4", motor: "#d62728", pain: "#9467bd", autonomic: "#2ca02c" };
const SVG = "http://www.w3.org/2000/svg";

function svg(tag, attrs, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
  if (text !== undefined) node.textContent = text;
  return node;
}

function renderChart(history) {
  const chart = $("chart");
  const width = chart.clientWidth || 640, height = chart.clientHeight || 260;
  const pad = { left: 36, right: 78, top: 12, bottom: 28 };
  chart.setAttribute("viewBox", `0 0 ${width} ${height}`);
  chart.replaceChildren();
  const times = [...history.grades, ...history.doses, ...history.dose_decisions].map((p) => Date.parse(p.at));
  if (!times.length) { chart.append(svg("text", { x: 20, y: 30 }, "No grades yet")); return; }
  const t0 = Math.min(...times), t1 = Math.max(...times, t0 + 86400000);
  const x = (at) => pad.left + (Date.parse(at) - t0) / (t1 - t0) * (width - pad.left - pad.right);
  const yGrade = (g) => height - pad.bottom - g / 4 * (height - pad.top - pad.bottom);
  const yDose = (d) => height - pad.bottom - d / 1.3 * (height - pad.top - pad.bottom);
  for (let g = 0; g <= 4; g++) {
    chart.append(svg("line", { x1: pad.left, x2: width - pad.right, y1: yGrade(g), y2: yGrade(g), stroke: "#eee" }));
    chart.append(svg("text", { x: 8, y: yGrade(g) + 4, "font-size": 11 }, `G${g}`));
  }
  for (const dose of [0.7, 1.0, 1.3]) chart.append(svg("text", { x: width - pad.right + 6, y: yDose(dose) + 4, "font-size": 11, fill: "#555" }, `${dose} mg/m²`));
  // the dose level: given doses and dose decisions, as a step line
  const steps = [...history.doses.map((d) => ({ at: d.at, dose: d.dose_mg_m2 })),
    ...history.dose_decisions.map((d) => ({ at: d.at, dose: ["discontinue", "hold"].includes(d.action) ? 0 : d.dose_mg_m2 }))]
    .filter((s) => s.dose !== null && s.dose !== undefined).sort((a, b) => Date.parse(a.at) - Date.parse(b.at));
  if (steps.length) {
    let path = `M ${x(steps[0].at)} ${yDose(steps[0].dose)}`;
    for (const step of steps.slice(1)) path += ` H ${x(step.at)} V ${yDose(step.dose)}`;
    path += ` H ${width - pad.right}`;
    chart.append(svg("path", { d: path, fill: "none", stroke: "#888", "stroke-width": 2, "stroke-dasharray": "5 3", "data-series": "dose" }));
  }
  for (const [domain, colour] of Object.entries(DOMAINS)) {
    const points = history.grades.filter((g) => g[domain] !== undefined);
    if (!points.length) continue;
    chart.append(svg("polyline", { points: points.map((p) => `${x(p.at)},${yGrade(p[domain])}`).join(" "), fill: "none", stroke: colour, "stroke-width": 2, "data-series": domain }));
    for (const p of points) chart.append(svg("circle", { cx: x(p.at), cy: yGrade(p[domain]), r: 3, fill: colour }));
  }
  chart.append(svg("text", { x: pad.left, y: height - 8, "font-size": 11 }, new Date(t0).toISOString().slice(0, 10)));
  chart.append(svg("text", { x: width - pad.right, y: height - 8, "font-size": 11, "text-anchor": "end" }, new Date(t1).toISOString().slice(0, 10)));
  $("chart-legend").replaceChildren(...Object.keys(DOMAINS).map((d) => el("span", { class: `legend ${d}` }, `— ${d}`)),
    el("span", { class: "muted" }, "- - dose level (right axis)"));
}

// ---- start -----------------------------------------------------------------------------------

function start() {
  const page = document.body.dataset.page;
  const run = page === "feed" ? startFeed : startPatient;
  $("login").addEventListener("submit", async (event) => {
    event.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, $("token").value.trim());
    $("token").value = "";
    run().catch((error) => { if (error.message !== "401") showLogin(error.message); });
  });
  $("logout").addEventListener("click", () => { if (feed.controller) feed.controller.abort(); logout(""); });
  if (page === "feed") {
    $("filter-severity").addEventListener("change", redraw);
    $("filter-unacked").addEventListener("change", redraw);
    $("open-patient").addEventListener("submit", (event) => {
      event.preventDefault();
      const id = $("patient-id").value.trim();
      if (id) location.href = `/patients/${encodeURIComponent(id)}`;
    });
  }
  if (token()) run().catch((error) => { if (error.message !== "401") showLogin(error.message); });
  else showLogin("");
}

start();
