// HTTP routes (docs/protocol.md, "HTTP routes") and the player's tokens.
//
// Tokens travel only in the Authorization header here and in the `bearer` subprotocol on
// WebSockets, never in a URL: URLs end up in logs, history and Referer headers.

const STORAGE_KEY = "rpgrealtime.session";
// A scheduled refresh that fails for want of a server (down, restarting, offline) is tried
// again: 1 s doubling to 15 s, with jitter, so many pages coming back do not all ask at once.
const RETRY_INITIAL_MS = 1_000;
const RETRY_MAX_MS = 15_000;

export class HttpError extends Error {
  constructor(status, body) {
    super(describeBody(status, body));
    this.status = status;
    this.body = body;
  }
}

// DRF answers {"detail": "..."} or {"field": ["problem", ...]}: one sentence for the player.
function describeBody(status, body) {
  if (body && typeof body === "object") {
    if (typeof body.detail === "string") return body.detail;
    const parts = [];
    for (const [field, problems] of Object.entries(body)) {
      const list = Array.isArray(problems) ? problems : [problems];
      parts.push(`${field}: ${list.join(" ")}`);
    }
    if (parts.length) return parts.join(" ");
  }
  return `The server answered ${status}.`;
}

export async function callJson(method, path, { body, token } = {}) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (token) headers.Authorization = `Bearer ${token}`;
  let response;
  try {
    response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: "omit", // JWT only: no session cookie, so no CSRF exposure
      cache: "no-store",
    });
  } catch (error) {
    throw new HttpError(0, { detail: "The server cannot be reached." });
  }
  // Non-JSON answers (an HTML 404 or a proxy's 502 page) are described by their status only.
  const isJson = (response.headers.get("Content-Type") || "").includes("json");
  const text = await response.text();
  let data = null;
  try {
    data = isJson && text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (!response.ok) throw new HttpError(response.status, data);
  return data;
}

// The claims of a JWT, read only to know when to refresh: the server checks the signature.
function claims(token) {
  const payload = token.split(".")[1] || "";
  const json = atob(payload.replace(/-/g, "+").replace(/_/g, "/").padEnd(Math.ceil(payload.length / 4) * 4, "="));
  return JSON.parse(json);
}

// The session: access and refresh tokens, kept in sessionStorage so a reload keeps the player
// in while another tab (another player) has its own. Emits "refreshed" after every new access
// token and "ended" (detail: the reason) when the session is over.
export class Auth extends EventTarget {
  constructor(storage = window.sessionStorage) {
    super();
    this.storage = storage;
    this.access = null;
    this.refreshToken = null;
    this.userId = null;
    this.refreshes = 0;
    this.refreshAt = 0; // when (our clock) the access token is due for renewal
    this._timer = null;
    this._refreshing = null;
    this._retryMs = RETRY_INITIAL_MS;
  }

  get loggedIn() {
    return Boolean(this.access);
  }

  // Past the time it should have been renewed (a refresh failed, or the computer slept): a
  // connection opened with it now would soon, or at once, be closed with 4401.
  get stale() {
    return Date.now() >= this.refreshAt;
  }

  async login(username, password) {
    const tokens = await callJson("POST", "/api/v1/auth/token/", { body: { username, password } });
    this._accept(tokens);
  }

  async register(username, password) {
    await callJson("POST", "/api/v1/auth/register/", { body: { username, password } });
    await this.login(username, password);
  }

  // After a reload: the stored access token may be close to expiry, and when it was issued is
  // unknown to this page, so take a fresh one at once.
  async restore() {
    const saved = JSON.parse(this.storage.getItem(STORAGE_KEY) || "null");
    if (!saved?.refresh) return false;
    this.refreshToken = saved.refresh;
    try {
      await this.refresh();
      return true;
    } catch {
      return false;
    }
  }

  // One refresh at a time, however many sockets ask for it after a 4401.
  refresh() {
    if (!this._refreshing) {
      this._refreshing = (async () => {
        try {
          const body = { refresh: this.refreshToken };
          const tokens = await callJson("POST", "/api/v1/auth/token/refresh/", { body });
          this.refreshes += 1;
          this._accept(tokens);
          this.dispatchEvent(new Event("refreshed"));
        } catch (error) {
          if (error.status === 401 || error.status === 400) this.end("Your session expired; please log in again.");
          throw error;
        } finally {
          this._refreshing = null;
        }
      })();
    }
    return this._refreshing;
  }

  end(reason = "") {
    const wasIn = this.loggedIn || this.refreshToken;
    clearTimeout(this._timer);
    this.refreshAt = 0;
    this.access = this.refreshToken = this.userId = null;
    this.storage.removeItem(STORAGE_KEY);
    if (wasIn) this.dispatchEvent(new CustomEvent("ended", { detail: reason }));
  }

  // An authenticated call; a 401 (expired access token) gets one refresh and one retry.
  async call(method, path, body) {
    try {
      return await callJson(method, path, { body, token: this.access });
    } catch (error) {
      if (error.status !== 401 || !this.refreshToken) throw error;
      await this.refresh();
      return callJson(method, path, { body, token: this.access });
    }
  }

  _accept(tokens) {
    this.access = tokens.access;
    if (tokens.refresh) this.refreshToken = tokens.refresh; // present when the server rotates them
    const { exp, iat, user_id: userId } = claims(this.access);
    this.userId = userId;
    this.storage.setItem(STORAGE_KEY, JSON.stringify({ refresh: this.refreshToken }));
    // Refresh ahead of expiry (a minute, or a quarter of a short lifetime), timed from now
    // rather than from `exp`, so a skewed client clock does not matter.
    const lifetime = Math.max(1, exp - iat);
    const lead = Math.min(60, lifetime / 4);
    const delayMs = Math.max(1, lifetime - lead) * 1000;
    this.refreshAt = Date.now() + delayMs;
    this._retryMs = RETRY_INITIAL_MS;
    this._refreshLater(delayMs);
  }

  _refreshLater(delayMs) {
    clearTimeout(this._timer);
    this._timer = setTimeout(() => this._refreshInBackground(), delayMs);
  }

  // The scheduled refresh. Success schedules the next one (_accept); a refused refresh token
  // ends the session (refresh); anything else (no server) is tried again after a while.
  async _refreshInBackground() {
    try {
      await this.refresh();
    } catch {
      if (!this.refreshToken) return;
      const delayMs = this._retryMs * (0.5 + Math.random()); // ±50 % jitter
      this._retryMs = Math.min(this._retryMs * 2, RETRY_MAX_MS);
      this._refreshLater(delayMs);
    }
  }
}

// Guilds and parties share their routes (docs/protocol.md §8) under these prefixes.
const GROUP_PATHS = { guild: "/api/v1/guilds", party: "/api/v1/parties" };

// The routes the page uses, bound to a session. `kind` is "guild" or "party".
export function routes(auth) {
  const path = (kind) => GROUP_PATHS[kind];
  return {
    me: () => auth.call("GET", "/api/v1/auth/me/"),
    roster: () => auth.call("GET", "/play/api/roster/"),
    // Invitation-only unless `open` (a party's name may be left out: the server names it).
    groupCreate: (kind, { name, open }) => auth.call("POST", `${path(kind)}/`, name ? { name, open } : { open }),
    groupJoin: (kind, id) => auth.call("POST", `${path(kind)}/${encodeURIComponent(id)}/join/`),
    groupLeave: (kind) => auth.call("POST", `${path(kind)}/leave/`),
    groupInvite: (kind, id, username) =>
      auth.call("POST", `${path(kind)}/${encodeURIComponent(id)}/invitations/`, { username }),
  };
}
