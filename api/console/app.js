// The console's shell: sign-in, the session, the WebSocket, and which view is shown.
import { makeApi, signIn } from "./api.js";
import { h, replace } from "./dom.js";
import { Live } from "./live.js";
import * as overview from "./view_overview.js";
import * as models from "./view_models.js";
import * as live from "./view_live.js";
import * as request from "./view_request.js";
import * as strategies from "./view_strategies.js";
import * as log from "./view_log.js";

const VIEWS = { overview, models, live, request, strategies, log };
const SESSION = "atom.session";
const RENEW_AT = 2 / 3; // of a session's life: ask for the next token then

const $ = (id) => document.getElementById(id);
let session = null;
let current = null;
let liveSocket = null;
let renewal = null;

function loadSession() {
  const saved = JSON.parse(sessionStorage.getItem(SESSION) || "null");
  return saved && saved.expires_at * 1000 > Date.now() ? saved : null;
}

function saveSession(value) {
  session = value;
  if (value) sessionStorage.setItem(SESSION, JSON.stringify(value));
  else sessionStorage.removeItem(SESSION);
}

const api = makeApi(() => session.token, () => signOut("the session has ended: sign in again"));

function scheduleRenewal() {
  clearTimeout(renewal);
  const left = session.expires_at * 1000 - Date.now();
  renewal = setTimeout(async () => {
    try {
      saveSession(await api.post("/auth/session", { minutes: 15 }));
      scheduleRenewal();
    } catch {
      renewal = setTimeout(scheduleRenewal, 5000);
    }
  }, Math.max(1000, left * RENEW_AT));
}

function problem(error) {
  const banner = $("problem");
  if (!banner) return;
  if (!error) {
    banner.hidden = true;
    return;
  }
  banner.hidden = false;
  banner.textContent = error.status ? error.message : "the server cannot be reached: retrying";
}

function route() {
  const [name, ...rest] = location.hash.replace(/^#\/?/, "").split("/");
  const view = VIEWS[name] ? name : "overview";
  if (current) current.unmount();
  for (const link of document.querySelectorAll("#nav a")) {
    link.classList.toggle("active", link.dataset.view === view);
  }
  const root = $("view");
  replace(root, h("p", { id: "problem", class: "error", hidden: true }));
  const section = h("section", { dataset: { view } });
  root.append(section);
  const ctx = {
    api, live: liveSocket, session, problem, go: (hash) => { location.hash = hash; },
  };
  current = VIEWS[view].mount(section, ctx, decodeURIComponent(rest.join("/")));
}

function showConsole() {
  $("sign-in").hidden = true;
  $("bar").hidden = false;
  $("who").textContent = `${session.role} · ${session.sees_all ? "every tenancy" : session.tenancy}`;
  $("sign-out").hidden = false;
  liveSocket = new Live(() => session.token, (state) => {
    if (state === "error") return;
    const badge = $("connection");
    badge.dataset.state = state;
    badge.textContent = state;
  });
  liveSocket.start();
  scheduleRenewal();
  window.addEventListener("hashchange", route);
  route();
}

async function signOut(message) {
  const ending = session;
  window.removeEventListener("hashchange", route);
  clearTimeout(renewal);
  if (current) current.unmount();
  current = null;
  if (liveSocket) liveSocket.close();
  liveSocket = null;
  saveSession(null);
  replace($("view"));
  $("bar").hidden = true;
  if (ending && !message) {
    // Ended on the server before the form shows: the token is refused from then on.
    await fetch("/api/advanced-ai/auth/session", {
      method: "DELETE", headers: { Authorization: `Bearer ${ending.token}` },
    }).catch(() => {});
  }
  $("sign-in").hidden = false;
  $("sign-in-error").textContent = message || "";
}

$("sign-in").addEventListener("submit", async (event) => {
  event.preventDefault();
  const input = $("key");
  const key = input.value.trim();
  input.value = "";
  try {
    saveSession(await signIn(key));
    $("sign-in-error").textContent = "";
    showConsole();
  } catch (error) {
    $("sign-in-error").textContent = error.status === 401
      ? "that key is unknown or revoked" : `sign-in failed: ${error.message}`;
  }
});
$("sign-out").addEventListener("click", () => signOut());

session = loadSession();
if (session) showConsole();
else $("sign-in").hidden = false;
