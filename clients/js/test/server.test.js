// The client against a real rpgrealtime server (started by tests/clients/test_js_client.py,
// with a 1 s heartbeat and a 3 s silence timeout). Skipped when run on its own.

import assert from "node:assert/strict";
import { after, afterEach, test } from "node:test";
import WebSocket from "ws";

import { ConnectionRefused, RealtimeClient, ServerError } from "../src/index.js";
import { eventually, sleep } from "./support/fake-server.js";
import { live, login, mint, publish, restart, skipUnlessLive as skip } from "./support/live.js";
import { Proxy } from "./support/proxy.js";
import { frameValidator, loadSchema } from "./support/schema.js";

const clients = [];
const proxies = [];
// Every frame the server sends in these tests is checked against the protocol schema.
const validate = frameValidator(loadSchema().doc);
const offSchema = [];

async function cleanUp() {
  for (const client of clients.splice(0)) client.close();
  for (const proxy of proxies.splice(0)) await proxy.stop();
}

afterEach(async () => {
  await cleanUp();
  assert.deepEqual(offSchema.splice(0), [], "frames that do not match the protocol schema");
});
// Hooks do not run for a test that skips itself at run time: clean up after those too.
after(cleanUp);

function open(endpoint, options = {}, url = `${live.ws}/ws/${endpoint}`) {
  const client = new RealtimeClient(url, {
    WebSocket,
    backoffInitialMs: 100,
    backoffMaxMs: 1_000,
    heartbeatGraceMs: 1_000,
    ...options,
  });
  client.on("*", (frame) => {
    const problem = validate(frame);
    if (problem) offSchema.push(`${problem} in ${JSON.stringify(frame)}`);
  });
  clients.push(client);
  return client;
}

function loginAs(name) {
  const reasons = [];
  const getToken = async ({ reason }) => {
    reasons.push(reason);
    return (await login(live.users[name])).access;
  };
  return { getToken, reasons };
}

async function throughProxy() {
  const port = Number(new URL(live.ws).port);
  const proxy = await new Proxy(port).start();
  proxies.push(proxy);
  return proxy;
}

test("connects with a bearer token: the server selects `bearer`", { skip }, async () => {
  const { getToken, reasons } = loginAs("alice");
  const client = open("chat", { getToken });
  const established = await client.connect();
  assert.equal(established.endpoint, "chat");
  assert.equal(established.user.username, live.users.alice.username);
  assert.equal(established.heartbeat_interval, live.heartbeat);
  assert.equal(client._ws.protocol, "bearer");
  assert.deepEqual(reasons, ["connect"]);
});

test("refusals are surfaced with their close code and error, and not retried", { skip }, async () => {
  const cases = [
    ["chat", null, 4401, "authentication_required"],
    ["game", "not-a-jwt", 4401, "invalid_token"],
    ["game", (await login(live.users.alice)).refresh, 4401, "invalid_token"],
    ["world", live.users.banned.access, 4403, "banned"],
  ];
  for (const [endpoint, token, code, error] of cases) {
    const client = open(endpoint, token ? { token } : {});
    await assert.rejects(client.connect(), (failure) => {
      assert.ok(failure instanceof ConnectionRefused, String(failure));
      assert.equal(failure.code, code, endpoint);
      assert.equal(failure.error.code, error, endpoint);
      return true;
    });
    assert.equal(client.state, "closed");
    assert.equal(client.lastClose.code, code);
  }
});

test("an expired token: a new one is fetched, then the connection opens", { skip }, async () => {
  const expired = await mint(live.users.alice, -60);
  const reasons = [];
  const client = open("game", {
    getToken: async ({ reason }) => {
      reasons.push(reason);
      return reasons.length === 1 ? expired : (await login(live.users.alice)).access;
    },
  });
  const closes = [];
  client.on("close", (event) => closes.push(event));
  const established = await client.connect();
  assert.equal(established.user.id, live.users.alice.id);
  assert.deepEqual(reasons, ["connect", "refresh"]);
  assert.equal(closes[0].code, 4401);
  assert.equal(closes[0].error.code, "token_expired");
  assert.equal(closes[0].action, "refresh");
});

test("request/reply by id; an error reply rejects and the connection stays open", { skip }, async () => {
  const client = open("chat", loginAs("alice"));
  await client.connect();
  const history = await client.request({ type: "history_request", channel: "global", limit: 5 });
  assert.equal(history.type, "history");
  assert.ok(Array.isArray(history.messages));
  const sent = await client.request({ type: "chat_message", channel: "global", content: "hello from node" });
  assert.equal(sent.type, "ack");
  assert.match(sent.message_id, /^[0-9a-f-]{36}$/);
  const pong = await client.request({ type: "ping" }, { timeout: 2_000 });
  assert.equal(pong.type, "pong");
  await assert.rejects(client.request({ type: "chat_message", channel: "global", content: "   " }), (error) => {
    assert.ok(error instanceof ServerError);
    assert.equal(error.code, "invalid_message");
    return true;
  });
  await assert.rejects(client.request({ type: "no_such_thing" }), { code: "unknown_type" });
  assert.equal(client.state, "open");
  assert.equal(client.connects, 1);
});

test("typed events from another player's connection", { skip }, async () => {
  const alice = open("chat", loginAs("alice"));
  const bob = open("chat", loginAs("bob"));
  await Promise.all([alice.connect(), bob.connect()]);
  const heard = bob.once("chat_message", { filter: (f) => f.content === "over here", timeoutMs: 5_000 });
  alice.send({ type: "chat_message", channel: "global", content: "over here" });
  const frame = await heard;
  assert.equal(frame.user, live.users.alice.username);
});

test("server pings are answered: the connection outlives the silence timeout", { skip }, async () => {
  const client = open("game", loginAs("alice"));
  await client.connect();
  let pings = 0;
  client.on("ping", () => pings++);
  await sleep(4_500); // longer than WEBSOCKET_CONNECTION_TIMEOUT (3 s); the client sends only pongs
  assert.ok(pings >= 3, `${pings} pings`);
  assert.equal(client.state, "open");
  assert.equal(client.connects, 1);

  // The same silence without pongs is closed with 4408: the test above can fail.
  const raw = new WebSocket(`${live.ws}/ws/game`);
  const code = await new Promise((resolve) => raw.on("close", resolve));
  assert.equal(code, 4408);
});

test("a silent drop is noticed within heartbeat_interval + grace, then reconnected", { skip }, async () => {
  const proxy = await throughProxy();
  const client = open("game", loginAs("alice"), proxy.url("/ws/game"));
  await client.connect();
  const closed = client.once("close", { timeoutMs: 10_000 });
  await sleep(300);
  const stalledAt = Date.now();
  proxy.stall(); // nothing gets through any more; nothing is closed either
  const close = await closed;
  const noticedMs = Date.now() - stalledAt;
  assert.match(close.reason, /no frame for 2 s/);
  assert.ok(noticedMs >= 1_000 && noticedMs < 3_500, `${noticedMs} ms`);
  await eventually(() => client.state === "open" && client.connects === 2, { timeoutMs: 5_000 });
});

test("a reset connection (an instance that died) is reconnected", { skip }, async () => {
  const proxy = await throughProxy();
  const client = open("chat", loginAs("alice"), proxy.url("/ws/chat"));
  await client.connect();
  proxy.reset();
  const close = await client.once("close", { timeoutMs: 5_000 });
  assert.equal(close.code, 1006);
  await eventually(() => client.state === "open" && client.connects === 2, { timeoutMs: 5_000 });
});

test("the token is renewed in band before it expires: no reconnect", { skip }, async () => {
  const reasons = [];
  const client = open("chat", {
    getToken: async ({ reason }) => {
      reasons.push(reason);
      // First a token that lasts 8 s (renewed at 6 s: signing in on a busy machine takes a
      // while), then ordinary ones.
      return reasons.length === 1 ? mint(live.users.alice, 8) : (await login(live.users.alice)).access;
    },
  });
  const started = Date.now();
  await client.connect();
  const refreshed = await client.once("token_refreshed", { timeoutMs: 10_000 });
  assert.ok(Date.parse(refreshed.expires_at) > Date.now() + 60_000);
  // Past the first token's expiry: the server re-validates every second.
  await sleep(Math.max(0, started + 9_500 - Date.now()));
  assert.equal(client.state, "open");
  assert.equal(client.connects, 1);
  assert.deepEqual(reasons, ["connect", "refresh"]);
});

test("the server restarts (1001): the client reconnects by itself", { skip }, async () => {
  const client = open("game", loginAs("alice"));
  await client.connect();
  const closes = [];
  client.on("close", (event) => closes.push(event));
  await restart();
  await eventually(() => client.state === "open" && client.connects >= 2, { timeoutMs: 20_000 });
  assert.equal(closes[0].code, 1001);
  assert.equal(closes[0].action, "reconnect");
  const pong = await client.request({ type: "ping" });
  assert.equal(pong.type, "pong");
});

// --- stream recovery (docs/protocol.md, protocol 1.1) --------------------------------------------

async function needsRecovery(t, client) {
  const established = await client.connect();
  if (established.protocol === undefined || !client.supportsResume) {
    t.skip(`the server speaks protocol ${established.protocol ?? "1.0"}; stream recovery needs 1.1`);
    await cleanUp();
    return false;
  }
  return true;
}

test("resume against the real server: what was missed comes back, in order, once", { skip }, async (t) => {
  const staff = (await login(live.users.staff)).access;
  const proxy = await throughProxy();
  const client = open("game", loginAs("alice"), proxy.url("/ws/game"));
  const heard = [];
  const resyncs = [];
  client.on("system_announcement", (frame) => heard.push(frame));
  client.on("resync", (event) => resyncs.push(event));
  if (!(await needsRecovery(t, client))) return;
  assert.ok(client.established.streams.game, "connection_established.streams names the game stream");

  await publish(staff, "game", { type: "system_announcement", message: "before", level: "info" });
  await eventually(() => heard.length === 1);
  proxy.refusing = true;
  proxy.reset();
  await client.once("close", { timeoutMs: 5_000 });
  for (const n of [1, 2, 3]) {
    await publish(staff, "game", { type: "system_announcement", message: `missed ${n}`, level: "info" });
  }
  const resumed = client.once("resumed", { timeoutMs: 10_000 });
  proxy.refusing = false;
  const reply = await resumed;
  assert.equal(reply.streams.game.recovered, true);
  assert.equal(reply.streams.game.missed, 3);
  await publish(staff, "game", { type: "system_announcement", message: "after", level: "info" });
  await eventually(() => heard.length === 5);
  assert.deepEqual(
    heard.map((f) => f.message),
    ["before", "missed 1", "missed 2", "missed 3", "after"],
  );
  const offsets = heard.map((f) => f.offset);
  assert.deepEqual(offsets, offsets.map((_, i) => offsets[0] + i));
  assert.deepEqual(resyncs, []);
});

test("resume against the real server: a stream the player may not read is re-synced", { skip }, async (t) => {
  const client = open("chat", {
    ...loginAs("alice"),
    streams: { "chat:guild:00000000-0000-4000-8000-000000000000": { offset: 3, epoch: "nope" } },
  });
  if (!(await needsRecovery(t, client))) return;
  const event = await client.once("resync", { timeoutMs: 5_000 }); // answered after connection_established
  assert.ok(["forbidden", "unknown_stream"].includes(event.reason), event.reason);
});
