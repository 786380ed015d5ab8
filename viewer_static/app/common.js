// Shared by the pages: calls to the service's JSON API with the session cookie
// and the CSRF header, problem responses shown as text, the top bar.

/** The CSRF token the service hands the page in a readable cookie. */
export function csrfToken() {
  const m = document.cookie.match(/(?:^|;\s*)dicom_csrf=([^;]+)/);
  return m ? decodeURIComponent(m[1]) : "";
}

export class ApiError extends Error {
  constructor(status, problem) {
    super(problem.detail || problem.title || `HTTP ${status}`);
    this.status = status;
    this.problem = problem;
  }
}

/** fetch() for the JSON API: same-origin cookies, CSRF on unsafe methods. */
export async function api(path, { method = "GET", body, headers = {}, raw = false } = {}) {
  const init = { method, credentials: "same-origin", headers: { ...headers } };
  if (!["GET", "HEAD", "OPTIONS"].includes(method)) init.headers["X-CSRF-Token"] = csrfToken();
  if (body !== undefined) {
    if (typeof body === "string") {
      init.body = body;
      init.headers["Content-Type"] ||= "text/plain";
    } else {
      init.body = JSON.stringify(body);
      init.headers["Content-Type"] = "application/json";
    }
  }
  const r = await fetch(path, init);
  if (!r.ok) {
    let problem = { title: r.statusText };
    try { problem = await r.json(); } catch { /* not JSON */ }
    throw new ApiError(r.status, problem);
  }
  if (raw) return r;
  return r.status === 204 ? null : r.json();
}

/** The logged-in person, or a redirect to the login page. */
export async function requireLogin() {
  try {
    return await api("/api/me");
  } catch (e) {
    if (e instanceof ApiError && e.status === 401) {
      location.href = "/app/index.html?next=" + encodeURIComponent(location.pathname + location.hash);
      return new Promise(() => {});
    }
    throw e;
  }
}

export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") node.className = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

/** The top bar: links, who is logged in, log out. */
export function topBar(me) {
  const bar = el("header", { class: "top" },
    el("span", { class: "brand" }, "dicom_service"),
    el("nav", { "aria-label": "main" },
      el("a", { href: "/app/panels.html" }, "My panels"),
      me.is_platform_admin || me.is_admin ? el("a", { href: "/app/profiles.html" }, "De-identification profiles") : null),
    el("span", { class: "who" }, me.display_name || me.username),
    el("button", { class: "secondary", type: "button", id: "logout", onclick: async () => {
      try { await api("/api/auth/logout", { method: "POST" }); } finally { location.href = "/app/index.html"; }
    } }, "Log out"));
  document.body.prepend(bar);
}

export function showError(target, err) {
  target.textContent = err instanceof Error ? err.message : String(err);
  target.classList.remove("hidden");
}

export function fmtDate(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  return isNaN(d) ? iso : d.toISOString().slice(0, 16).replace("T", " ");
}

/** How the pages name a panel's states. */
export const STATE_NAMES = {
  draft: "draft", inviting: "inviting", review: "open for review", meeting: "meeting",
  outcome: "outcome", closed: "closed", archived: "archived",
};
