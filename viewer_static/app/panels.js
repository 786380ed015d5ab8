// "My panels": the panels the person leads, is a member of or follows, their
// open invitations (accept or decline), and for clinicians a form that opens a
// new draft panel about an enrolment of their centre.
import { api, ApiError, el, fmtDate, requireLogin, showError, STATE_NAMES, topBar } from "/app/common.js";

const $ = (id) => document.getElementById(id);
const error = $("error");
const notice = $("notice");

function roleOf(p) {
  if (p.is_lead) return "lead";
  if (p.membership === "accepted") return "member";
  if (p.membership === "invited") return "invited";
  return "follows (read-only)";
}

function badges(p) {
  return [
    el("span", { class: `badge state state-${p.state}` }, STATE_NAMES[p.state] || p.state),
    p.urgent ? el("span", { class: "badge urgent" }, "urgent") : null,
  ];
}

let networks = new Map();  // id -> name

function say(text) {
  notice.textContent = text;
  notice.classList.remove("hidden");
}

async function respond(p, accept) {
  error.classList.add("hidden");
  try {
    await api(`/api/panels/${p.id}/response`, { method: "POST", body: { accept } });
    say(accept ? `You joined "${p.title}".` : `You declined "${p.title}".`);
    await loadPanels();
  } catch (e) { showError(error, e); }
}

async function loadPanels() {
  const panels = await api("/api/panels");
  const invited = panels.filter((p) => p.membership === "invited" && !p.is_lead);
  $("invitations").replaceChildren(...invited.map((p) => el("li", { "data-panel": p.id },
    el("a", { href: `/app/panel.html?id=${p.id}` }, p.title), " ",
    el("span", { class: "muted" }, `patient ${p.pseudonym}`), " ", ...badges(p), " ",
    el("button", { type: "button", class: "accept", onclick: () => respond(p, true),
      "aria-label": `Accept the invitation to ${p.title}` }, "Accept"), " ",
    el("button", { type: "button", class: "secondary decline", onclick: () => respond(p, false),
      "aria-label": `Decline the invitation to ${p.title}` }, "Decline"))));
  $("invitations-card").classList.toggle("hidden", invited.length === 0);
  $("panels").querySelector("tbody").replaceChildren(...panels.map((p) => el("tr",
    { "data-panel": p.id, "data-state": p.state },
    el("td", {}, el("a", { href: `/app/panel.html?id=${p.id}` }, p.title)),
    el("td", {}, el("code", {}, p.pseudonym)),
    el("td", {}, ...badges(p)),
    el("td", { class: "role" }, roleOf(p)),
    el("td", {}, networks.get(p.network_id) || `#${p.network_id}`),
    el("td", {}, fmtDate(p.updated_at)))));
  $("empty").classList.toggle("hidden", panels.length > 0);
}

async function loadAreas() {
  const id = $("new-network").value;
  const areas = id ? await api(`/api/networks/${encodeURIComponent(id)}/areas`) : [];
  $("new-area").replaceChildren(...areas.map((a) => el("option", { value: a.id }, `${a.code} · ${a.name}`)));
}

/** The form is for clinicians: people who see their centre's enrolments. */
async function setUpNewPanel(me) {
  let enrolments;
  try {
    enrolments = await api("/api/centre/enrolments");
  } catch (e) {
    if (e instanceof ApiError && [401, 403, 404].includes(e.status)) return;  // not a clinician
    throw e;
  }
  const active = enrolments.filter((e) => e.consent_care);
  if (!active.length) return;
  // the networks the person's centre belongs to
  const mine = [];
  for (const [id, name] of networks) {
    const centres = await api(`/api/networks/${id}/centres`);
    if (centres.some((c) => c.name === me.centre)) mine.push([id, name]);
  }
  if (!mine.length) return;
  $("new-enrolment").replaceChildren(...active.map((e) => el("option", { value: e.pseudonym },
    `${e.pseudonym} (enrolled ${fmtDate(e.created_at).slice(0, 10)})`)));
  $("new-network").replaceChildren(...mine.map(([id, name]) => el("option", { value: id }, name)));
  $("new-network").addEventListener("change", () => loadAreas().catch((e) => showError(error, e)));
  await loadAreas();
  $("new-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    error.classList.add("hidden");
    try {
      const p = await api("/api/panels", { method: "POST", body: {
        pseudonym: $("new-enrolment").value,
        network_id: Number($("new-network").value),
        area_id: Number($("new-area").value),
        title: $("new-title-input").value,
        urgent: $("new-urgent").checked,
        min_contributions: Number($("new-min").value),
      } });
      location.href = `/app/panel.html?id=${p.id}`;
    } catch (e) { showError(error, e); }
  });
  $("new-card").classList.remove("hidden");
}

async function main() {
  const me = await requireLogin();
  topBar(me);
  networks = new Map((await api("/api/networks")).map((n) => [n.id, n.name]));
  await loadPanels();
  await setUpNewPanel(me);
  document.body.dataset.ready = "true";
}

main().catch((e) => showError(error, e));
