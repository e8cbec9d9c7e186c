// One resilient connection to one rpgrealtime endpoint (docs/clients.md): the token in the
// `bearer` subprotocol, pongs for the server's pings, dead-connection detection, reconnects that
// follow the close codes, token renewal in band, stream recovery, and requests matched by `id`.

import { jwtClaims, renewalDelayMs } from "./jwt.js";
import { Backoff, CloseCode, closeAction } from "./rules.js";
import { StreamTracker } from "./streams.js";

const DEFAULTS = Object.freeze({
  requestTimeoutMs: 10_000,
  // A resume is answered after the connect completes and the missed frames are sent: in a
  // reconnect storm that can take longer than a request, and giving up means re-reading
  // everything (more load on a server already busy with the storm).
  resumeTimeoutMs: 30_000,
  // A handshake, or a `connection_established`, that never comes (a listen queue overflowing in
  // a reconnect storm answers after 1, 3, 7 s of SYN retries): give up and try again.
  connectTimeoutMs: 15_000,
  // "Dead" is no frame at all for heartbeat_interval + this: 35 s at the default 30 s interval,
  // against about 65 s for a browser to notice a silent drop by itself.
  heartbeatGraceMs: 5_000,
  backoffInitialMs: 1_000,
  backoffMaxMs: 30_000,
  // After 4429 the server wants the client gone for a while: wait 15–30 s.
  rateLimitedDelayMs: 15_000,
  tokenRefreshLeadMs: 60_000,
  // 4401 token_expired again and again despite new tokens: the token source is broken; stop.
  maxTokenRefreshes: 3,
  resume: true,
  listenOnline: true,
  // After the browser says it is online again, an open connection must answer a ping this fast.
  onlineProbeTimeoutMs: 5_000,
});

// Errors that explain why the server is about to close the connection.
const CONNECTION_ERRORS = new Set([
  "authentication_required",
  "invalid_token",
  "token_expired",
  "banned",
  "kicked",
  "heartbeat_timeout",
  "server_shutting_down",
  "too_many_connections",
  "unavailable",
]);

const OPEN = 1; // WebSocket.OPEN, the same for every implementation

/** An `error` frame from the server (or a local one: `not_connected`, `timeout`, `closed`). */
export class ServerError extends Error {
  constructor(frame) {
    super(frame.message || frame.code);
    this.name = "ServerError";
    this.code = frame.code;
    this.details = frame.details;
    this.frame = frame;
  }
}

/** The server refused the connection for good (4401 other than expiry, 4403): a person must act. */
export class ConnectionRefused extends Error {
  constructor(code, error) {
    super(error?.message || `connection refused with close code ${code}`);
    this.name = "ConnectionRefused";
    this.code = code;
    this.error = error || null;
  }
}

function protocolAtLeast(version, wanted) {
  if (typeof version !== "string") return false;
  const [major, minor] = version.split(".").map(Number);
  const [wantMajor, wantMinor] = wanted.split(".").map(Number);
  return major > wantMajor || (major === wantMajor && (minor || 0) >= wantMinor);
}

export class RealtimeClient {
  /**
   * @param {string} url  `wss://host/ws/chat`
   * @param {object} [options]  see types/index.d.ts (`ClientOptions`)
   */
  constructor(url, options = {}) {
    this.url = url;
    this.options = { ...DEFAULTS, ...options };
    const { token, getToken } = this.options;
    this._getToken = getToken || (token ? () => token : null);
    this._WebSocket = this.options.WebSocket || globalThis.WebSocket;
    if (!this._WebSocket) {
      throw new TypeError("No WebSocket class: pass options.WebSocket (e.g. the `ws` package's) outside a browser.");
    }
    this.state = "idle"; // idle → connecting → open → reconnecting → connecting … → closed
    this.established = null; // the last connection_established frame
    this.connects = 0; // connection_established frames seen: > 1 means reconnected
    this.lastClose = null; // {code, reason, error} of the last close
    this.supportsResume = false;
    this.streams = new StreamTracker(this.options.streams);
    this._backoff = new Backoff({
      initialMs: this.options.backoffInitialMs,
      maxMs: this.options.backoffMaxMs,
      random: this.options.random,
    });
    this._listeners = new Map();
    this._pending = new Map();
    this._ids = 0;
    this._ws = null;
    this._attempt = 0; // bumped by every connect and drop: late callbacks check it
    this._lastError = null;
    this._tokenRefreshes = 0;
    this._renewAt = Infinity;
    this._timers = { retry: null, watchdog: null, renew: null, resume: null };
    this._resumeId = null;
    this._waiters = [];
    this._onOnline = () => this._online();
  }

  // --- events ----------------------------------------------------------------------------------

  /**
   * Call `handler(frame, client)` for every server frame of `type` ("*" for all). Besides the
   * protocol's types: "state" ({state, previous}), "close" ({code, reason, error, action, delayMs}),
   * "resync" ({stream, reason, offset, epoch}). Returns a function that removes the handler.
   */
  on(type, handler) {
    if (!this._listeners.has(type)) this._listeners.set(type, new Set());
    this._listeners.get(type).add(handler);
    return () => this.off(type, handler);
  }

  off(type, handler) {
    this._listeners.get(type)?.delete(handler);
  }

  /** The next event of `type` (optionally matching `filter`), as a promise. */
  once(type, { filter = () => true, timeoutMs = 0 } = {}) {
    return new Promise((resolve, reject) => {
      let timer = null;
      const off = this.on(type, (event) => {
        if (!filter(event)) return;
        off();
        clearTimeout(timer);
        resolve(event);
      });
      if (timeoutMs) {
        timer = setTimeout(() => {
          off();
          reject(new ServerError({ code: "timeout", message: `no ${type} within ${timeoutMs} ms` }));
        }, timeoutMs);
      }
    });
  }

  _emit(type, payload) {
    const handlers = [...(this._listeners.get(type) || [])];
    for (const handler of handlers) {
      try {
        handler(payload, this);
      } catch (error) {
        (this.options.onHandlerError || ((e) => console.error(`rpgrealtime: ${type} handler failed`, e)))(error);
      }
    }
  }

  _deliver(frame) {
    this._emit(frame.type, frame);
    this._emit("*", frame);
  }

  _setState(state, extra = {}) {
    const previous = this.state;
    this.state = state;
    this._emit("state", { state, previous, ...extra });
  }

  // --- lifecycle ------------------------------------------------------------------------------

  /** Connect (if not connected yet); resolves with the next `connection_established`. */
  connect() {
    const established = this._nextEstablished();
    if (this.state === "idle" || this.state === "closed") {
      this._stopping = false;
      if (this.options.listenOnline && typeof globalThis.addEventListener === "function") {
        globalThis.addEventListener("online", this._onOnline);
      }
      this._open("connect");
    } else if (this.state === "open") {
      return Promise.resolve(this.established);
    }
    return established;
  }

  /** Close for good (code 1000). */
  close(code = CloseCode.NORMAL, reason = "client closing") {
    this._stopping = true;
    if (typeof globalThis.removeEventListener === "function") globalThis.removeEventListener("online", this._onOnline);
    clearTimeout(this._timers.retry);
    clearTimeout(this._timers.renew);
    this._drop(code, reason);
    if (this.state !== "closed") this._setState("closed", { code, reason });
    this._settleWaiters(new ConnectionRefused(code, { code: "closed", message: "The client was closed." }));
  }

  /** Skip the wait before the next attempt (a "Reconnect now" button); also retries after a refusal. */
  reconnectNow() {
    if (this.state !== "reconnecting" && this.state !== "closed") return;
    if (this.state === "closed" && this._stopping) return; // closed on purpose by the application
    clearTimeout(this._timers.retry);
    this._backoff.reset();
    this._tokenRefreshes = 0;
    this._open(this._tokenStale() ? "refresh" : "reconnect");
  }

  _nextEstablished() {
    return new Promise((resolve, reject) => this._waiters.push({ resolve, reject }));
  }

  _settleWaiters(result) {
    const waiters = this._waiters;
    this._waiters = [];
    for (const { resolve, reject } of waiters) {
      if (result instanceof Error) reject(result);
      else resolve(result);
    }
  }

  _tokenStale() {
    return Date.now() >= this._renewAt;
  }

  async _open(reason) {
    const attempt = ++this._attempt;
    this._setState("connecting", { reason });
    let token = null;
    if (this._getToken) {
      try {
        token = await this._getToken({ reason });
      } catch (error) {
        if (attempt !== this._attempt) return;
        this._retry({ code: null, reason: `no token: ${error?.message || error}`, error: null }, "reconnect");
        return;
      }
      if (attempt !== this._attempt) return;
      this._acceptToken(token);
    }
    let ws;
    try {
      // Browsers cannot set headers: the token travels as the second offered subprotocol and
      // the server selects `bearer`. No token at all: an anonymous connection.
      ws = token ? new this._WebSocket(this.url, ["bearer", token]) : new this._WebSocket(this.url);
    } catch (error) {
      this._retry({ code: null, reason: `cannot connect: ${error?.message || error}`, error: null }, "reconnect");
      return;
    }
    this._ws = ws;
    this._lastError = null;
    ws.onmessage = (event) => this._receive(ws, event.data);
    ws.onclose = (event) => this._closed(ws, event.code, event.reason);
    ws.onerror = () => {}; // always followed by a close event, which decides what to do
    this._arm(this.options.connectTimeoutMs, "no connection_established in time");
  }

  _acceptToken(token) {
    this._token = token;
    const delay = token ? renewalDelayMs(token, this.options.tokenRefreshLeadMs) : null;
    this._renewAt = delay === null ? Infinity : Date.now() + delay;
    clearTimeout(this._timers.renew);
    if (delay !== null) this._timers.renew = setTimeout(() => this._renewDue(), delay);
  }

  // Renewal time: hand a new token to the open connection. A connection not open yet renews it
  // once established (or its next attempt asks for a new token, since this one is stale).
  _renewDue() {
    if (this.state === "open") this._renewInBand();
  }

  // Detach the socket and close it without reacting to its close event.
  _drop(code, reason) {
    this._attempt += 1;
    const ws = this._ws;
    this._ws = null;
    this._lostConnection();
    if (!ws) return;
    ws.onmessage = ws.onclose = null;
    ws.onerror = () => {}; // `ws` reports aborting a handshake as an error: nothing to do with it
    if (typeof ws.terminate === "function") ws.terminate(); // Node's `ws`: no waiting for a dead peer
    else if (ws.readyState <= OPEN) ws.close(code, reason);
  }

  _lostConnection() {
    clearTimeout(this._timers.watchdog);
    clearTimeout(this._timers.resume);
    this._resumeId = null;
    this.streams.cancel();
    this._failPending("not_connected", "The connection closed before the reply.");
  }

  _closed(ws, code, reason) {
    if (ws !== this._ws) return;
    this._ws = null;
    this._lostConnection();
    const error = this._lastError;
    if (this._stopping) return;
    const action = closeAction(code, error?.code);
    this._retry({ code, reason, error }, action);
  }

  // Decide and schedule what follows a close (or a failed attempt).
  _retry(close, action) {
    if (action === "refresh") {
      this._tokenRefreshes += 1;
      if (this._tokenRefreshes > this.options.maxTokenRefreshes || !this._getToken) action = "stop";
    }
    if (action === "stop") {
      this.lastClose = close;
      this._emit("close", { ...close, action, delayMs: null });
      this._stopping = false; // stopped by the server: reconnectNow() may try again
      this._setState("closed", close);
      this._settleWaiters(new ConnectionRefused(close.code, close.error));
      return;
    }
    let delayMs;
    if (action === "refresh") delayMs = this._tokenRefreshes === 1 ? 0 : this._backoff.next();
    else if (action === "reconnect_later") delayMs = this._backoff.long(this.options.rateLimitedDelayMs);
    else delayMs = this._backoff.next();
    this.lastClose = close;
    this._emit("close", { ...close, action, delayMs });
    this._setState("reconnecting", { ...close, delayMs, retryAt: Date.now() + delayMs });
    clearTimeout(this._timers.retry);
    const next = action === "refresh" || this._tokenStale() ? "refresh" : "reconnect";
    this._timers.retry = setTimeout(() => this._open(next), delayMs);
  }

  // Nothing heard for too long: the path to the server is dead even if the socket has not noticed.
  _arm(ms, why) {
    clearTimeout(this._timers.watchdog);
    const ws = this._ws;
    this._timers.watchdog = setTimeout(() => {
      if (ws !== this._ws) return;
      this._drop(CloseCode.NORMAL, "silent connection");
      this._retry({ code: CloseCode.ABNORMAL, reason: why, error: null }, "reconnect");
    }, ms);
  }

  _armHeartbeat() {
    const interval = Number(this.established?.heartbeat_interval) || 30;
    const ms = interval * 1000 + this.options.heartbeatGraceMs;
    this._arm(ms, `no frame for ${ms / 1000} s`);
  }

  // The browser says the network is back: a waiting client tries at once; an open one checks
  // that its socket survived (a phone that switched networks keeps a dead one).
  _online() {
    if (this.state === "reconnecting") {
      this.reconnectNow();
    } else if (this.state === "open") {
      const ws = this._ws;
      this.request({ type: "ping" }, { timeoutMs: this.options.onlineProbeTimeoutMs }).catch(() => {
        if (ws !== this._ws || this.state !== "open") return;
        this._drop(CloseCode.NORMAL, "no answer after the network came back");
        this._retry({ code: CloseCode.ABNORMAL, reason: "no answer after the network came back", error: null }, "reconnect");
      });
    }
  }

  // --- token renewal in band ------------------------------------------------------------------

  async _renewInBand(retryMs = 2_000) {
    if (this._renewing) return;
    this._renewing = true;
    try {
      await this._renewOnce(retryMs);
    } finally {
      this._renewing = false;
    }
  }

  async _renewOnce(retryMs) {
    let token;
    try {
      token = await this._getToken({ reason: "refresh" });
    } catch {
      if (this.state === "closed") return;
      // The token source is unreachable (no network): try again, and reconnects will ask too.
      this._timers.renew = setTimeout(() => this._renewInBand(Math.min(retryMs * 2, 30_000)), retryMs);
      return;
    }
    if (this.state === "closed") return;
    this._acceptToken(token);
    if (this.state !== "open") return; // the next connection uses it
    const ws = this._ws;
    try {
      await this.request({ type: "token_refresh", token });
    } catch (error) {
      if (ws !== this._ws || this.state !== "open") return;
      if (error.code === "not_connected") return;
      // Refused (or no answer): the connection would be closed at expiry; reconnect with it now.
      this._drop(CloseCode.NORMAL, "token hand-over refused");
      this._retry({ code: null, reason: `token_refresh: ${error.message}`, error: error.frame }, "reconnect");
    }
  }

  // --- frames ---------------------------------------------------------------------------------

  _receive(ws, data) {
    if (ws !== this._ws) return;
    let frame;
    try {
      frame = JSON.parse(typeof data === "string" ? data : String(data));
    } catch {
      return; // the server only sends JSON objects
    }
    if (!frame || typeof frame !== "object" || typeof frame.type !== "string") return;
    if (frame.type === "connection_established") {
      this._established(frame);
      return;
    }
    if (this.established) this._armHeartbeat();
    if (frame.type === "ping") this.send({ type: "pong" });
    if (frame.type === "error" && CONNECTION_ERRORS.has(frame.code) && frame.id === undefined) this._lastError = frame;

    if (frame.id !== undefined && frame.id === this._resumeId) {
      this._resumed(frame);
      return;
    }
    const waiter = frame.id !== undefined ? this._pending.get(frame.id) : undefined;
    if (waiter) {
      this._pending.delete(frame.id);
      clearTimeout(waiter.timer);
      if (frame.type === "error") {
        waiter.reject(new ServerError(frame));
        return; // the caller handles its own errors
      }
      waiter.resolve(frame);
    }
    this._run(this.streams.receive(frame));
  }

  _run(steps) {
    for (const step of steps) {
      if (step.resync) this._emit("resync", step.resync);
      else this._deliver(step.frame);
    }
  }

  _established(frame) {
    this.established = frame;
    this.connects += 1;
    this._backoff.reset();
    this._tokenRefreshes = 0;
    this._lastError = null;
    this.supportsResume = protocolAtLeast(frame.protocol, "1.1");
    this._armHeartbeat();
    const reconnected = this.connects > 1;
    let resuming = false;
    if (this.options.resume && this.supportsResume) {
      this.streams.adopt(frame.streams);
      // Resume is the first frame on the new connection, before anything the app sends.
      if (this.streams.size && (reconnected || this.options.streams)) {
        resuming = this._sendResume();
      }
    }
    this._setState("open", { reconnected, resuming });
    this._deliver(frame);
    this._settleWaiters(frame);
    if (this._getToken && this._tokenStale()) this._renewInBand();
  }

  _sendResume() {
    const id = this._nextId();
    const streams = this.streams.begin();
    if (!this.send({ type: "resume", streams, id })) {
      this.streams.cancel();
      return false;
    }
    this._resumeId = id;
    const ws = this._ws;
    this._timers.resume = setTimeout(() => {
      if (ws !== this._ws || this._resumeId !== id) return;
      this._resumeId = null;
      this._run(this.streams.fail("resume_failed"));
    }, this.options.resumeTimeoutMs);
    return true;
  }

  _resumed(frame) {
    clearTimeout(this._timers.resume);
    this._resumeId = null;
    if (frame.type === "error") {
      this._run(this.streams.fail("resume_failed"));
      return;
    }
    this._run(this.streams.finish(frame));
    this._deliver(frame);
  }

  _nextId() {
    this._ids += 1;
    return `c${this._ids}`;
  }

  /** Send a frame now; false when not connected (nothing is queued: a stale move helps nobody). */
  send(frame) {
    const ws = this._ws;
    if (!ws || ws.readyState !== OPEN || !this.established) return false;
    ws.send(JSON.stringify(frame));
    return true;
  }

  /**
   * Send `frame` with an `id` and resolve with the reply that repeats it; reject with a
   * ServerError for its `error` reply, or `not_connected` / `timeout`.
   */
  request(frame, { timeoutMs = this.options.requestTimeoutMs, timeout } = {}) {
    const ms = timeout ?? timeoutMs;
    const id = frame.id ?? this._nextId();
    return new Promise((resolve, reject) => {
      if (this._pending.has(id)) {
        reject(new ServerError({ code: "duplicate_id", message: `a request with id ${id} is waiting already` }));
        return;
      }
      if (!this.send({ ...frame, id })) {
        reject(new ServerError({ code: "not_connected", message: `${this.url} is not connected right now.` }));
        return;
      }
      const timer = setTimeout(() => {
        this._pending.delete(id);
        reject(new ServerError({ code: "timeout", message: "The server did not answer in time." }));
      }, ms);
      this._pending.set(id, { resolve, reject, timer });
    });
  }

  _failPending(code, message) {
    const pending = [...this._pending.values()];
    this._pending.clear();
    for (const { reject, timer } of pending) {
      clearTimeout(timer);
      reject(new ServerError({ code, message }));
    }
  }

  /** The user of the current token (from its claims), or null. */
  get tokenClaims() {
    return this._token ? jwtClaims(this._token) : null;
  }
}
