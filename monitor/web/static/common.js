// bipn-monitor web pages: what every page shares (the token, API calls, building nodes, times).
// No build step. Data is written with textContent only (never as HTML). The token lives in the
// tab's sessionStorage; each page's own script (app.js, chair.js) comes after this one.
"use strict";

const TOKEN_KEY = "bipn-monitor-token";
const $ = (id) => document.getElementById(id);
const token = () => sessionStorage.getItem(TOKEN_KEY);

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") node.className = value;
    else if (key.startsWith("data-") || key.startsWith("aria-") || key === "role" || key === "for") node.setAttribute(key, value);
    else node[key] = value;
  }
  for (const child of children) {
    if (child !== null && child !== undefined) node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

// An API error: the HTTP status, the detail message, and a 409's reasons when it gives some.
class ApiError extends Error {
  constructor(status, detail) {
    const message = typeof detail === "string" ? detail
      : detail && typeof detail.message === "string" ? detail.message
        : JSON.stringify(detail);
    super(`${status}: ${message}`);
    this.status = status;
    this.detail = message;
    this.reasons = detail && Array.isArray(detail.reasons) ? detail.reasons : [];
  }
}

async function api(path, options = {}) {
  const headers = Object.assign({ Authorization: `Bearer ${token()}` }, options.headers || {});
  const response = await fetch(path, Object.assign({}, options, { headers }));
  if (response.status === 401) { logout("Your token was not accepted: log in again."); throw new Error("401"); }
  if (!response.ok) {
    let detail = response.statusText;
    try { detail = (await response.json()).detail || detail; } catch (_) { /* not JSON */ }
    throw new ApiError(response.status, detail);
  }
  return response.json();
}

// Who the token is (role, units, audiences), asked once per page: what the page offers.
let whoAmI = null;
const me = () => (whoAmI = whoAmI || api("/v1/me"));

const postJson = (path, body) => api(path, {
  method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
});

const onLogout = [];

function logout(message) {
  sessionStorage.removeItem(TOKEN_KEY);
  whoAmI = null;
  onLogout.forEach((hook) => hook());
  showLogin(message);
}

function showLogin(message) {
  $("login").hidden = false;
  $("session").hidden = true;
  for (const node of document.querySelectorAll("[data-after-login]")) node.hidden = true;
  $("login-error").textContent = message || "";
  if (message) $("token").focus();
}

function showSession() {
  $("login").hidden = true;
  $("session").hidden = false;
}

// Times: "12 Apr 2026 09:00" in the browser's time zone; the exact UTC text on hover.
const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
const two = (n) => String(n).padStart(2, "0");

function formatDate(text) {
  if (!text) return "—";
  const d = new Date(text);
  return `${d.getDate()} ${MONTHS[d.getMonth()]} ${d.getFullYear()}`;
}

function formatTime(text) {
  if (!text) return "—";
  const d = new Date(text);
  return `${formatDate(text)} ${two(d.getHours())}:${two(d.getMinutes())}`;
}

// A <time> element: its text formatted, its machine-readable time and UTC text kept.
function timeNode(text, prefix) {
  if (!text) return el("span", {}, `${prefix || ""}—`);
  return el("time", { dateTime: text, title: text }, `${prefix || ""}${formatTime(text)}`);
}

// The old form, kept where the UTC text is wanted in a sentence.
function when(text) {
  if (!text) return "—";
  return `${formatTime(text)} (${text.replace("T", " ").replace(/\.\d+/, "").replace("Z", " UTC")})`;
}

const words = (text) => (text || "").replaceAll("_", " ");
const mgm2 = (dose) => (dose === null || dose === undefined ? "—" : `${dose} mg/m²`);
const mg = (dose) => (dose === null || dose === undefined ? null : `${dose} mg`);

// Wire the login form and the logout button; `run` starts the page once a token is there.
function startPage(run) {
  const go = () => run().catch((error) => { if (error.message !== "401") showLogin(error.message); });
  $("login").addEventListener("submit", (event) => {
    event.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, $("token").value.trim());
    $("token").value = "";
    go();
  });
  $("logout").addEventListener("click", () => logout(""));
  if (token()) go();
  else showLogin("");
}
