// bipn-monitor web pages: what every page shares (the token, API calls, building nodes, times).
// No build step. Data is written with textContent only (never as HTML). The token lives in the
// tab's sessionStorage; each page's own script (app.js, chair.js) comes after this one.
// When the service signs staff in at the hospital's provider (GET /auth/options), the login
// form offers "Sign in" instead of the token field; the provider's access token is then the
// bearer (put in sessionStorage by signin.js), and the page returns to sign-in when it expires.
"use strict";

const TOKEN_KEY = "bipn-monitor-token";
const EXPIRES_KEY = "bipn-monitor-token-expires"; // epoch seconds, for a provider's token
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

let signInAtProvider = false; // GET /auth/options, asked once in startPage
let expiryTimer = null;

function logout(message) {
  sessionStorage.removeItem(TOKEN_KEY);
  sessionStorage.removeItem(EXPIRES_KEY);
  whoAmI = null;
  clearTimeout(expiryTimer);
  onLogout.forEach((hook) => hook());
  showLogin(message);
}

// The login form as the service wants it: a "Sign in" link to the provider (back to this page
// afterwards), or the token field.
function offerSignIn() {
  const form = $("login");
  if (!$("sign-in-box")) {
    for (const node of form.children) {
      if (!/^H[12]$/.test(node.tagName) && node.id !== "login-error") node.hidden = true;
    }
    form.insertBefore(el("p", { id: "sign-in-box" },
      el("a", { id: "sign-in", class: "button", href: "/auth/login" }, "Sign in"),
      " with your hospital account."), $("login-error"));
  }
  $("sign-in").href = `/auth/login?next=${encodeURIComponent(location.pathname + location.search)}`;
}

function showLogin(message) {
  $("login").hidden = false;
  $("session").hidden = true;
  for (const node of document.querySelectorAll("[data-after-login]")) node.hidden = true;
  if (signInAtProvider) offerSignIn();
  $("login-error").textContent = message || "";
  if (message) (signInAtProvider ? $("sign-in") : $("token")).focus();
}

// Who is signed in, in the header: the role (and units), never a name.
function showWho() {
  let who = $("who");
  if (!who) {
    who = el("span", { id: "who", class: "who" });
    $("session").insertBefore(who, $("logout"));
  }
  me().then(({ role, units }) => {
    who.textContent = units ? `${role} · ${units.join(", ")}` : role;
  }).catch(() => { who.textContent = ""; });
}

function showSession() {
  $("login").hidden = true;
  $("session").hidden = false;
  showWho();
}

// A provider's token ends at its expiry: the page goes back to sign-in then (not at the next
// refused call, which may be a while on a quiet feed).
function watchExpiry() {
  clearTimeout(expiryTimer);
  const expires = Number(sessionStorage.getItem(EXPIRES_KEY));
  if (!expires) return;
  const left = expires * 1000 - Date.now();
  const end = () => logout("Your sign-in has expired: sign in again.");
  if (left <= 0) end();
  else expiryTimer = setTimeout(end, Math.min(left, 2 ** 31 - 1));
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
  const go = () => {
    watchExpiry();
    if (token()) run().catch((error) => { if (error.message !== "401") showLogin(error.message); });
  };
  $("login").addEventListener("submit", (event) => {
    event.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, $("token").value.trim());
    $("token").value = "";
    go();
  });
  $("logout").addEventListener("click", () => {
    logout("");
    // ends the provider's session too, so the next person here signs in as themselves
    if (signInAtProvider) location.assign("/auth/logout");
  });
  fetch("/auth/options")
    .then((response) => (response.ok ? response.json() : {}))
    .catch(() => ({}))
    .then((options) => {
      signInAtProvider = options.sign_in === true;
      if (token()) go();
      else showLogin("");
    });
}
