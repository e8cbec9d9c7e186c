// @rpgrealtime/client: a client for rpgrealtime's WebSocket endpoints (docs/clients.md).

export { ConnectionRefused, RealtimeClient, ServerError } from "./client.js";
export { jwtClaims, renewalDelayMs } from "./jwt.js";
export { Backoff, CloseCode, closeAction } from "./rules.js";
export { MAX_RESUMED_STREAMS, StreamTracker } from "./streams.js";

/** `wss://host` (or `ws://`) for a page served from `location`: the endpoints live beside it. */
export function websocketBase(location = globalThis.location) {
  return `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}`;
}
