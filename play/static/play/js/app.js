// Entry point of /play/: logging in, one connection per endpoint, and the four panels.

import { Auth, routes } from "./api.js";
import { Chat } from "./chat.js";
import { Combat } from "./combat.js";
import { Game } from "./game.js";
import { CONNECTION_ERRORS, Endpoint } from "./socket.js";
import { $, clock, describeError, el, sessionNotice, toast } from "./ui.js";
import { World } from "./world.js";

const ENDPOINTS = ["game", "chat", "world", "combat"];
// The panel that shows each endpoint's state: dimmed while that connection is down.
const PANELS = { game: ".social-panel", chat: ".chat-panel", world: ".world-panel", combat: ".combat-panel" };
// Errors about the connection itself are shown by its pill (and the session notice): no toast.
const QUIET_ERRORS = CONNECTION_ERRORS;

const config = JSON.parse($("#play-config").textContent);
const auth = new Auth();
const api = routes(auth);
let session = null; // {me, endpoints, panels} once logged in

function gameLog(text, timestamp) {
  const list = $("#game-log");
  list.append(el("li", {}, el("time", {}, clock(timestamp)), " ", text));
  while (list.children.length > 200) list.firstElementChild.remove();
  list.scrollTop = list.scrollHeight;
}

function showLogin(message = "") {
  $("#login-view").hidden = false;
  $("#game-view").hidden = true;
  $("#me").hidden = true;
  $("#auth-error").textContent = message;
  $("#auth-form input[name=username]").focus();
}

// The pill's line for people ("Connection lost — reconnecting in 12 s"); the close code and
// the server's own words are in its tooltip.
function pillText(endpoint, now = Date.now()) {
  const { state, reason, retryAt } = endpoint;
  if (state === "open") return "";
  if (state === "waiting" && retryAt) {
    const seconds = Math.max(1, Math.ceil((retryAt - now) / 1000));
    return `${reason} — reconnecting in ${seconds} s`;
  }
  return state === "connecting" ? `${reason}…` : reason;
}

function renderPill(endpoint) {
  const pill = $(`.conn[data-endpoint="${endpoint.name}"]`);
  const text = pillText(endpoint);
  pill.dataset.state = endpoint.state;
  pill.dataset.connects = String(endpoint.connects);
  const code = endpoint.closeCode ? `close code ${endpoint.closeCode}` : "";
  pill.title = [`/ws/${endpoint.name}`, text || "connected", code, endpoint.technical].filter(Boolean).join(" — ");
  $(".conn-detail", pill).textContent = text;
}

// Connections the player can hurry along: waiting to retry, or stopped while still logged in.
function stuckEndpoints() {
  if (!session || !auth.loggedIn) return [];
  return Object.values(session.endpoints).filter((e) => e.state === "waiting" || e.state === "stopped");
}

function renderConnections() {
  if (session) {
    for (const endpoint of Object.values(session.endpoints)) {
      renderPill(endpoint);
      // What a panel shows while its connection is down is stale: say so by dimming it.
      $(PANELS[endpoint.name]).dataset.stale = String(endpoint.state !== "open");
    }
  }
  $("#reconnect-now").hidden = !stuckEndpoints().length;
}

// A connection the server stopped for good (kicked, banned, sign-in refused): the others
// usually follow for the same reason, so one notice says it for all of them.
function stoppedNotice(endpoint) {
  if (endpoint.closeCode === 4403) return endpoint.reason;
  if (endpoint.closeCode === 4401) return "The server refused your sign-in: please log in again.";
  return `The connection stopped: ${endpoint.reason}`;
}

function watchConnection(endpoint) {
  endpoint.onState((state, reason) => {
    renderConnections();
    if (state === "stopped" && reason !== "Logged out") sessionNotice(stoppedNotice(endpoint), { keep: true });
    if (state === "open" && !Object.values(session?.endpoints || {}).some((e) => e.state === "stopped")) {
      sessionNotice("");
    }
  });
  endpoint.onUnhandledError = (frame) => {
    if (QUIET_ERRORS.has(frame.code)) return;
    toast(describeError(frame), { kind: "error", title: endpoint.name[0].toUpperCase() + endpoint.name.slice(1) });
  };
}

function reconnectNow() {
  for (const endpoint of stuckEndpoints()) endpoint.reconnectNow();
}

async function startGame() {
  const me = await api.me();
  if (session && session.me.id !== me.id) {
    // Another player in this tab: start from a clean page (the new session is stored).
    window.location.reload();
    return;
  }
  $("#login-view").hidden = true;
  $("#game-view").hidden = false;
  $("#me").hidden = false;
  $("#me-name").textContent = me.username;
  document.body.dataset.userId = me.id;
  if (!session) {
    const endpoints = Object.fromEntries(ENDPOINTS.map((name) => [name, new Endpoint(name, { auth })]));
    for (const endpoint of Object.values(endpoints)) watchConnection(endpoint);
    const whisper = (userId, username) => session.panels.chat.openPrivate(userId, username);
    const panels = {};
    panels.chat = new Chat(endpoints.chat, { me, log: gameLog });
    panels.world = new World(endpoints.world, { config, me, log: gameLog, onWhisper: whisper });
    panels.combat = new Combat(endpoints.combat, { config, me, log: gameLog });
    panels.game = new Game(endpoints.game, {
      api,
      me,
      log: gameLog,
      onWhisper: whisper,
      onMembership: (updated) => {
        session.me = updated;
        panels.chat.setMembership(updated);
        panels.combat.setMembership(updated);
      },
    });
    // Someone speaking in guild or party chat whom the roster does not list has just joined.
    for (const type of ["chat_message", "typing"]) {
      endpoints.chat.on(type, (frame) => panels.game.noticeMember(frame.channel, frame.user_id));
    }
    session = { me, endpoints, panels };
    renderConnections();
    gameLog(`Welcome, ${me.username}.`);
  }
  for (const endpoint of Object.values(session.endpoints)) endpoint.start();
}

// --- session events ---------------------------------------------------------------------

// Every socket hands the new token to the server itself (token_refresh), when it is due.
auth.addEventListener("refreshed", () => {
  $("#me").dataset.refreshes = String(auth.refreshes);
});

auth.addEventListener("ended", (event) => {
  if (session) for (const endpoint of Object.values(session.endpoints)) endpoint.stop("Logged out");
  showLogin(event.detail);
});

$("#reconnect-now").addEventListener("click", reconnectNow);
$("#session-notice button").addEventListener("click", reconnectNow);
// When the browser says the network is back, the client library reconnects at once by itself.
setInterval(renderConnections, 1_000); // the "reconnecting in N s" countdowns

$("#logout").addEventListener("click", () => {
  auth.end("");
  window.location.reload();
});

$("#auth-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = event.target;
  const action = event.submitter?.value || "login";
  const username = form.username.value.trim();
  const password = form.password.value;
  const error = $("#auth-error");
  error.textContent = "";
  for (const button of form.querySelectorAll("button")) button.disabled = true;
  try {
    if (action === "register") await auth.register(username, password);
    else await auth.login(username, password);
    form.password.value = "";
    await startGame();
  } catch (failure) {
    error.textContent = failure.message;
  } finally {
    for (const button of form.querySelectorAll("button")) button.disabled = false;
  }
});

// --- start ------------------------------------------------------------------------------

(async () => {
  if (await auth.restore()) {
    try {
      await startGame();
      return;
    } catch (failure) {
      showLogin(failure.message);
      return;
    }
  }
  showLogin();
})();

