// Types of @rpgrealtime/client. The protocol's frames are generated from its schema
// (protocol.d.ts, by scripts/gen-types.mjs); this file types the client around them.

import type { ClientFrame, ConnectionEstablished, ErrorFrame, ServerFrame, ServerFrameMap, StreamPosition } from "./protocol.js";

export * from "./protocol.js";

export type ConnectionState = "idle" | "connecting" | "open" | "reconnecting" | "closed";

/** Why the client asks for a token: "refresh" and "expired" need a new one. */
export type TokenReason = "connect" | "reconnect" | "refresh";

export type CloseAction = "reconnect" | "reconnect_later" | "refresh" | "stop";

export interface CloseEvent {
  /** The close code (1006 for a dropped or dead connection), null when no connection was made. */
  code: number | null;
  reason: string;
  /** The `error` frame the server sent before closing, if any. */
  error: ErrorFrame | null;
  action: CloseAction;
  /** How long until the next attempt; null when the client stopped. */
  delayMs: number | null;
}

export interface StateEvent {
  state: ConnectionState;
  previous: ConnectionState;
  /** On "open": whether this is a reconnect, and whether streams are being resumed. */
  reconnected?: boolean;
  resuming?: boolean;
  /** On "reconnecting": when the next attempt starts. */
  delayMs?: number;
  retryAt?: number;
  code?: number | null;
  error?: ErrorFrame | null;
}

/** A stream that lost frames for good: re-read its state (history, combat state …). */
export interface ResyncEvent {
  stream: string;
  /** From the server: epoch_changed, too_old, forbidden, unknown_stream; from the client: gap, resume_failed. */
  reason: "epoch_changed" | "too_old" | "forbidden" | "unknown_stream" | "gap" | "resume_failed" | (string & {});
  offset: number | null;
  epoch: string | null;
}

export interface ClientEvents extends ServerFrameMap {
  "*": ServerFrame;
  state: StateEvent;
  close: CloseEvent;
  resync: ResyncEvent;
}

/** Anything with the browser WebSocket's constructor and event-handler properties (e.g. the `ws` package). */
export interface WebSocketLike {
  readonly readyState: number;
  readonly protocol: string;
  onmessage: ((event: { data: unknown }) => void) | null;
  onclose: ((event: { code: number; reason: string }) => void) | null;
  onerror: ((event: unknown) => void) | null;
  send(data: string): void;
  close(code?: number, reason?: string): void;
}
export type WebSocketClass = new (url: string, protocols?: string | string[]) => WebSocketLike;

export interface ClientOptions {
  /** A fixed access token (no renewal). */
  token?: string;
  /** Called for a token before every connection, and to renew it ("refresh": return a new one). */
  getToken?: (context: { reason: TokenReason }) => string | Promise<string>;
  /** The WebSocket class; defaults to the global one (browsers, Node 22+). */
  WebSocket?: WebSocketClass;
  /** Positions saved from an earlier session, to resume on the first connection. */
  streams?: Record<string, StreamPosition>;
  /** Send `resume` after every reconnect (protocol 1.1 servers); default true. */
  resume?: boolean;
  requestTimeoutMs?: number;
  /** How long to wait for `resumed` before re-syncing every stream (30 000). */
  resumeTimeoutMs?: number;
  connectTimeoutMs?: number;
  /** Dead after heartbeat_interval + this with no frame at all; default 5000. */
  heartbeatGraceMs?: number;
  backoffInitialMs?: number;
  backoffMaxMs?: number;
  /** The least wait after close 4429; default 15000. */
  rateLimitedDelayMs?: number;
  /** Renew the token this long before it expires (or at ¾ of a shorter lifetime); default 60000. */
  tokenRefreshLeadMs?: number;
  /** Stop after this many 4401 token_expired in a row; default 3. */
  maxTokenRefreshes?: number;
  /** React to the browser's `online` event; default true. */
  listenOnline?: boolean;
  onlineProbeTimeoutMs?: number;
  onHandlerError?: (error: unknown) => void;
  random?: () => number;
}

export interface RequestOptions {
  timeoutMs?: number;
  timeout?: number;
}

export declare class ServerError extends Error {
  readonly code: string;
  readonly details: unknown;
  readonly frame: ErrorFrame | { code: string; message: string };
}

export declare class ConnectionRefused extends Error {
  readonly code: number | null;
  readonly error: ErrorFrame | null;
}

/** The most streams one `resume` may name (docs/protocol.md §12). */
export declare const MAX_RESUMED_STREAMS: 16;

export declare class StreamTracker {
  constructor(initial?: Record<string, StreamPosition>);
  positions(): Record<string, StreamPosition>;
  readonly size: number;
  readonly resuming: boolean;
  /** Positions of streams not tracked yet (`connection_established.streams`). */
  adopt(streams: Record<string, StreamPosition> | null | undefined): void;
  /** Stop tracking a stream (a group left). Fights that ended and zones left are forgotten by themselves. */
  forget(stream: string): void;
}

export declare class RealtimeClient {
  constructor(url: string, options?: ClientOptions);
  readonly url: string;
  readonly state: ConnectionState;
  readonly established: ConnectionEstablished | null;
  readonly connects: number;
  readonly lastClose: Omit<CloseEvent, "action" | "delayMs"> | null;
  readonly supportsResume: boolean;
  readonly streams: StreamTracker;
  on<K extends keyof ClientEvents>(type: K, handler: (event: ClientEvents[K], client: RealtimeClient) => void): () => void;
  on(type: string, handler: (event: ServerFrame, client: RealtimeClient) => void): () => void;
  off(type: string, handler: (...args: never[]) => void): void;
  once<K extends keyof ClientEvents>(type: K, options?: { filter?: (event: ClientEvents[K]) => boolean; timeoutMs?: number }): Promise<ClientEvents[K]>;
  connect(): Promise<ConnectionEstablished>;
  close(code?: number, reason?: string): void;
  reconnectNow(): void;
  send(frame: ClientFrame): boolean;
  request(frame: ClientFrame, options?: RequestOptions): Promise<ServerFrame>;
}

export declare const CloseCode: {
  readonly NORMAL: 1000;
  readonly GOING_AWAY: 1001;
  readonly ABNORMAL: 1006;
  readonly TOO_BIG: 1009;
  readonly UNAUTHORIZED: 4401;
  readonly FORBIDDEN: 4403;
  readonly HEARTBEAT_TIMEOUT: 4408;
  readonly SLOW_CONSUMER: 4413;
  readonly RATE_LIMIT_ABUSE: 4429;
  readonly UNAVAILABLE: 4503;
};

export declare function closeAction(code: number, errorCode?: string | null): CloseAction;

export declare class Backoff {
  constructor(options?: { initialMs?: number; maxMs?: number; random?: () => number });
  next(): number;
  long(minMs: number): number;
  reset(): void;
}

export declare function jwtClaims(token: string): Record<string, unknown> | null;
export declare function renewalDelayMs(token: string, leadMs?: number): number | null;
export declare function websocketBase(location?: { protocol: string; host: string }): string;
