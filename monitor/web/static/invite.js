// bipn-monitor web pages: "Invite to report" (the chair list and the patient page). A new invite
// (POST /v1/patients/{id}/invites) is shown once in a dialog: its QR code, its link to copy, its
// expiry, and Revoke; the patient's earlier links still active are listed, each revocable.
// The QR code is the API's SVG shown as an image (never inserted as markup). common.js first.
"use strict";

const invitePath = (patientId) => `/v1/patients/${encodeURIComponent(patientId)}/invites`;
const INVITE_ROLES = ["nurse", "infusion", "admin"];

async function mayInvite() {
  try { return INVITE_ROLES.includes((await me()).role); } catch (_) { return false; }
}

function inviteDialog() {
  let dialog = $("invite-dialog");
  if (dialog) return dialog;
  dialog = el("dialog", { id: "invite-dialog", class: "invite-dialog", "aria-labelledby": "invite-title" },
    el("h2", { id: "invite-title", tabIndex: -1 }),
    el("p", { id: "invite-error", class: "error", role: "alert" }),
    el("div", { id: "invite-body" }),
    el("p", { id: "invite-status", class: "muted", role: "status" }),
    el("h3", { id: "invite-others-title", hidden: true }, "Earlier links still active"),
    el("ul", { id: "invite-others", "aria-labelledby": "invite-others-title" }),
    el("div", { class: "invite-actions" }, el("button", { type: "button", id: "invite-close" }, "Close")));
  document.body.append(dialog);
  $("invite-close").addEventListener("click", () => dialog.close());
  return dialog;
}

async function revokeInvite(patientId, inviteId, button) {
  button.disabled = true;
  try {
    await api(`${invitePath(patientId)}/${inviteId}`, { method: "DELETE" });
    $("invite-status").textContent = "Revoked: that link no longer works.";
    return true;
  } catch (error) {
    if (error.message !== "401") $("invite-error").textContent = `Not revoked: ${error.detail || error.message}`;
    button.disabled = false;
    return false;
  }
}

function renderNewInvite(patientId, invite) {
  const img = el("img", { class: "invite-qr", alt: "QR code of the report link", width: 240, height: 240,
    src: `data:image/svg+xml;charset=utf-8,${encodeURIComponent(invite.qr_svg)}` });
  const link = el("input", { id: "invite-link", type: "text", readOnly: true, value: invite.url, "aria-describedby": "invite-expiry" });
  const copy = el("button", { type: "button", id: "invite-copy" }, "Copy link");
  copy.addEventListener("click", async () => {
    link.select();
    try { await navigator.clipboard.writeText(invite.url); $("invite-status").textContent = "Link copied."; }
    catch (_) { $("invite-status").textContent = "Copy the selected link with your keyboard (Ctrl+C)."; }
  });
  const revoke = el("button", { type: "button", id: "invite-revoke", class: "danger" }, "Revoke this link");
  revoke.addEventListener("click", async () => {
    if (await revokeInvite(patientId, invite.id, revoke)) { revoke.textContent = "Revoked"; img.classList.add("revoked"); link.disabled = true; copy.disabled = true; }
  });
  $("invite-body").replaceChildren(
    el("p", {}, "Let the patient scan this code with their phone, or give them the link. It opens a short symptom report about this patient only."),
    img,
    el("div", { class: "field invite-link-field" }, el("label", { for: "invite-link" }, "Link"), link),
    el("p", { id: "invite-expiry" }, "Valid until ", timeNode(invite.expires_at), ". Shown only now: it is not stored."),
    el("p", { class: "invite-buttons" }, copy, " ", revoke));
}

async function renderOtherInvites(patientId, newId) {
  const { invites } = await api(invitePath(patientId));
  const others = invites.filter((i) => i.state === "active" && i.id !== newId);
  $("invite-others-title").hidden = others.length === 0;
  $("invite-others").replaceChildren(...others.map((i) => {
    const button = el("button", { type: "button", "data-invite-id": i.id }, "Revoke");
    button.addEventListener("click", async () => { if (await revokeInvite(patientId, i.id, button)) button.closest("li").remove(); });
    return el("li", {}, "Made ", timeNode(i.created_at), ", valid until ", timeNode(i.expires_at), " ", button);
  }));
}

async function openInvite(patientId, opener) {
  const dialog = inviteDialog();
  $("invite-title").textContent = `Invite ${patientId} to report symptoms`;
  $("invite-error").textContent = "";
  $("invite-status").textContent = "Making a link…";
  $("invite-body").replaceChildren();
  $("invite-others").replaceChildren();
  $("invite-others-title").hidden = true;
  dialog.onclose = () => opener && opener.focus();
  dialog.showModal();
  $("invite-title").focus();
  try {
    const invite = await postJson(invitePath(patientId), {});
    $("invite-status").textContent = "";
    renderNewInvite(patientId, invite);
    await renderOtherInvites(patientId, invite.id);
  } catch (error) {
    $("invite-status").textContent = "";
    if (error.message !== "401") $("invite-error").textContent = `No link made: ${error.detail || error.message}`;
  }
}

// The "Invite to report" button of a patient (shown to the roles that may invite).
function inviteButton(patientId) {
  const button = el("button", { type: "button", class: "invite-open", "data-invite-patient": patientId }, "Invite to report");
  button.addEventListener("click", () => openInvite(patientId, button));
  return button;
}

// On the patient page: the button under the title, for the roles that may invite.
async function offerInvite(container, patientId) {
  if (await mayInvite()) { container.replaceChildren(inviteButton(patientId)); container.hidden = false; }
}
