// The connection lifecycle against a fake server: what the client does after every close code,
// dead connections, the browser's `online` event, token renewal, and request/reply.

import assert from "node:assert/strict";
import { afterEach, beforeEach, test } from "node:test";
import WebSocket from "ws";

import { ConnectionRefused, RealtimeClient, ServerError } from "../src/index.js";
import { FakeServer, eventually, fakeJwt, sleep } from "./support/fake-server.js";

let server;
let client;

beforeEach(async () => {
  server = await new FakeServer().start();
});

afterEach(async () => {
  client?.close();
  client = null;
  await server.stop();
});

function make(options = {}) {
  const reasons = [];
  client = new RealtimeClient(server.url, {
    WebSocket,
    getToken: ({ reason }) => {
      reasons.push(reason);
      return options.tokenFor?.(reason) ?? `token-${reasons.length}`;
    },
    backoffInitialMs: 20,
    backoffMaxMs: 40,
    rateLimitedDelayMs: 300,
    ...options,
  });
  const closes = [];
  const states = [];
  client.on("close", (event) => closes.push(event));
  client.on("state", (event) => states.push(event.state));
  return { reasons, closes, states };
}

test("the token travels in the bearer subprotocol and the server selects `bearer`", async () => {
  make();
  const established = await client.connect();
  assert.equal(established.type, "connection_established");
  assert.equal(server.tokens[0], "token-1");
  assert.equal(client.state, "open");
});

test("anonymous: no subprotocol at all", async () => {
  client = new RealtimeClient(server.url, { WebSocket });
  await client.connect();
  assert.deepEqual(server.tokens, [null]);
});

for (const code of [1001, 1011, 4408, 4413, 4503]) {
  test(`close ${code}: reconnect after a short backoff`, async () => {
    const { closes, reasons } = make();
    await client.connect();
    const before = server.connections.length;
    server.last().close(code);
    await server.nextConnection(before);
    await eventually(() => client.state === "open");
    assert.equal(closes[0].code, code);
    assert.equal(closes[0].action, "reconnect");
    assert.ok(closes[0].delayMs <= 20, closes[0].delayMs);
    assert.deepEqual(reasons, ["connect", "reconnect"]);
    assert.equal(client.connects, 2);
  });
}

test("a dropped TCP connection (1006): reconnect", async () => {
  const { closes } = make();
  await client.connect();
  const before = server.connections.length;
  server.last().ws.terminate();
  await server.nextConnection(before);
  await eventually(() => client.state === "open");
  assert.equal(closes[0].code, 1006);
});

test("4429: reconnect only after the long backoff", async () => {
  const { closes } = make();
  await client.connect();
  const before = server.connections.length;
  const closedAt = Date.now();
  server.last().close(4429, { code: "rate_limited", message: "Too many frames; closing." });
  await server.nextConnection(before);
  assert.ok(Date.now() - closedAt >= 290, `${Date.now() - closedAt} ms`);
  assert.equal(closes[0].action, "reconnect_later");
  assert.ok(closes[0].delayMs >= 300 && closes[0].delayMs < 600, closes[0].delayMs);
});

test("4401 token_expired: a new token, then an immediate reconnect", async () => {
  const { closes, reasons } = make();
  await client.connect();
  const before = server.connections.length;
  server.last().close(4401, { code: "token_expired", message: "Token expired." });
  await server.nextConnection(before);
  assert.equal(closes[0].action, "refresh");
  assert.equal(closes[0].delayMs, 0);
  assert.equal(closes[0].error.code, "token_expired");
  assert.deepEqual(reasons, ["connect", "refresh"]);
  assert.equal(server.tokens.at(-1), "token-2");
});

test("4401 token_expired again and again: stop after a few tries", async () => {
  const { closes } = make({ maxTokenRefreshes: 2 });
  for (let i = 0; i < 5; i++) server.refusals.push({ code: 4401, error: { code: "token_expired", message: "Token expired." } });
  await assert.rejects(client.connect(), (error) => error instanceof ConnectionRefused && error.code === 4401);
  assert.equal(client.state, "closed");
  assert.deepEqual(closes.map((c) => c.action), ["refresh", "refresh", "stop"]);
});

for (const [code, error] of [
  [4401, "invalid_token"],
  [4401, "authentication_required"],
  [4403, "banned"],
  [4403, "kicked"],
]) {
  test(`close ${code} after ${error}: stop and report, no retry`, async () => {
    const { closes } = make();
    server.refusals.push({ code, error: { code: error, message: `refused: ${error}` } });
    await assert.rejects(client.connect(), (failure) => {
      assert.ok(failure instanceof ConnectionRefused);
      assert.equal(failure.code, code);
      assert.equal(failure.error.code, error);
      return true;
    });
    await sleep(100);
    assert.equal(server.connections.length, 1);
    assert.equal(client.state, "closed");
    assert.equal(closes[0].action, "stop");
    assert.equal(client.lastClose.error.code, error);
  });
}

test("after a stop, reconnectNow() gives it one more try (a person decided)", async () => {
  make();
  server.refusals.push({ code: 4403, error: { code: "kicked", message: "Kicked." } });
  await assert.rejects(client.connect());
  const established = client.connect();
  await established;
  assert.equal(client.state, "open");
});

test("a connection that goes silent is dead after heartbeat_interval + grace", async () => {
  server.heartbeatInterval = 0.2;
  const { closes } = make({ heartbeatGraceMs: 100 });
  await client.connect();
  const before = server.connections.length;
  const start = Date.now();
  // The server stops sending (it never pings here), without closing anything.
  await server.nextConnection(before, 2_000);
  const waited = Date.now() - start;
  assert.ok(waited >= 280 && waited < 1_000, `${waited} ms`);
  assert.match(closes[0].reason, /no frame for 0.3 s/);
});

test("server pings are answered with pongs, and keep the connection alive", async () => {
  server.heartbeatInterval = 0.2;
  make({ heartbeatGraceMs: 100 });
  await client.connect();
  const conn = server.last();
  const pinger = setInterval(() => conn.send({ type: "ping", timestamp: new Date().toISOString() }), 100);
  await sleep(700);
  clearInterval(pinger);
  assert.equal(server.connections.length, 1, "no reconnect while pings flow");
  const pongs = server.framesOf(conn).filter((f) => f.type === "pong");
  assert.ok(pongs.length >= 5, `${pongs.length} pongs`);
  assert.deepEqual(pongs[0], { type: "pong" });
});

test("no connection_established in time: try again", async () => {
  const original = server._connected.bind(server);
  let first = true;
  server._connected = (ws, request) => {
    if (!first) return original(ws, request);
    first = false; // accepted, and then nothing is said
    server.connections.push({ ws, established: false, send() {} });
  };
  const { closes } = make({ connectTimeoutMs: 200 });
  await client.connect();
  assert.equal(server.connections.length, 2);
  assert.match(closes[0].reason, /no connection_established/);
});

test("the browser's `online` event: a waiting client reconnects at once", async () => {
  const target = new EventTarget();
  globalThis.addEventListener = target.addEventListener.bind(target);
  globalThis.removeEventListener = target.removeEventListener.bind(target);
  try {
    make({ backoffInitialMs: 60_000, backoffMaxMs: 60_000, random: () => 1 });
    await client.connect();
    const before = server.connections.length;
    server.last().close(1001);
    await eventually(() => client.state === "reconnecting");
    await sleep(50);
    assert.equal(server.connections.length, before, "still waiting out the backoff");
    target.dispatchEvent(new Event("online"));
    await server.nextConnection(before, 1_000);
  } finally {
    delete globalThis.addEventListener;
    delete globalThis.removeEventListener;
  }
});

test("the browser's `online` event: an open connection that does not answer a ping is replaced", async () => {
  const target = new EventTarget();
  globalThis.addEventListener = target.addEventListener.bind(target);
  globalThis.removeEventListener = target.removeEventListener.bind(target);
  try {
    make({ onlineProbeTimeoutMs: 100 });
    await client.connect();
    const before = server.connections.length;
    server.last().ws._socket.pause(); // the old network: nothing gets through any more
    target.dispatchEvent(new Event("online"));
    await server.nextConnection(before, 2_000);
  } finally {
    delete globalThis.addEventListener;
    delete globalThis.removeEventListener;
  }
});

test("token renewal in band before expiry: token_refresh, no reconnect", async () => {
  const tokens = [fakeJwt(2), fakeJwt(600)];
  const { reasons } = make({ tokenFor: () => tokens.shift() });
  await client.connect();
  const conn = server.last();
  const refreshed = await client.once("token_refreshed", { timeoutMs: 3_000 });
  assert.ok(refreshed.expires_at);
  const sent = server.framesOf(conn).filter((f) => f.type === "token_refresh");
  assert.equal(sent.length, 1);
  assert.equal(conn.token, sent[0].token);
  assert.deepEqual(reasons, ["connect", "refresh"]);
  assert.equal(server.connections.length, 1);
});

test("request() resolves with the reply carrying its id; error replies reject", async () => {
  make();
  server.onFrame = (conn, frame) => {
    if (frame.type === "history_request") return { type: "history", channel: "global", messages: [], has_more: false, id: frame.id };
    if (frame.type === "chat_message") return { type: "error", code: "invalid_message", message: "The frame does not match its schema.", id: frame.id };
    return undefined;
  };
  await client.connect();
  const reply = await client.request({ type: "history_request", channel: "global" });
  assert.equal(reply.type, "history");
  const seen = [];
  client.on("error", (frame) => seen.push(frame));
  await assert.rejects(client.request({ type: "chat_message", channel: "global", content: "" }), (error) => {
    assert.ok(error instanceof ServerError);
    assert.equal(error.code, "invalid_message");
    return true;
  });
  assert.deepEqual(seen, [], "an error reply goes to its caller, not to the error handlers");
  await assert.rejects(client.request({ type: "nothing_answers_this" }, { timeoutMs: 50 }), { code: "timeout" });
});

test("request() while disconnected rejects at once; a pending request fails when the connection drops", async () => {
  make();
  await assert.rejects(client.request({ type: "ping" }), { code: "not_connected" });
  await client.connect();
  const pending = client.request({ type: "history_request", channel: "global" });
  server.last().ws.terminate();
  await assert.rejects(pending, { code: "not_connected" });
});

test("typed events: on() returns an unsubscribe function; handler errors do not break delivery", async () => {
  const failures = [];
  make({ onHandlerError: (error) => failures.push(error) });
  await client.connect();
  const got = [];
  client.on("achievement", () => {
    throw new Error("boom");
  });
  const off = client.on("achievement", (frame) => got.push(frame.achievement));
  const all = [];
  client.on("*", (frame) => all.push(frame.type));
  server.last().send({ type: "achievement", achievement: "first_kill" });
  await eventually(() => got.length === 1);
  off();
  server.last().send({ type: "achievement", achievement: "second" });
  await eventually(() => all.filter((t) => t === "achievement").length === 2);
  assert.deepEqual(got, ["first_kill"]);
  assert.equal(failures.length, 2);
});

test("close() stops for good: no reconnect, state closed", async () => {
  const { states } = make();
  await client.connect();
  client.close();
  await sleep(100);
  assert.equal(server.connections.length, 1);
  assert.equal(states.at(-1), "closed");
  assert.equal(client.send({ type: "ping" }), false);
});
