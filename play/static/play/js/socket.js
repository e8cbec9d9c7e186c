// One connection per endpoint, on @rpgrealtime/client (clients/js, served at
// /static/rpgrealtime-client/): reconnects by close code, pongs, dead-connection detection,
// token renewal in band and stream recovery come from the library. This module adds what the
// page shows: the state in words for the connection pills, and the session's tokens.

import { CloseCode, RealtimeClient, ServerError } from "../../rpgrealtime-client/index.js";
import { describeError } from "./ui.js";

export { ServerError };
export const Close = CloseCode;

// With full jitter a wait is at most 16 s: long enough to spread a crowd coming back after a
// restart, short enough that a player does not give up on the page.
const BACKOFF_MAX_MS = 16_000;
const RATE_LIMITED_MS = 10_000; // 4429: wait 10–20 s

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
  4503: "Server busy",
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
  "unavailable",
]);

export function websocketBase(location = window.location) {
  return `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}`;
}

const STATES = { idle: "idle", connecting: "connecting", open: "open", reconnecting: "waiting", closed: "stopped" };

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
    this.clockOffsetMs = 0; // server clock minus ours, from connection_established
    this.lastError = null; // the error frame that came with the last close
    this.onUnhandledError = null;
    this._listeners = new Map();
    this._stateListeners = [];
    this._given = null; // the access token last handed to the library
    this._stopReason = null;
    this.client = new RealtimeClient(this.url, {
      getToken: ({ reason }) => this._token(reason),
      backoffMaxMs: BACKOFF_MAX_MS,
      rateLimitedDelayMs: RATE_LIMITED_MS,
    });
    this.client.on("connection_established", (frame) => this._established(frame));
    this.client.on("close", (event) => this._closed(event));
    this.client.on("state", (event) => this._stateChanged(event));
    this.client.on("resync", (event) => this._emit("resync", event));
    this._trackedAtDrop = null; // stream names the library could resume when the connection dropped
  }

  // The session's access token; a new one when the library asks to renew it (or after a
  // 4401) and still holds the one it was given, or when ours is past its renewal time.
  async _token(reason) {
    if (!this.auth.access) throw new Error("logged out");
    if ((reason === "refresh" && this._given === this.auth.access) || this.auth.stale) {
      try {
        await this.auth.refresh();
      } catch (error) {
        throw new Error(`token refresh failed: ${error.message}`);
      }
    }
    this._given = this.auth.access;
    return this._given;
  }

  // --- subscriptions ----------------------------------------------------------------------

  // A handler may return true to say it handled an `error` frame; unhandled ones go to
  // onUnhandledError. Besides the protocol's types: "resync" ({stream, reason}) for a stream
  // whose missed frames will not come: the library's (docs/clients.md, "Stream recovery"), and
  // "untracked" for one it never had a position for (see _established).
  on(type, handler) {
    if (!this._listeners.has(type)) {
      this._listeners.set(type, []);
      if (type !== "connection_established" && type !== "resync") {
        this.client.on(type, (frame) => {
          const handled = this._emit(type, frame);
          if (type === "error" && !handled && this.onUnhandledError) this.onUnhandledError(frame, this);
        });
      }
    }
    this._listeners.get(type).push(handler);
    return this;
  }

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

  onState(handler) {
    this._stateListeners.push(handler);
    handler(this.state, this.reason, this);
  }

  /** connection_established frames seen: > 1 means we reconnected. */
  get connects() {
    return this.client.connects;
  }

  serverNow() {
    return Date.now() + this.clockOffsetMs;
  }

  /** True once connected to a server that recovers streams: panels re-read only what it cannot. */
  get recovers() {
    return this.client.supportsResume;
  }

  /**
   * Positions of streams joined after connecting, as a reply reports them (`zone_changed.streams`,
   * docs/protocol.md §12): without them the library would know a zone's stream only from its
   * first world event, and could not resume one that had none yet. Streams it tracks already keep
   * their own position.
   */
  adoptStreams(streams) {
    if (streams && typeof streams === "object") this.client.streams.adopt(streams);
  }

  // --- lifecycle --------------------------------------------------------------------------

  start() {
    this._stopReason = null;
    if (this.state === "idle" || this.state === "stopped") this.client.connect().catch(() => {});
  }

  stop(reason = "Stopped") {
    this._stopReason = reason;
    this.client.close();
  }

  // The player asked (the "Reconnect now" button): skip the wait, and give a stopped connection
  // (kicked, or sign-in refused) one more chance, since a person decided.
  reconnectNow() {
    if (!this.auth.loggedIn) return;
    if (this.state === "waiting" || this.state === "stopped") this.client.reconnectNow();
  }

  _established(frame) {
    this.lastError = null;
    this.clockOffsetMs = Date.parse(frame.server_time) - Date.now();
    const reconnected = this.connects > 1;
    const recovering = reconnected && this.recovers;
    // Against a server that recovers streams, what was missed comes back by itself (or as a
    // "resync" for what cannot); otherwise the panels re-read what they show.
    this._emit("connection_established", { ...frame, reconnected, recovering });
    if (!recovering) return;
    // A stream the connection received without ever learning its position (a guild joined
    // after connecting, whose chat said nothing yet) cannot be resumed: the library starts it
    // at today's position, so whatever was said during the drop must be read again.
    const before = this._trackedAtDrop || new Set();
    for (const stream of Object.keys(frame.streams || {})) {
      if (!before.has(stream)) this._emit("resync", { stream, reason: "untracked", offset: null, epoch: null });
    }
  }

  _closed(event) {
    // A failed attempt (no token, no server) has no close code: the last one stays on show.
    if (event.code !== null) this.closeCode = event.code;
    this.lastError = event.error;
    const serverWords = event.error?.message || "";
    if (event.action === "stop") {
      // Banned or kicked: the player's words for the server's reason (or the close's own).
      let words = event.error ? describeError(event.error) : event.reason || "Refused by the server";
      if (event.code === Close.UNAUTHORIZED) words = "Sign-in refused";
      this._pending = { reason: words, technical: serverWords || event.reason };
      return;
    }
    let words = closeWords(event.code);
    if (event.code === null) words = "Cannot reach the server";
    else if (/^no frame|no answer/.test(event.reason)) words = "No answer from the server";
    this._pending = { reason: words, technical: serverWords || event.reason || "" };
  }

  _stateChanged(event) {
    if (event.previous === "open" && event.state !== "open") {
      this._trackedAtDrop = new Set(Object.keys(this.client.streams.positions()));
    }
    const state = STATES[event.state];
    let reason;
    let technical = this.technical;
    if (state === "open") {
      reason = "Connected";
      technical = "";
      this.closeCode = null;
    } else if (state === "stopped") {
      reason = this._stopReason || this._pending?.reason || "Stopped";
      technical = this._stopReason ? "" : this._pending?.technical ?? "";
    } else if (state === "waiting") {
      reason = this._pending?.reason || "Connection lost";
      technical = this._pending?.technical ?? "";
    } else {
      reason = "Connecting";
    }
    this.state = state;
    this.reason = reason;
    this.technical = technical;
    this.retryAt = state === "waiting" ? event.retryAt : null;
    for (const handler of this._stateListeners) handler(state, reason, this);
  }

  // --- frames -----------------------------------------------------------------------------

  send(frame) {
    return this.client.send(frame);
  }

  // Send with an `id`; resolves with the reply carrying it, rejects with its `error`.
  request(frame, { timeoutMs } = {}) {
    return this.client.request(frame, timeoutMs ? { timeoutMs } : {});
  }
}
