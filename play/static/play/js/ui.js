// Small DOM helpers shared by the panels: building elements, toasts, times, words for errors.
// Everything a player or the server wrote goes into the page as text (textContent), never as HTML.

export const $ = (selector, root = document) => root.querySelector(selector);

// el("li", {class: "msg", dataset: {id: 1}, onclick: fn}, "text", child) → an element.
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "dataset") Object.assign(node.dataset, value);
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (key === "text") node.textContent = value;
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

const TOAST_MS = { info: 6000, success: 6000, warning: 9000, critical: 15000, error: 9000 };

// A short-lived notice in the corner: announcements, achievements, errors nobody else showed.
// The same text again while it is still shown only refreshes it: one notice, not a pile (`key`
// names what counts as "the same" when the text may differ, e.g. one invitation renewed).
// `action` ({label, onClick}) adds a button; `ms` keeps a notice that asks for a decision longer.
export function toast(text, { kind = "info", title = null, key = null, action = null, ms = null } = {}) {
  const box = $("#toasts");
  const id = key ?? `${kind}|${title}|${text}`;
  const shown = [...box.children].find((node) => node.dataset.key === id);
  if (shown) shown.remove();
  const node = el(
    "div",
    {
      class: `toast toast-${kind}`,
      role: kind === "error" || kind === "critical" ? "alert" : "status",
      dataset: { key: id },
    },
    title ? el("strong", {}, title) : null,
    el("span", {}, text),
    action
      ? el("button", { type: "button", class: "small toast-action", onclick: action.onClick }, action.label)
      : null,
  );
  // A click anywhere on it (its button too) is the player's answer: the notice has done its job.
  node.addEventListener("click", () => node.remove());
  box.append(node);
  while (box.children.length > 4) box.firstElementChild.remove();
  setTimeout(() => node.remove(), ms ?? TOAST_MS[kind] ?? 6000);
  return node;
}

/** Remove the notice shown under `key`, if any (what it asked was answered elsewhere). */
export function dismissToast(key) {
  for (const node of $("#toasts").children) if (node.dataset.key === key) node.remove();
}

export function clock(iso) {
  const date = iso ? new Date(iso) : new Date();
  return date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
}

function shortClock(iso) {
  return new Date(iso).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
}

// Words for players, one per error code (docs/clients.md, "Error codes"). The server's own
// `message` is for developers: it stays out of the page (the code is in data-code attributes).
const WORDS = {
  invalid_json: "That could not be sent. Please try again.",
  invalid_message: "That cannot be sent like this.",
  unknown_type: "This page is out of date: please reload it.",
  message_too_large: "That is too long to send.",
  authentication_required: "Please log in first.",
  invalid_token: "Your session has ended: please log in again.",
  token_expired: "Your session expired; signing you in again.",
  forbidden: "You are not allowed to do that.",
  banned: "You are banned from the game.",
  kicked: "A moderator removed you from the game.",
  not_found: "That does not exist any more.",
  rate_limited: "You are doing that too fast: wait a moment.",
  muted: "You are muted.",
  not_your_turn: "It is not your turn.",
  invalid_action: "You cannot do that right now.",
  too_many_connections: "You have too many game windows open.",
  slow_consumer: "Your connection is too slow.",
  heartbeat_timeout: "The connection timed out.",
  server_shutting_down: "The server is restarting.",
  unavailable: "The server is busy: try again in a moment.",
  internal_error: "Something went wrong on our side.",
  not_connected: "Not connected right now: reconnecting.",
  timeout: "The server did not answer in time.",
};

// Where a code means something more precise.
const WORDS_IN = {
  chat: {
    invalid_message: "Messages must be 1 to 500 characters (no control characters).",
    message_too_large: "That message is too long.",
    forbidden: "Join a guild or party to chat there.",
    not_found: "That player does not exist any more.",
  },
  combat: {
    not_found: "That fight or monster does not exist any more.",
    forbidden: "You are not in this fight.",
    invalid_message: "Pick between 1 and 6 monsters.",
  },
  world: {
    not_found: "That zone does not exist any more.",
    forbidden: "Another window controls your player.",
    invalid_message: "You cannot go there.",
  },
  status: { invalid_message: "That status does not exist." },
};

// An error frame (or a ServerError) as one sentence for a player.
export function describeError(error, context = "") {
  const code = error.code || "internal_error";
  let text = WORDS_IN[context]?.[code] || WORDS[code] || WORDS.internal_error;
  const until = error.details && !Array.isArray(error.details) ? error.details.until : undefined;
  if ((code === "muted" || code === "banned") && until) text = text.replace(/\.$/, ` until ${shortClock(until)}.`);
  if (code === "not_your_turn" && error.message === "Your turn timed out.") text = "Your turn timed out.";
  return text;
}

// The one notice about the session itself (banned, kicked, sign-in refused), under the top bar:
// every connection closing for the same reason says so once.
// With `keep`, a notice already shown stays (the moderator's words beat the bare close).
export function sessionNotice(text, { keep = false } = {}) {
  const box = $("#session-notice");
  if (!text) {
    box.hidden = true;
    return;
  }
  if (keep && !box.hidden) return;
  $(".session-text", box).textContent = text;
  box.hidden = false;
}
