// The administrators' profile page: pick a profile, edit one of its recipes
// (checked line by line), dry-run the edit on a sample with the diff and a
// preview of cleaned pixels, run the leak check, activate.
import { api, el, requireLogin, showError, topBar } from "/app/common.js";

const $ = (id) => document.getElementById(id);
const error = $("error");
let current = null;      // the profile shown (GET /api/profiles/{name})
let original = "";       // the recipe text on disk
let badLines = new Set();

function renderGutter() {
  const n = $("recipe").value.split("\n").length;
  const out = [];
  for (let i = 1; i <= n; i++) {
    const span = el("span", badLines.has(i) ? { class: "bad" } : {}, String(i));
    out.push(span, "\n");
  }
  $("gutter").replaceChildren(...out);
  $("gutter").scrollTop = $("recipe").scrollTop;
}

async function loadProfile(name) {
  current = await api(`/api/profiles/${encodeURIComponent(name)}`);
  $("profile-facts").textContent = `version ${current.version} · sha256 ${current.sha256.slice(0, 16)}… · ` +
    (current.options.length ? `options: ${current.options.map((o) => o.name).join(", ")}` : "no options");
  $("profile-description").textContent = current.description || "";
  $("recipe-file").replaceChildren(...current.recipe_texts.map((r) => el("option", { value: r.file }, r.file)));
  showRecipe();
}

function showRecipe() {
  const r = current.recipe_texts.find((t) => t.file === $("recipe-file").value) || current.recipe_texts[0];
  original = r.text;
  $("recipe").value = r.text;
  badLines = new Set();
  $("problems").replaceChildren();
  $("valid").classList.add("hidden");
  renderGutter();
}

async function validate() {
  const file = $("recipe-file").value;
  const r = await api(`/api/profiles/validate?filename=${encodeURIComponent(file)}`,
    { method: "POST", body: $("recipe").value, headers: { "Content-Type": "text/plain" } });
  badLines = new Set(r.errors.map((e) => e.line));
  $("problems").replaceChildren(...r.errors.map((e) => el("li", {},
    el("a", { href: "#recipe", onclick: (ev) => { ev.preventDefault(); goToLine(e.line); } }, `line ${e.line}`),
    `: ${e.reason}`)));
  $("valid").classList.toggle("hidden", !r.ok);
  renderGutter();
  return r.ok;
}

function goToLine(line) {
  const ta = $("recipe");
  const lines = ta.value.split("\n");
  const start = lines.slice(0, line - 1).reduce((n, l) => n + l.length + 1, 0);
  ta.focus();
  ta.setSelectionRange(start, start + (lines[line - 1] || "").length);
  ta.scrollTop = Math.max(0, (line - 5) * 18.85);
  renderGutter();
}

async function dryRun() {
  const edited = $("recipe").value !== original;
  const sample = $("sample").value;
  const changesOnly = $("changes-only").checked;
  const r = edited
    ? await api(`/api/profiles/${encodeURIComponent(current.name)}/draft-dry-run`, { method: "POST",
        body: { file: $("recipe-file").value, text: $("recipe").value, sample, changes_only: false } })
    : await api(`/api/profiles/${encodeURIComponent(current.name)}/dry-run?sample=${encodeURIComponent(sample)}`,
        { method: "POST" });
  const counts = Object.entries(r.counts).map(([k, v]) => `${v} ${k}`).join(", ");
  $("dry-summary").textContent = `${edited ? "Edited recipe (not saved)" : "Saved profile"} on ${r.source.path}: ${counts}.`;
  const body = $("diff").querySelector("tbody");
  body.replaceChildren(...r.diff.map((d) => el("tr", { class: d.action, "data-keyword": d.keyword },
    el("td", {}, `${d.path} ${d.tag}`), el("td", {}, d.action),
    el("td", { class: "before" }, d.before ?? ""), el("td", { class: "after" }, d.after ?? ""),
    el("td", { class: "muted" }, d.rule ?? ""))));
  $("diff").classList.toggle("all", !changesOnly);
  const img = $("preview");
  if (r.preview && r.preview.png_base64) {
    img.src = `data:image/png;base64,${r.preview.png_base64}`;
    img.hidden = false;
    const regions = (r.pixels && r.pixels.regions) ? r.pixels.regions.length : 0;
    $("preview-caption").textContent = regions
      ? `${regions} burned-in text region(s) cleaned, outlined in red.`
      : "No pixel region was cleaned.";
  } else {
    img.hidden = true;
    $("preview-caption").textContent = "No preview (no pixel data).";
  }
}

async function leakCheck() {
  $("leak-summary").textContent = "Running… (about a minute)";
  const r = await api(`/api/profiles/${encodeURIComponent(current.name)}/leak-check`, { method: "POST" });
  const s = r.summary;
  $("leak-summary").textContent = `${s.survived} of ${s.planted_values} planted values survived; ` +
    `original UIDs surviving ${s.original_uids_surviving}/${s.original_uids}; ` +
    `original dates surviving ${s.original_dates_surviving}/${s.original_dates}; ${r.seconds} s.`;
  $("leak-summary").className = s.survived ? "error" : "ok";
  $("leaks").querySelector("tbody").replaceChildren(...r.planted.filter((p) => p.survived).map((p) =>
    el("tr", {}, el("td", {}, `${p.kind} (${p.category})`), el("td", {}, p.planted_in),
      el("td", {}, (p.survived_files || []).join(", ")))));
}

async function activate() {
  if (!confirm(`Activate ${current.name} version ${current.version}? New instances get it from now on.`)) return;
  const r = await api("/api/profiles/activations", { method: "POST",
    body: { name: current.name, version: current.version, sha256: current.sha256 } });
  $("activated").textContent = `Activated ${r.profile.name} v${r.profile.version}.`;
  await refreshList(current.name);
}

async function refreshList(select) {
  const snap = await api("/api/profiles");
  $("active").textContent = `${snap.active.name} v${snap.active.version} (${snap.active.source})`;
  $("profile").replaceChildren(...snap.profiles.map((p) =>
    el("option", { value: p.name, selected: p.name === select }, `${p.name} v${p.version}${p.active ? " (active)" : ""}`)));
}

function guard(fn) {
  return async () => {
    error.classList.add("hidden");
    try { await fn(); } catch (e) { showError(error, e); }
  };
}

async function main() {
  const me = await requireLogin();
  topBar(me);
  const snap = await api("/api/profiles");
  await refreshList(snap.active.name);
  const samples = await api("/api/profiles/samples");
  const labels = [...new Map(samples.map((s) => [s.label, s])).values()];
  $("sample").replaceChildren(...labels.map((s) => el("option", { value: s.label }, `${s.label} (${s.modality})`)));
  $("profile").addEventListener("change", guard(() => loadProfile($("profile").value)));
  $("recipe-file").addEventListener("change", showRecipe);
  $("recipe").addEventListener("input", renderGutter);
  $("recipe").addEventListener("scroll", () => { $("gutter").scrollTop = $("recipe").scrollTop; });
  $("validate").addEventListener("click", guard(validate));
  $("dry-run").addEventListener("click", guard(dryRun));
  $("leak-check").addEventListener("click", guard(leakCheck));
  $("activate").addEventListener("click", guard(activate));
  await loadProfile($("profile").value);
}

main().catch((e) => showError(error, e));
