// A copy of clients/js/src (scripts/sync-play.mjs): edit the original, then sync.
// What a client does after each close code (docs/clients.md, "Close codes"), and the backoff
// between attempts. Pure functions: the client and the tests share them.

export const CloseCode = Object.freeze({
  NORMAL: 1000,
  GOING_AWAY: 1001, // server shutdown or deploy
  ABNORMAL: 1006, // no close frame: the network dropped, or the handshake was refused
  TOO_BIG: 1009,
  UNAUTHORIZED: 4401, // token missing, invalid or expired (the `error` frame before it says which)
  FORBIDDEN: 4403, // banned or kicked
  HEARTBEAT_TIMEOUT: 4408,
  SLOW_CONSUMER: 4413,
  RATE_LIMIT_ABUSE: 4429, // kept sending past the rate limit, or over a connection cap
  UNAVAILABLE: 4503, // a backing service failed while connecting; the token is fine
});

/**
 * What to do after the server closed with `code`, given the `code` of the last connection-level
 * `error` frame before it (or null):
 * - "reconnect": back off, then connect again;
 * - "reconnect_later": the server wants us gone for a while (4429): a long backoff first;
 * - "refresh": the token expired: get a new one, then connect again;
 * - "stop": a person has to act (banned, kicked, credentials refused); no automatic retry.
 */
export function closeAction(code, errorCode = null) {
  switch (code) {
    case CloseCode.UNAUTHORIZED:
      // No error frame at all is almost always a token that expired in the handshake's
      // instant: one refresh costs little, and the caller caps repeated refreshes.
      return errorCode === "token_expired" || errorCode == null ? "refresh" : "stop";
    case CloseCode.FORBIDDEN:
      return "stop";
    case CloseCode.RATE_LIMIT_ABUSE:
      return "reconnect_later";
    default:
      // 1001, 1006, 4408, 4413, 4503, a server-sent 1000 and anything unknown: the connection
      // was fine to have, so come back.
      return "reconnect";
  }
}

/** Exponential backoff with full jitter: attempt n waits a random time in [0, min(max, initial·2ⁿ)). */
export class Backoff {
  constructor({ initialMs = 1_000, maxMs = 30_000, random = Math.random } = {}) {
    this.initialMs = initialMs;
    this.maxMs = maxMs;
    this.random = random;
    this.attempt = 0;
  }

  next() {
    const ceiling = Math.min(this.maxMs, this.initialMs * 2 ** this.attempt);
    this.attempt += 1;
    return Math.round(this.random() * ceiling);
  }

  /** A long wait (4429): at least `minMs`, spread over [minMs, 2·minMs) so a crowd does not return at once. */
  long(minMs) {
    this.attempt += 1;
    return Math.round(minMs + this.random() * minMs);
  }

  reset() {
    this.attempt = 0;
  }
}
