// A small stand-in for an rpgrealtime endpoint, for the tests the real server cannot stage on
// demand: every close code, and stream recovery as docs/protocol.md describes it (streams with
// offsets and epochs, `resume`, `resumed`, live frames arriving during a replay).

import { WebSocketServer } from "ws";

export class FakeServer {
  constructor({ heartbeatInterval = 30, protocol = "1.1", user = { id: "u-1", username: "alice" } } = {}) {
    this.heartbeatInterval = heartbeatInterval;
    this.protocol = protocol;
    this.user = user;
    this.streams = new Map(); // name → {epoch, frames: [frame], dropped: number of oldest frames gone}
    this.connections = [];
    this.received = []; // [{conn, frame}]
    this.tokens = []; // the token offered with each connection (null: anonymous)
    this.refusals = []; // queued {code, error} for the next connections
    this.onResume = null; // (conn, frame) → handled? Lets a test interleave live frames
    this.onFrame = null; // (conn, frame) → reply frame or undefined
    this.answerResume = true;
  }

  async start() {
    this.wss = new WebSocketServer({
      host: "127.0.0.1",
      port: 0,
      handleProtocols: (protocols) => (protocols.has("bearer") ? "bearer" : false),
    });
    await new Promise((resolve) => this.wss.once("listening", resolve));
    this.url = `ws://127.0.0.1:${this.wss.address().port}/ws/game`;
    this.wss.on("connection", (ws, request) => this._connected(ws, request));
    return this;
  }

  async stop() {
    for (const conn of this.connections) conn.ws.terminate();
    await new Promise((resolve) => this.wss.close(resolve));
  }

  /** A stream (created if new): `{epoch, frames}`. */
  stream(name, epoch = "e1") {
    if (!this.streams.has(name)) this.streams.set(name, { epoch, frames: [], dropped: 0 });
    return this.streams.get(name);
  }

  position(name) {
    const stream = this.stream(name);
    return { offset: stream.dropped + stream.frames.length, epoch: stream.epoch };
  }

  /** Append a frame to a stream; send it live to the connections that are `open` unless told not to. */
  publish(name, body, { send = true } = {}) {
    const stream = this.stream(name);
    const frame = { ...body, stream: name, offset: stream.dropped + stream.frames.length + 1, epoch: stream.epoch };
    stream.frames.push(frame);
    if (send) for (const conn of this.open()) conn.send(frame);
    return frame;
  }

  /** The history was lost (e.g. Redis restarted empty): a new epoch, offsets start over. */
  restartStream(name, epoch) {
    this.streams.set(name, { epoch, frames: [], dropped: 0 });
  }

  /** Forget the oldest frames, as retention would. */
  forget(name, count) {
    const stream = this.stream(name);
    stream.frames.splice(0, count);
    stream.dropped += count;
  }

  open() {
    return this.connections.filter((conn) => conn.ws.readyState === 1 && conn.established);
  }

  last() {
    return this.connections.at(-1);
  }

  async nextConnection(after = this.connections.length, timeoutMs = 5_000) {
    const deadline = Date.now() + timeoutMs;
    while (this.connections.length <= after || !this.connections[after].established) {
      if (Date.now() > deadline) throw new Error("no new connection");
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    return this.connections[after];
  }

  framesOf(conn) {
    return this.received.filter((r) => r.conn === conn).map((r) => r.frame);
  }

  _connected(ws, request) {
    const offered = (request.headers["sec-websocket-protocol"] || "").split(",").map((s) => s.trim());
    const token = offered[0] === "bearer" ? offered[1] || null : null;
    this.tokens.push(token);
    const conn = {
      ws,
      token,
      established: false,
      send: (frame) => ws.send(JSON.stringify(frame)),
      close: (code, error) => {
        if (error) conn.send({ type: "error", ...error });
        ws.close(code);
      },
    };
    this.connections.push(conn);
    ws.on("message", (data) => this._message(conn, JSON.parse(String(data))));
    const refusal = this.refusals.shift();
    if (refusal) {
      conn.close(refusal.code, refusal.error);
      return;
    }
    const established = {
      type: "connection_established",
      connection_id: `c${this.connections.length}`,
      endpoint: "game",
      user: this.user,
      heartbeat_interval: this.heartbeatInterval,
      server_time: new Date().toISOString(),
    };
    if (this.protocol) {
      established.protocol = this.protocol;
      established.streams = Object.fromEntries([...this.streams.keys()].map((name) => [name, this.position(name)]));
    }
    conn.send(established);
    conn.established = true;
  }

  _message(conn, frame) {
    this.received.push({ conn, frame });
    if (frame.type === "resume" && this.protocol) {
      if (this.onResume?.(conn, frame)) return;
      if (this.answerResume) this.replay(conn, frame);
      return;
    }
    if (frame.type === "ping") {
      conn.send({ type: "pong", timestamp: new Date().toISOString(), ...(frame.id !== undefined && { id: frame.id }) });
      return;
    }
    if (frame.type === "token_refresh") {
      conn.token = frame.token;
      conn.send({ type: "token_refreshed", expires_at: new Date(Date.now() + 60_000).toISOString(), id: frame.id });
      return;
    }
    const reply = this.onFrame?.(conn, frame);
    if (reply) conn.send(reply);
  }

  /** What a §12 server does with `resume`: per stream, the frames after the offset, then `resumed`. */
  replay(conn, frame, { before = () => {} } = {}) {
    const answer = {};
    for (const [name, asked] of Object.entries(frame.streams || {})) {
      const stream = this.streams.get(name);
      if (!stream) {
        answer[name] = { recovered: false, reason: "unknown_stream", offset: 0, epoch: "" };
        continue;
      }
      const now = this.position(name);
      if (stream.epoch !== asked.epoch) {
        answer[name] = { recovered: false, reason: "epoch_changed", ...now };
      } else if (asked.offset < stream.dropped) {
        answer[name] = { recovered: false, reason: "too_old", ...now };
      } else {
        const missed = stream.frames.filter((f) => f.offset > asked.offset);
        before(name, missed);
        for (const replayed of missed) conn.send(replayed);
        answer[name] = { recovered: true, missed: missed.length, ...now };
      }
    }
    conn.send({ type: "resumed", id: frame.id, streams: answer });
  }
}

export function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Poll `check` until it returns something truthy. */
export async function eventually(check, { timeoutMs = 5_000, intervalMs = 10 } = {}) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`still ${JSON.stringify(value)} after ${timeoutMs} ms`);
    await sleep(intervalMs);
  }
}

/** A JWT-shaped token (unsigned) with the given lifetime: enough for the client's renewal timer. */
export function fakeJwt(lifetimeSeconds, extra = {}) {
  const now = Math.floor(Date.now() / 1000);
  const encode = (value) => Buffer.from(JSON.stringify(value)).toString("base64url");
  return `${encode({ alg: "none", typ: "JWT" })}.${encode({ iat: now, exp: now + lifetimeSeconds, ...extra })}.sig`;
}
