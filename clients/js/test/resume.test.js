// Stream recovery against a fake server that does what docs/clients.md ("Stream recovery") says
// (the real server's tests are in server.test.js and run once it speaks protocol 1.1).

import assert from "node:assert/strict";
import { afterEach, beforeEach, test } from "node:test";
import WebSocket from "ws";

import { RealtimeClient } from "../src/index.js";
import { FakeServer, eventually, sleep } from "./support/fake-server.js";

let server;
let client;

beforeEach(async () => {
  server = await new FakeServer().start();
});

afterEach(async () => {
  client?.close();
  await server.stop();
});

function connect(options = {}) {
  client = new RealtimeClient(server.url, {
    WebSocket,
    token: "t",
    backoffInitialMs: 20,
    backoffMaxMs: 50,
    requestTimeoutMs: 1_000,
    ...options,
  });
  const seen = { frames: [], resyncs: [], resumed: [] };
  client.on("system_announcement", (frame) => seen.frames.push(frame));
  client.on("resync", (event) => seen.resyncs.push(event));
  client.on("resumed", (frame) => seen.resumed.push(frame));
  return { seen, established: client.connect() };
}

const offsets = (frames) => frames.map((f) => f.offset);
const announce = (n) => ({ type: "system_announcement", message: `m${n}`, level: "info" });

test("missed frames come back in order, exactly once, with live frames after the replay", async () => {
  for (let n = 1; n <= 2; n++) server.publish("game", announce(n), { send: false });
  const { seen, established } = connect();
  const first = await established;
  assert.deepEqual(first.streams, { game: { offset: 2, epoch: "e1" } });
  server.publish("game", announce(3));
  await eventually(() => seen.frames.length === 1);

  // A drop; three frames go by meanwhile.
  const before = server.connections.length;
  server.last().ws.terminate();
  for (let n = 4; n <= 6; n++) server.publish("game", announce(n), { send: false });
  // While it replays, a live frame (7) overtakes the replay and one replayed frame comes twice.
  server.onResume = (conn, frame) => {
    const live = server.publish("game", announce(7), { send: false });
    conn.send(live);
    server.replay(conn, frame, {
      before: (name, missed) => conn.send(missed[1]),
    });
    conn.send(live);
    return true;
  };
  const again = await server.nextConnection(before);
  await eventually(() => seen.resumed.length === 1);

  assert.deepEqual(server.framesOf(again)[0], { type: "resume", streams: { game: { offset: 3, epoch: "e1" } }, id: server.framesOf(again)[0].id });
  assert.deepEqual(offsets(seen.frames), [3, 4, 5, 6, 7]);
  assert.deepEqual(seen.resyncs, []);
  assert.deepEqual(seen.resumed[0].streams.game, { recovered: true, missed: 4, offset: 7, epoch: "e1" });
  assert.deepEqual(client.streams.positions(), { game: { offset: 7, epoch: "e1" } });

  server.publish("game", announce(8));
  await eventually(() => seen.frames.length === 6);
  assert.deepEqual(offsets(seen.frames), [3, 4, 5, 6, 7, 8]);
});

test("resume is the first frame on the new connection, before anything the application sends", async () => {
  server.publish("game", announce(1), { send: false });
  const { established } = connect();
  await established;
  client.on("connection_established", () => client.send({ type: "set_status", status: "away" }));
  const before = server.connections.length;
  server.last().ws.close(1001);
  const again = await server.nextConnection(before);
  await eventually(() => server.framesOf(again).length >= 2);
  assert.deepEqual(
    server.framesOf(again).map((f) => f.type),
    ["resume", "set_status"],
  );
});

test("a stream whose epoch changed is re-synced, with its reason, and its new frames delivered", async () => {
  server.publish("game", announce(1), { send: false });
  server.publish("chat:global", { type: "chat_message", content: "hi" }, { send: false });
  const { seen, established } = connect();
  await established;
  const before = server.connections.length;
  server.last().ws.terminate();
  server.restartStream("game", "e2"); // e.g. Redis restarted empty
  server.publish("chat:global", { type: "chat_message", content: "missed" }, { send: false });
  server.onResume = (conn, frame) => {
    conn.send(server.publish("game", announce(1), { send: false })); // live, in the new epoch
    server.replay(conn, frame);
    return true;
  };
  await server.nextConnection(before);
  await eventually(() => seen.resumed.length === 1);
  assert.deepEqual(seen.resyncs, [{ stream: "game", reason: "epoch_changed", offset: 1, epoch: "e2" }]);
  assert.deepEqual(seen.frames.map((f) => [f.offset, f.epoch]), [[1, "e2"]]);
  assert.equal(seen.resumed[0].streams["chat:global"].recovered, true);
  assert.deepEqual(client.streams.positions(), {
    game: { offset: 1, epoch: "e2" },
    "chat:global": { offset: 2, epoch: "e1" },
  });
});

test("too old and unknown streams are re-synced; nothing of them is delivered", async () => {
  for (let n = 1; n <= 3; n++) server.publish("game", announce(n), { send: false });
  const { seen, established } = connect({ streams: { "combat:gone": { offset: 4, epoch: "x" } } });
  await established;
  await eventually(() => seen.resumed.length === 1); // resumed at once: positions were given
  assert.deepEqual(seen.resyncs, [{ stream: "combat:gone", reason: "unknown_stream", offset: 0, epoch: "" }]);
  const before = server.connections.length;
  server.last().ws.terminate();
  for (let n = 4; n <= 9; n++) server.publish("game", announce(n), { send: false });
  server.forget("game", 5); // only offsets 6.. are kept; the client has 3
  await server.nextConnection(before);
  await eventually(() => seen.resumed.length === 2);
  assert.deepEqual(seen.resyncs.at(-1), { stream: "game", reason: "too_old", offset: 9, epoch: "e1" });
  assert.deepEqual(seen.frames, []);
  server.publish("game", announce(10));
  await eventually(() => seen.frames.length === 1);
  assert.equal(seen.frames[0].offset, 10);
});

test("a server that refuses resume: every stream re-synced, held frames delivered", async () => {
  server.publish("game", announce(1), { send: false });
  const { seen, established } = connect();
  await established;
  const before = server.connections.length;
  server.last().ws.terminate();
  server.onResume = (conn, frame) => {
    conn.send(server.publish("game", announce(2), { send: false }));
    conn.send({ type: "error", code: "unknown_type", message: "Unknown message type.", id: frame.id });
    return true;
  };
  await server.nextConnection(before);
  await eventually(() => seen.resyncs.length === 1);
  assert.equal(seen.resyncs[0].reason, "resume_failed");
  await eventually(() => seen.frames.length === 1);
  assert.equal(seen.frames[0].offset, 2);
});

test("a resume that is never answered gives up after the resume timeout", async () => {
  server.publish("game", announce(1), { send: false });
  const { seen, established } = connect({ resumeTimeoutMs: 200 });
  await established;
  const before = server.connections.length;
  server.last().ws.terminate();
  server.answerResume = false;
  await server.nextConnection(before);
  server.publish("game", announce(2)); // held: the stream is being resumed
  await sleep(50);
  assert.deepEqual(seen.frames, []);
  await eventually(() => seen.resyncs.length === 1, { timeoutMs: 1_000 });
  assert.deepEqual(seen.resyncs[0], { stream: "game", reason: "resume_failed", offset: null, epoch: null });
  assert.deepEqual(offsets(seen.frames), [2]);
});

test("live frames: duplicates dropped, a gap or a new epoch reported", async () => {
  server.publish("game", announce(1), { send: false });
  const { seen, established } = connect();
  await established;
  const conn = server.last();
  const frame2 = server.publish("game", announce(2));
  conn.send(frame2); // the same frame twice
  server.publish("game", announce(3), { send: false }); // skipped
  server.publish("game", announce(4));
  await eventually(() => seen.frames.length === 2);
  assert.deepEqual(offsets(seen.frames), [2, 4]);
  assert.deepEqual(seen.resyncs, [{ stream: "game", reason: "gap", offset: 4, epoch: "e1" }]);
  server.restartStream("game", "e9");
  server.publish("game", announce(1));
  await eventually(() => seen.resyncs.length === 2);
  assert.equal(seen.resyncs[1].reason, "epoch_changed");
  assert.equal(seen.frames.length, 3);
});

test("a stream joined later starts at its first frame; frames without a stream pass untouched", async () => {
  const { seen, established } = connect();
  await established;
  let statuses = 0;
  client.on("player_status", () => statuses++);
  server.last().send({ type: "player_status", user_id: "u", username: "bob", status: "online" });
  server.forget("world:dark_forest", 40);
  server.publish("world:dark_forest", { type: "system_announcement", message: "x", level: "info" });
  await eventually(() => seen.frames.length === 1 && statuses === 1);
  assert.deepEqual(seen.resyncs, []);
  assert.deepEqual(client.streams.positions(), { "world:dark_forest": { offset: 41, epoch: "e1" } });
});

test("a v1 server (no protocol field): no resume is sent and nothing is held", async () => {
  server.protocol = null;
  const { seen, established } = connect();
  await established;
  assert.equal(client.supportsResume, false);
  const before = server.connections.length;
  server.last().ws.close(1001);
  const again = await server.nextConnection(before);
  again.send({ type: "system_announcement", message: "hello", level: "info" });
  await eventually(() => seen.frames.length === 1);
  assert.deepEqual(server.framesOf(again), []);
});

test("resume can be turned off", async () => {
  server.publish("game", announce(1), { send: false });
  const { established } = connect({ resume: false });
  await established;
  const before = server.connections.length;
  server.last().ws.close(1001);
  const again = await server.nextConnection(before);
  await sleep(50);
  assert.deepEqual(server.framesOf(again), []);
});
