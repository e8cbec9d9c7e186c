// Reading a JWT's claims, only to know when to renew it: the server checks the signature.

function base64UrlDecode(text) {
  const padded = text.replace(/-/g, "+").replace(/_/g, "/").padEnd(Math.ceil(text.length / 4) * 4, "=");
  return atob(padded);
}

/** The claims of `token`, or null when it is not a JWT. */
export function jwtClaims(token) {
  try {
    const payload = String(token).split(".")[1];
    if (!payload) return null;
    const claims = JSON.parse(base64UrlDecode(payload));
    return claims && typeof claims === "object" ? claims : null;
  } catch {
    return null;
  }
}

/**
 * How long after receiving `token` to renew it, in ms, or null when it has no expiry. Timed from
 * the token's own lifetime (`exp - iat`) rather than from `exp`, so a wrong client clock does not
 * matter; renewed `leadMs` before expiry, or at three quarters of a short lifetime.
 */
export function renewalDelayMs(token, leadMs = 60_000) {
  const claims = jwtClaims(token);
  if (!claims || typeof claims.exp !== "number") return null;
  const issuedAt = typeof claims.iat === "number" ? claims.iat : Date.now() / 1000;
  const lifetimeMs = Math.max(0, (claims.exp - issuedAt) * 1000);
  const lead = Math.min(leadMs, lifetimeMs / 4);
  return Math.max(0, lifetimeMs - lead);
}
