// The patients' report page (/report): one question per screen, then a review and Send.
// The invite link carries its secret in the fragment (/report#bmr_...), which the browser never
// sends to a server; it is moved to this tab's sessionStorage and out of the address bar, and
// sent only as the bearer of POST /v1/patient-reports. common.js comes first ($, el).
"use strict";

const INVITE_KEY = "bipn-monitor-invite";
const SEVERITY = ["None", "Mild", "Moderate", "Severe", "Very severe"];
const INTERFERENCE = ["Not at all", "A little bit", "Somewhat", "Quite a bit", "Very much"];
const answers = { severity: null, interference: null, weakness: null, comment: "" };
const trail = [];  // the steps shown so far, for Back

function takeSecret() {
  const fromLink = location.hash.slice(1);
  if (fromLink) {
    sessionStorage.setItem(INVITE_KEY, decodeURIComponent(fromLink));
    history.replaceState(null, "", location.pathname);  // the secret leaves the address bar
  }
  return sessionStorage.getItem(INVITE_KEY);
}

// The questions this report asks, in order: interference only when there is numbness.
function steps() {
  return ["severity", ...(answers.severity !== 0 ? ["interference"] : []), "weakness", "comment"];
}

function show(name) {
  for (const node of document.querySelectorAll(".step")) node.hidden = node.id !== `step-${name}`;
  const questions = steps(), at = questions.indexOf(name);
  $("progress").textContent = at >= 0 ? `Question ${at + 1} of ${questions.length}` : "";
  const heading = document.querySelector(`#step-${name} h1`);
  heading.focus();  // a screen reader reads the new question; Tab goes on to its answers
}

function go(name) { trail.push(name); show(name); }

function back() {
  trail.pop();
  show(trail[trail.length - 1]);
}

function chosen(name) {
  const input = document.querySelector(`input[name="${name}"]:checked`);
  return input ? input.value : null;
}

function next(step) {
  const questions = steps();
  if (step === "comment") return "review";
  return questions[questions.indexOf(step) + 1];
}

function submitStep(step) {
  if (step === "review") { send(); return; }
  const error = $(`${step}-error`);
  if (step === "comment") answers.comment = $("comment").value.trim();
  else {
    const value = chosen(step);
    if (value === null) {
      error.textContent = "Please choose an answer.";
      document.querySelector(`#step-${step} input`).focus();
      return;
    }
    error.textContent = "";
    answers[step] = step === "weakness" ? value === "yes" : Number(value);
  }
  const to = next(step);
  if (to === "review") renderReview();
  go(to);
}

function renderReview() {
  const rows = [
    ["Numbness or tingling, at its worst", SEVERITY[answers.severity]],
    ...(answers.severity > 0 ? [["How much it got in the way of daily activities", INTERFERENCE[answers.interference]]] : []),
    ["New weakness, falls or trouble walking", answers.weakness ? "Yes" : "No"],
    ["Anything else", answers.comment || "Nothing added"],
  ];
  $("review-answers").replaceChildren(...rows.flatMap(([term, value]) => [el("dt", {}, term), el("dd", {}, value)]));
}

function stopped(message) {
  $("stopped-text").textContent = message;
  go("stopped");
}

async function send() {
  const button = $("send");
  $("send-error").textContent = "";
  button.disabled = true;
  const body = { numbness_tingling_severity: answers.severity, new_weakness: answers.weakness };
  if (answers.severity > 0) body.numbness_tingling_interference = answers.interference;
  if (answers.comment) body.comment = answers.comment;
  try {
    const response = await fetch("/v1/patient-reports", {
      method: "POST",
      headers: { "Content-Type": "application/json", Authorization: `Bearer ${sessionStorage.getItem(INVITE_KEY)}` },
      body: JSON.stringify(body),
    });
    let answer = {};
    try { answer = await response.json(); } catch (_) { /* not JSON */ }
    if (response.status === 401 || response.status === 403) {
      stopped(typeof answer.detail === "string" && answer.detail.startsWith("This link")
        ? answer.detail : "This link is not valid; ask your care team for a new one.");
      return;
    }
    if (!response.ok) {
      $("send-error").textContent = "Your report was not sent. Please try again in a moment.";
      return;
    }
    renderSent(answer.care_team_phone);
  } catch (_) {
    $("send-error").textContent = "Your report was not sent: there is no connection. Please try again when you are online.";
  } finally {
    button.disabled = false;
  }
}

function renderSent(phone) {
  const call = $("sent-call");
  if (phone) call.replaceChildren("If you feel unwell, call ", el("a", { href: `tel:${phone.replace(/[^0-9+]/g, "")}` }, phone), ".");
  else call.textContent = "If you feel unwell, call your care team.";
  trail.length = 0;
  go("sent");
}

function startReport() {
  for (const form of document.querySelectorAll("form[data-step]")) {
    form.addEventListener("submit", (event) => { event.preventDefault(); submitStep(form.dataset.step); });
  }
  for (const button of document.querySelectorAll("[data-back]")) button.addEventListener("click", back);
  const count = () => { $("comment-count").textContent = `${$("comment").value.length} of 500 used.`; };
  $("comment").addEventListener("input", count);
  count();
  if (!takeSecret()) {
    stopped("This page opens from the link your care team gave you. Ask them for a link.");
    return;
  }
  go("severity");
}

startReport();
