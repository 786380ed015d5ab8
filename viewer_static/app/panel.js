// One panel (panel.html?id=N or #id=N): the patient's pseudonym and consent,
// the state with the lead's next moves, the shared studies with the embedded
// viewer, contributions and requests for information, the outcome, members
// and invitations. Every action is one API call; the server decides who may
// do what, and its refusal (problem detail) is shown as it is.
import { api, ApiError, el, fmtDate, requireLogin, showError, STATE_NAMES, topBar } from "/app/common.js";

const $ = (id) => document.getElementById(id);
const error = $("error");
const notice = $("notice");
// mirror dicom_service/care/panels.py: what the page offers in which state
const ACTIVE = new Set(["inviting", "review", "meeting", "outcome"]);
const CONTRIBUTE = new Set(["inviting", "review", "meeting"]);
const INVITE = new Set(["draft", "inviting", "review", "meeting"]);
const PREPARE = new Set(["draft", ...ACTIVE]);
const KINDS = { contribution: "Contribution", info_request: "Request for information" };

const params = new URLSearchParams(location.search);
const hash = new URLSearchParams(location.hash.slice(1));
const panelId = Number(params.get("id") || hash.get("id"));

let me = null;
let panel = null;
let names = new Map();  // user ID -> display name
let viewer = null;
let viewerStudies = "";

function say(text) {
  notice.textContent = text;
  notice.classList.remove("hidden");
}

/** Run an action; show the server's refusal, else reload the panel. */
async function act(fn, done) {
  error.classList.add("hidden");
  notice.classList.add("hidden");
  try {
    await fn();
    if (done) say(done);
    await load();
  } catch (e) { showError(error, e); }
}

function author(id) {
  if (id === me.id) return `${me.display_name} (you)`;
  if (id === panel.lead_user_id) return names.get(id) || panel.lead_name || "The lead";
  return names.get(id) || `Person #${id}`;
}

function transitionLabel(from, to) {
  if (from === "closed" && to !== "archived") return to === "review" ? "Restart: new round, in review" : "Restart: new round, invite again";
  return { inviting: "Open: send the invitations", review: "Start the review", meeting: "Hold a meeting",
    outcome: "Move to the outcome", closed: "Close the panel", archived: "Archive" }[to] || to;
}

function renderHeader() {
  document.title = `${panel.title} · dicom_service`;
  $("title").textContent = panel.title;
  const role = panel.is_lead ? "you lead it" : panel.membership === "accepted" ? "you are a member"
    : panel.membership === "invited" ? "you are invited" : "you follow it (read-only)";
  $("facts").replaceChildren(el("span", {}, "Patient ", el("code", { id: "pseudonym" }, panel.pseudonym),
    ` · thematic area ${panel.area_code} · round ${panel.round} · ${role} `,
    el("span", { class: `badge state state-${panel.state}`, id: "state" }, STATE_NAMES[panel.state] || panel.state),
    panel.urgent ? el("span", { class: "badge urgent", id: "urgent-badge" }, "urgent") : null));
}

async function renderConsent() {
  try {  // clinicians of the patient's centre see the consents themselves
    const e = await api(`/api/centre/enrolments/${encodeURIComponent(panel.pseudonym)}`);
    const yes = (b) => (b ? "given" : "not given");
    $("consent").textContent = `Consent for care: ${e.consent_care ? "active" : "withdrawn"} · ` +
      `registries: ${yes(e.consent_registries)} · research contact: ${yes(e.consent_research)}.`;
  } catch (err) {
    if (!(err instanceof ApiError) || ![403, 404].includes(err.status)) throw err;
    $("consent").textContent = panel.consent_care
      ? "Consent for care: active (the signed forms stay at the patient's centre)."
      : "Consent for care: withdrawn; the images were erased.";
  }
}

function renderState() {
  $("state-line").textContent = `State: ${STATE_NAMES[panel.state] || panel.state}` +
    (panel.min_contributions ? ` · closing needs ${panel.min_contributions} contributions and the outcome` : "");
  $("invitation").classList.toggle("hidden", !(panel.membership === "invited" && !panel.is_lead && ACTIVE.has(panel.state)));
  $("lead-state").classList.toggle("hidden", !panel.is_lead);
  if (!panel.is_lead) return;
  $("restart-reason-box").classList.toggle("hidden", panel.state !== "closed");
  $("transitions").replaceChildren(...panel.next_states.map((to) => el("button", {
    type: "button", "data-to": to, class: to === "archived" ? "secondary" : null,
    onclick: () => act(() => api(`/api/panels/${panel.id}/transition`, { method: "POST", body: {
      to, reason: panel.state === "closed" && $("restart-reason").value.trim() ? $("restart-reason").value.trim() : null,
    } }), `The panel is now ${STATE_NAMES[to]}.`),
  }, transitionLabel(panel.state, to))));
  if (!panel.next_states.length) $("transitions").append(el("p", { class: "muted" }, "No further move."));
  $("urgent").checked = panel.urgent;
  $("urgent").disabled = !PREPARE.has(panel.state);
}

function tag(ds, t) {
  const v = ds[t] && ds[t].Value;
  return v && v.length ? v : null;
}

function fmtDicomDate(da) {
  return /^\d{8}$/.test(da || "") ? `${da.slice(0, 4)}-${da.slice(4, 6)}-${da.slice(6)}` : da || "";
}

async function renderStudies() {
  const shared = new Set(panel.studies);
  let rows = [];
  const fields = "includefield=StudyDescription&includefield=ModalitiesInStudy";
  if (panel.is_lead) {  // the lead chooses among the enrolment's studies
    rows = await api(`/dicom-web/studies?PatientID=${encodeURIComponent(panel.pseudonym)}&${fields}`);
  } else if (panel.images && shared.size) {
    rows = await api(`/dicom-web/studies?StudyInstanceUID=${[...shared].join(",")}&${fields}`);
  }
  const canChange = panel.is_lead && PREPARE.has(panel.state);
  $("studies").querySelector("tbody").replaceChildren(...rows.map((ds) => {
    const uid = tag(ds, "0020000D")[0];
    const description = (tag(ds, "00081030") || [""])[0];
    const date = fmtDicomDate((tag(ds, "00080020") || [""])[0]);
    const isShared = shared.has(uid);
    const box = el("input", { type: "checkbox", checked: isShared, disabled: !canChange,
      "aria-label": `Share the study ${description}${date ? ` of ${date}` : ""} with the panel`,
      onchange: (ev) => act(() => api(`/api/panels/${panel.id}/studies/${encodeURIComponent(uid)}`,
        { method: ev.target.checked ? "PUT" : "DELETE" }),
        ev.target.checked ? "The study is shared with the panel." : "The study is no longer shared."),
    });
    return el("tr", { "data-study": uid, class: isShared ? "shared" : null },
      el("td", {}, date || "(none)"),
      el("td", {}, description || "(no description)"),
      el("td", {}, (tag(ds, "00080061") || []).join(", ")),
      el("td", {}, (tag(ds, "00201208") || [""])[0]),
      el("td", { class: "check" }, box));
  }));
  let note = "";
  if (!panel.images) {
    note = panel.membership === "invited" ? "Accept the invitation to see the images."
      : panel.state === "draft" ? "Members see the shared studies once the panel is open."
      : panel.state === "archived" ? "The panel is archived: its images are no longer shared."
      : "The images are for the lead and the members only.";
  } else if (!shared.size) {
    note = "No study is shared yet.";
  }
  $("studies-note").textContent = note;
  await renderViewer(panel.images ? [...shared].sort() : []);
}

async function renderViewer(studies) {
  const key = studies.join(",");
  if (key === viewerStudies) return;
  viewerStudies = key;
  if (viewer) { viewer.destroy(); viewer = null; window.panelViewer = null; }
  const host = $("viewer-host");
  host.replaceChildren();
  host.classList.toggle("hidden", !studies.length);
  if (!studies.length) return;
  const { mountViewer } = await import("/viewer/viewer.js");
  viewer = mountViewer(host, { panelId: panel.id, studyUIDs: studies, dicomwebRoot: "/dicom-web" });
  window.panelViewer = viewer;  // for tests and scripts, as /viewer/index.html does
}

async function renderContributions() {
  const participant = panel.is_lead || panel.membership === "accepted";
  $("contrib-card").classList.toggle("hidden", !participant);
  if (!participant) return;
  const list = await api(`/api/panels/${panel.id}/contributions`);
  const editable = (c) => c.author_id === me.id && CONTRIBUTE.has(panel.state) && c.round === panel.round;
  $("contributions").replaceChildren(...list.map((c) => {
    const body = el("p", { class: "prewrap body" }, c.body);
    const item = el("li", { class: `contribution kind-${c.kind}`, "data-id": c.id, "data-kind": c.kind },
      el("p", { class: "meta" }, el("strong", {}, author(c.author_id)), " · ",
        el("span", { class: `badge kind` }, KINDS[c.kind] || c.kind), ` · round ${c.round} · ${fmtDate(c.created_at)}`,
        new Date(c.updated_at) - new Date(c.created_at) > 1000 ? ` (edited ${fmtDate(c.updated_at)})` : ""),
      body);
    if (editable(c)) {
      const area = el("textarea", { rows: 4, maxlength: 20000, id: `edit-${c.id}`, required: true });
      area.value = c.body;
      const form = el("form", { class: "hidden edit", onsubmit: (ev) => {
        ev.preventDefault();
        act(() => api(`/api/panels/${panel.id}/contributions/${c.id}`, { method: "PUT", body: { body: area.value } }),
          "Your contribution is updated.");
      } }, el("label", { for: `edit-${c.id}` }, "Edit your text"), area,
      el("button", { type: "submit" }, "Save"), " ",
      el("button", { type: "button", class: "secondary", onclick: () => { form.classList.add("hidden"); body.classList.remove("hidden"); } }, "Cancel"));
      item.append(form,
        el("button", { type: "button", class: "secondary", "aria-label": "Edit this contribution", onclick: () => {
          form.classList.remove("hidden"); body.classList.add("hidden"); area.focus();
        } }, "Edit"), " ",
        el("button", { type: "button", class: "secondary", "aria-label": "Delete this contribution", onclick: () => {
          if (confirm("Delete your contribution?")) {
            act(() => api(`/api/panels/${panel.id}/contributions/${c.id}`, { method: "DELETE" }), "Deleted.");
          }
        } }, "Delete"));
    }
    return item;
  }));
  const open = CONTRIBUTE.has(panel.state);
  $("contrib-form").classList.toggle("hidden", !open);
  $("contrib-note").textContent = list.length ? "" : "No contribution yet.";
  if (!open) $("contrib-note").textContent += " Contributions are written while the panel is inviting, in review or in a meeting.";
}

function renderOutcome() {
  const participant = panel.is_lead || panel.membership === "accepted";
  $("outcome-card").classList.toggle("hidden", !participant);
  if (!participant) return;
  $("outcome").textContent = panel.outcome || (panel.state === "outcome" ? "The lead is writing the outcome." : "No outcome yet.");
  const writes = panel.is_lead && panel.state === "outcome";
  $("outcome-form").classList.toggle("hidden", !writes);
  if (writes) $("outcome-text").value = panel.outcome || "";
  const earlier = (panel.rounds || []).filter((r) => r.number < panel.round);
  $("rounds").replaceChildren(...(earlier.length ? [el("h3", {}, "Earlier rounds")] : []),
    ...earlier.map((r) => el("div", { class: "round" },
      el("p", { class: "muted" }, `Round ${r.number}: opened ${fmtDate(r.opened_at)}, closed ${fmtDate(r.closed_at)}`),
      el("p", { class: "prewrap" }, r.outcome || "(no outcome)"))));
}

async function renderMembers() {
  const members = await api(`/api/panels/${panel.id}/members`);
  names = new Map(members.map((m) => [m.user_id, m.display_name]));
  if (panel.lead_user_id === me.id) names.set(me.id, me.display_name);
  const removable = panel.is_lead && PREPARE.has(panel.state);
  $("members").querySelector("tbody").replaceChildren(...members.map((m) => el("tr", { "data-user": m.user_id, "data-status": m.status },
    el("td", {}, m.display_name), el("td", {}, m.status), el("td", {}, fmtDate(m.invited_at)),
    el("td", {}, fmtDate(m.responded_at)),
    el("td", {}, removable && ["invited", "accepted"].includes(m.status)
      ? el("button", { type: "button", class: "secondary", "aria-label": `Remove ${m.display_name}`,
        onclick: () => act(() => api(`/api/panels/${panel.id}/members/${m.user_id}`, { method: "DELETE" }),
          `${m.display_name} is removed.`) }, "Remove") : ""))));
  const invites = panel.is_lead && INVITE.has(panel.state);
  $("invite-box").classList.toggle("hidden", !invites);
  if (!invites) return;
  const candidates = await api(`/api/panels/${panel.id}/candidates`);
  $("candidate").replaceChildren(...candidates.map((c) => el("option", { value: c.user_id }, c.display_name)));
  $("invite-form").querySelector("button").disabled = !candidates.length;
  if (!candidates.length) $("candidate").append(el("option", { value: "" }, "Nobody else chose this thematic area"));
  let groups = [];
  try {
    groups = await api(`/api/networks/${panel.network_id}/groups`);
  } catch (e) { if (!(e instanceof ApiError)) throw e; }
  $("group").replaceChildren(...groups.map((g) => el("option", { value: g.id }, `${g.name} (${g.member_ids.length})`)));
  $("group-form").classList.toggle("hidden", !groups.length);
}

async function load() {
  try {
    panel = await api(`/api/panels/${panelId}`);
  } catch (e) {
    if (e instanceof ApiError && e.status === 404) {
      $("panel").classList.add("hidden");
      $("not-found").classList.remove("hidden");
      return;
    }
    throw e;
  }
  $("panel").classList.remove("hidden");
  renderHeader();
  renderState();
  await renderMembers();  // names first: contributions show authors
  await Promise.all([renderConsent(), renderContributions(), renderStudies()]);
  renderOutcome();
}

function wire() {
  $("accept").addEventListener("click", () => act(() => api(`/api/panels/${panel.id}/response`,
    { method: "POST", body: { accept: true } }), "You joined the panel."));
  $("decline").addEventListener("click", () => act(() => api(`/api/panels/${panel.id}/response`,
    { method: "POST", body: { accept: false } }), "You declined the invitation."));
  $("urgent").addEventListener("change", () => act(() => api(`/api/panels/${panel.id}/urgent`,
    { method: "PUT", body: { urgent: $("urgent").checked } })));
  $("contrib-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    act(async () => {
      await api(`/api/panels/${panel.id}/contributions`, { method: "POST",
        body: { body: $("contrib-body").value, kind: $("contrib-kind").value } });
      $("contrib-body").value = "";
    }, "Posted.");
  });
  $("outcome-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    act(() => api(`/api/panels/${panel.id}/outcome`, { method: "PUT", body: { text: $("outcome-text").value } }),
      "The outcome is saved.");
  });
  $("invite-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const name = $("candidate").selectedOptions[0]?.textContent;
    act(() => api(`/api/panels/${panel.id}/invitations`, { method: "POST",
      body: { user_id: Number($("candidate").value) } }), `${name} is invited.`);
  });
  $("group-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    act(async () => {
      const r = await api(`/api/panels/${panel.id}/invitations/group`, { method: "POST",
        body: { group_id: Number($("group").value) } });
      $("skipped").replaceChildren(...r.skipped.map((s) => el("li", {}, `Person #${s.user_id} not invited: ${s.reason}`)));
      say(`${r.invited.length} invited, ${r.skipped.length} not invited.`);
    });
  });
}

async function main() {
  me = await requireLogin();
  topBar(me);
  if (!Number.isInteger(panelId) || panelId <= 0) {
    $("not-found").classList.remove("hidden");
    return;
  }
  wire();
  await load();
  document.body.dataset.ready = "true";
}

main().catch((e) => showError(error, e));
