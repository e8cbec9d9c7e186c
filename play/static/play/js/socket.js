// One resilient WebSocket per endpoint, following docs/protocol.md: the token in the `bearer`
// subprotocol, pongs for the server's pings, replies matched by `id`, and reconnects that honour
// the close codes (4401 → new token first, 4403 → stop, others → back off with jitter).

const BACKOFF_INITIAL_MS = 500;
// With ±50 % jitter a wait is at most 18 s: long enough to spread a crowd coming back after a
// restart, short enough that a player does not give up on the page.
const BACKOFF_MAX_MS = 12_000;
const ABUSE_PAUSE_MS = 10_000; // 4429: the server wants us gone for a while
const REQUEST_TIMEOUT_MS = 10_000;
const CONNECT_TIMEOUT_MS = 15_000; // a handshake, or connection_established, that never comes
// Several 4401s in a row even with fresh tokens: the account itself is refused (e.g. deactivated).
const MAX_AUTH_FAILURES = 3;

export const Close = Object.freeze({
  NORMAL: 1000,
  GOING_AWAY: 1001,
  TOO_BIG: 1009,
  UNAUTHORIZED: 4401,
  FORBIDDEN: 4403,
  HEARTBEAT_TIMEOUT: 4408,
  SLOW_CONSUMER: 4413,
  RATE_LIMIT_ABUSE: 4429,
});

// What a close means to a player. The code itself goes in the status tooltip.
const CLOSE_WORDS = {
  1000: "Connection closed",
  1001: "Server restarting",
  1011: "Server error",
  1012: "Server restarting",
  1013: "Server busy",
  4401: "Signing in again",
  4408: "Connection timed out",
  4413: "Connection too slow",
  4429: "Too many messages",
};

export function closeWords(code) {
  return CLOSE_WORDS[code] || "Connection lost"; // 1006 and the rest: the network dropped it
}

// Errors about the connection itself (sent before a close, or at connect): the connection
// status shows them; panels leave them alone.
export const CONNECTION_ERRORS = new Set([
  "token_expired",
  "invalid_token",
  "authentication_required",
  "banned",
  "kicked",
  "heartbeat_timeout",
  "server_shutting_down",
  "too_many_connections",
]);

// An `error` frame from the server (or a local "not connected"), thrown by request().
export class ServerError extends Error {
  constructor(frame) {
    super(frame.message || frame.code);
    this.code = frame.code;
    this.details = frame.details;
    this.frame = frame;
  }
}

export function websocketBase(location = window.location) {
  return `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}`;
}

// States: idle → connecting → open → (waiting → connecting → open)* → stopped.
// Besides the state: `reason` (for people: "Server restarting"), `closeCode` (of the last close,
// until open again), `technical` (the server's words, or what failed) and, while waiting,
// `retryAt` (when the next attempt starts).
export class Endpoint {
  constructor(name, { auth, base = websocketBase() }) {
    this.name = name;
    this.auth = auth;
    this.url = `${base}/ws/${name}`;
    this.state = "idle";
    this.reason = "";
    this.closeCode = null;
    this.technical = "";
    this.retryAt = null;
    this.connects = 0; // connection_established frames seen: > 1 means we reconnected
    this.clockOffsetMs = 0; // server clock minus ours, from connection_established
    this.lastError = null; // the last connection-level error frame: why the server is closing
    this.onUnhandledError = null;
    this._ws = null;
    this._listeners = new Map();
    this._stateListeners = [];
    this._pending = new Map();
    this._ids = 0;
    this._backoff = BACKOFF_INITIAL_MS;
    this._authFailures = 0;
    this._retryTimer = null;
    this._attempt = 0; // bumped by every connect and drop: a late token renewal checks it
    this._watchdog = null;
    this._heartbeatMs = 30_000;
  }

  // --- subscriptions ----------------------------------------------------------------------

  on(type, handler) {
    if (!this._listeners.has(type)) this._listeners.set(type, []);
    this._listeners.get(type).push(handler);
    return this;
  }

  onState(handler) {
    this._stateListeners.push(handler);
    handler(this.state, this.reason, this);
  }

  serverNow() {
    return Date.now() + this.clockOffsetMs;
  }

  // --- lifecycle --------------------------------------------------------------------------

  start() {
    if (this.state === "idle" || this.state === "stopped") this._connect();
  }

  stop(reason = "Stopped") {
    clearTimeout(this._retryTimer);
    this._drop(Close.NORMAL, "client stopping");
    this._setState("stopped", reason);
  }

  // The player asked (the "Reconnect now" button): skip the wait, and give a stopped connection
  // (kicked, or sign-in refused) one more chance, since a person decided.
  reconnectNow() {
    const stuck = this.state === "waiting" || (this.state === "stopped" && this.auth.loggedIn);
    if (!stuck) return;
    this._backoff = BACKOFF_INITIAL_MS;
    this._authFailures = 0;
    this._reconnectNow(true);
  }

  // A new access token: hand it to the open connection (`token_refresh`), so it outlives the old
  // one without a reconnect (which would, for instance, put the world player back at the spawn
  // point). If that is refused, or the socket is not open, reconnect with the new token instead.
  renew() {
    if (this.state === "stopped" || this.state === "idle") return;
    if (this.state === "open") {
      this.request({ type: "token_refresh", token: this.auth.access }).catch(() => this._reconnectNow());
      return;
    }
    this._reconnectNow();
  }

  _reconnectNow(evenIfStopped = false) {
    if (this.state === "idle" || (this.state === "stopped" && !evenIfStopped)) return;
    clearTimeout(this._retryTimer);
    this._drop(Close.NORMAL, "reconnecting");
    this._connect();
  }

  _connect() {
    this._attempt += 1;
    const attempt = this._attempt;
    if (!this.auth.access) {
      this._setState("stopped", "Logged out");
      return;
    }
    if (!this.auth.stale) {
      this._open(this.auth.access);
      return;
    }
    // Past its renewal time (a refresh failed while the server was away, or the computer slept):
    // the server would refuse it with 4401 token_expired, so renew it first.
    this._setState("connecting", "Renewing the sign-in");
    this.auth.refresh().then(
      () => {
        if (attempt === this._attempt) this._open(this.auth.access);
      },
      (error) => {
        if (attempt !== this._attempt) return;
        if (!this.auth.loggedIn) this._setState("stopped", "Logged out");
        else this._scheduleReconnect("Cannot reach the server", `token refresh failed: ${error.message}`);
      },
    );
  }

  _open(token) {
    this._setState("connecting", "Connecting");
    this.lastError = null;
    let ws;
    try {
      ws = new WebSocket(this.url, ["bearer", token]);
    } catch (error) {
      this._scheduleReconnect("Cannot connect", error.message);
      return;
    }
    this._ws = ws;
    ws.onmessage = (event) => this._receive(ws, event.data);
    ws.onclose = (event) => this._closed(ws, event.code, event.reason);
    ws.onerror = () => {}; // always followed by a close event, which decides what to do
    this._armWatchdog(CONNECT_TIMEOUT_MS, "no handshake or connection_established in time");
  }

  // Detach and close a socket without reacting to its close event.
  _drop(code, reason) {
    this._attempt += 1;
    const ws = this._ws;
    this._ws = null;
    clearTimeout(this._watchdog);
    this._failPending("not_connected", "The connection was closed.");
    if (ws) {
      ws.onmessage = ws.onclose = ws.onerror = null;
      if (ws.readyState <= WebSocket.OPEN) ws.close(code, reason);
    }
  }

  _closed(ws, code, reason) {
    if (ws !== this._ws) return;
    this._ws = null;
    clearTimeout(this._watchdog);
    this._failPending("not_connected", "The connection was closed.");
    this.closeCode = code;
    const technical = this.lastError?.message || reason || "";
    if (code === Close.FORBIDDEN) {
      // Banned or kicked: a person must decide, not a retry loop. The server's words say why.
      this._setState("stopped", technical || "Refused by the server", { technical: "" });
      return;
    }
    if (code === Close.UNAUTHORIZED) {
      this._authFailures += 1;
      if (this._authFailures > MAX_AUTH_FAILURES) {
        this._setState("stopped", "Sign-in refused", { technical });
        return;
      }
      // Expired or refused token: get a new one, then reconnect (at once the first time).
      this._setState("waiting", closeWords(code), { technical });
      this.auth.refresh().then(
        () => {
          if (this.state !== "waiting") return;
          if (this._authFailures > 1) this._scheduleReconnect(closeWords(code), technical);
          else this._connect();
        },
        (error) => {
          // Refused: the session is over (the app shows the login). Unreachable: try later.
          if (!this.auth.loggedIn) this._setState("stopped", "Logged out");
          else this._scheduleReconnect("Cannot reach the server", `token refresh failed: ${error.message}`);
        },
      );
      return;
    }
    // 1001 (going away), 4408 (heartbeat), 4413 (slow), 1006 (network) and the rest: come back.
    this._scheduleReconnect(closeWords(code), technical, code === Close.RATE_LIMIT_ABUSE ? ABUSE_PAUSE_MS : 0);
  }

  _scheduleReconnect(reason, technical, atLeastMs = 0) {
    const delay = Math.max(atLeastMs, this._backoff * (0.5 + Math.random())); // ±50 % jitter
    this._backoff = Math.min(this._backoff * 2, BACKOFF_MAX_MS);
    clearTimeout(this._retryTimer);
    this._retryTimer = setTimeout(() => this._connect(), delay);
    this._setState("waiting", reason, { technical, retryAt: Date.now() + delay });
  }

  // No frame at all for two heartbeat intervals: the path to the server is dead even if the
  // browser has not noticed (a proxy or NAT dropped it). Reconnect instead of waiting forever.
  _armWatchdog(ms = this._heartbeatMs * 2 + 5_000, technical = `nothing heard for ${ms / 1000} s`) {
    clearTimeout(this._watchdog);
    const ws = this._ws;
    this._watchdog = setTimeout(() => {
      if (ws !== this._ws) return;
      this._drop(Close.NORMAL, "silent connection");
      this._scheduleReconnect("No answer from the server", technical);
    }, ms);
  }

  _setState(state, reason, { technical, retryAt = null } = {}) {
    this.state = state;
    this.reason = reason;
    // What went wrong stays on show while connecting again; an open connection clears it.
    if (state === "open") this.closeCode = null;
    this.technical = technical ?? (state === "open" ? "" : this.technical);
    this.retryAt = retryAt;
    for (const handler of this._stateListeners) handler(state, reason, this);
  }

  // --- frames -----------------------------------------------------------------------------

  _receive(ws, data) {
    if (ws !== this._ws) return;
    this._armWatchdog();
    let frame;
    try {
      frame = JSON.parse(data);
    } catch {
      return; // the server only sends JSON; nothing sensible to do with anything else
    }
    switch (frame.type) {
      case "ping":
        this.send({ type: "pong" });
        return;
      case "connection_established":
        this.connects += 1;
        this._backoff = BACKOFF_INITIAL_MS;
        this._authFailures = 0;
        this.lastError = null;
        this._heartbeatMs = (frame.heartbeat_interval || 30) * 1000;
        this.clockOffsetMs = Date.parse(frame.server_time) - Date.now();
        this._armWatchdog();
        this._setState("open", "Connected");
        this._emit(frame.type, { ...frame, reconnected: this.connects > 1 });
        return;
      case "error":
        if (CONNECTION_ERRORS.has(frame.code)) this.lastError = frame;
        break;
      default:
        break;
    }
    // A reply settles its request; a non-error reply is then also an event like any other, so
    // each panel handles e.g. its own combat_action_result and the others' in one place.
    // (zone_change gets two replies: zone_changed settles it, nearby_players is just an event.)
    const waiter = frame.id !== undefined ? this._pending.get(frame.id) : undefined;
    if (waiter) {
      this._pending.delete(frame.id);
      clearTimeout(waiter.timer);
      if (frame.type === "error") {
        waiter.reject(new ServerError(frame));
        return;
      }
      waiter.resolve(frame);
    }
    if (frame.type === "error") {
      const handled = this._emit("error", frame);
      if (!handled && this.onUnhandledError) this.onUnhandledError(frame, this);
      return;
    }
    this._emit(frame.type, frame);
  }

  // Returns true when a listener says it handled the frame.
  _emit(type, frame) {
    let handled = false;
    for (const handler of this._listeners.get(type) || []) {
      try {
        handled = handler(frame, this) === true || handled;
      } catch (error) {
        console.error(`/ws/${this.name} ${type} handler failed`, error);
      }
    }
    return handled;
  }

  send(frame) {
    const ws = this._ws;
    if (!ws || ws.readyState !== WebSocket.OPEN || this.state !== "open") return false;
    ws.send(JSON.stringify(frame));
    return true;
  }

  // Send with an `id`; resolves with the reply carrying it, rejects with its `error`.
  request(frame, { timeoutMs = REQUEST_TIMEOUT_MS } = {}) {
    const id = `${this.name[0]}${++this._ids}`;
    return new Promise((resolve, reject) => {
      if (!this.send({ ...frame, id })) {
        reject(new ServerError({ code: "not_connected", message: `/ws/${this.name} is not connected right now.` }));
        return;
      }
      const timer = setTimeout(() => {
        this._pending.delete(id);
        reject(new ServerError({ code: "timeout", message: "The server did not answer in time." }));
      }, timeoutMs);
      this._pending.set(id, { resolve, reject, timer });
    });
  }

  _failPending(code, message) {
    for (const { reject, timer } of this._pending.values()) {
      clearTimeout(timer);
      reject(new ServerError({ code, message }));
    }
    this._pending.clear();
  }
}
