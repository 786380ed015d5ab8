// Login: password, then the second factor (TOTP, a recovery code, or first
// enrolment of the authenticator). Every step is an API call; nothing secret
// is kept by the page.
import { api, showError } from "/app/common.js";

const $ = (id) => document.getElementById(id);
const error = $("error");
const steps = ["step-password", "step-totp", "step-enrol", "step-codes"];

function show(step) {
  for (const s of steps) $(s).classList.toggle("hidden", s !== step);
  error.classList.add("hidden");
  const first = $(step).querySelector("input, button");
  if (first) first.focus();
}

function next() {
  const target = new URLSearchParams(location.search).get("next");
  // only a path of this site, never another origin
  location.href = target && target.startsWith("/") && !target.startsWith("//") ? target : "/app/panels.html";
}

$("password-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  try {
    const r = await api("/api/auth/login", { method: "POST",
      body: { username: $("username").value, password: $("password").value } });
    $("password").value = "";
    if (r.second_factor === "enrol") {
      $("qr").innerHTML = r.qr_svg;  // SVG made by the service (segno), not user input
      const secret = new URL(r.otpauth_uri).searchParams.get("secret") || "";
      $("otp-key").textContent = secret.replace(/(.{4})/g, "$1 ").trim();
      show("step-enrol");
    } else {
      show("step-totp");
    }
  } catch (e) { showError(error, e); }
});

$("totp-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  try {
    await api("/api/auth/totp", { method: "POST", body: { code: $("code").value.trim() } });
    next();
  } catch (e) { $("code").value = ""; showError(error, e); }
});

$("recovery-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  try {
    await api("/api/auth/totp", { method: "POST", body: { recovery_code: $("recovery").value.trim() } });
    next();
  } catch (e) { showError(error, e); }
});

$("enrol-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  try {
    const r = await api("/api/auth/totp/confirm", { method: "POST",
      body: { code: $("enrol-code").value.trim() } });
    const list = $("codes");
    list.replaceChildren(...(r.recovery_codes || []).map((c) => {
      const li = document.createElement("li"); li.textContent = c; return li;
    }));
    show("step-codes");
  } catch (e) { showError(error, e); }
});

$("codes-done").addEventListener("click", next);
