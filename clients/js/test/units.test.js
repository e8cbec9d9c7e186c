// The pure parts: close-code rules, backoff, JWT renewal timing, the stream tracker.

import assert from "node:assert/strict";
import { test } from "node:test";

import { Backoff, CloseCode, MAX_RESUMED_STREAMS, StreamTracker, closeAction, jwtClaims, renewalDelayMs } from "../src/index.js";
import { fakeJwt } from "./support/fake-server.js";

test("close-code rules", () => {
  const table = [
    [1000, null, "reconnect"],
    [1001, "server_shutting_down", "reconnect"],
    [1006, null, "reconnect"],
    [1011, null, "reconnect"],
    [4401, "token_expired", "refresh"],
    [4401, null, "refresh"],
    [4401, "invalid_token", "stop"],
    [4401, "authentication_required", "stop"],
    [4403, "banned", "stop"],
    [4403, "kicked", "stop"],
    [4408, "heartbeat_timeout", "reconnect"],
    [4413, null, "reconnect"],
    [4429, "too_many_connections", "reconnect_later"],
    [4429, "rate_limited", "reconnect_later"],
    [4503, "unavailable", "reconnect"],
  ];
  for (const [code, error, action] of table) assert.equal(closeAction(code, error), action, `${code} ${error}`);
  assert.equal(CloseCode.UNAVAILABLE, 4503);
});

test("backoff: exponential ceiling, full jitter, capped, reset", () => {
  const top = new Backoff({ initialMs: 100, maxMs: 1_000, random: () => 0.999999 });
  assert.deepEqual([1, 2, 3, 4, 5, 6].map(() => top.next()), [100, 200, 400, 800, 1000, 1000]);
  const bottom = new Backoff({ initialMs: 100, maxMs: 1_000, random: () => 0 });
  assert.deepEqual([1, 2, 3].map(() => bottom.next()), [0, 0, 0]);
  top.reset();
  assert.equal(top.next(), 100);
  const spread = new Set(Array.from({ length: 50 }, () => new Backoff({ initialMs: 1_000 }).next()));
  assert.ok(spread.size > 40, "full jitter spreads a crowd");
  const long = new Backoff({ random: () => 0.5 });
  assert.equal(long.long(10_000), 15_000);
});

test("JWT claims and renewal timing (from the token's own lifetime, not the clock)", () => {
  assert.equal(jwtClaims("not a jwt"), null);
  assert.equal(jwtClaims(fakeJwt(900, { user_id: "u1" })).user_id, "u1");
  assert.equal(renewalDelayMs(fakeJwt(900)), 840_000); // a minute early
  assert.equal(renewalDelayMs(fakeJwt(8)), 6_000); // a quarter of a short lifetime
  assert.equal(renewalDelayMs("opaque-token"), null);
  const skewed = fakeJwt(0, { iat: 1_000, exp: 1_900 }); // issued "long ago" by a clock far off
  assert.equal(renewalDelayMs(skewed), 840_000);
});

const frame = (stream, offset, epoch = "e") => ({ type: "x", stream, offset, epoch });
const delivered = (steps) => steps.filter((s) => s.frame).map((s) => `${s.frame.stream}@${s.frame.offset}`);

test("tracker: held frames come out per stream in offset order, without duplicates", () => {
  const tracker = new StreamTracker({ a: { offset: 2, epoch: "e" }, b: { offset: 0, epoch: "e" } });
  assert.deepEqual(tracker.begin(), { a: { offset: 2, epoch: "e" }, b: { offset: 0, epoch: "e" } });
  for (const f of [frame("a", 5), frame("b", 1), frame("a", 3), frame("a", 4), frame("a", 3), frame("a", 2)]) {
    assert.deepEqual(tracker.receive(f), []);
  }
  assert.deepEqual(tracker.receive({ type: "ping" }), [{ frame: { type: "ping" } }]);
  const steps = tracker.finish({ streams: { a: { recovered: true, missed: 3 }, b: { recovered: true, missed: 1 } } });
  assert.deepEqual(delivered(steps), ["a@3", "a@4", "a@5", "b@1"]);
  assert.equal(tracker.resuming, false);
  assert.deepEqual(tracker.positions(), { a: { offset: 5, epoch: "e" }, b: { offset: 1, epoch: "e" } });
});

test("tracker: cancel keeps positions, so the next resume asks again from the same place", () => {
  const tracker = new StreamTracker({ a: { offset: 2, epoch: "e" } });
  tracker.begin();
  tracker.receive(frame("a", 3));
  tracker.cancel();
  assert.deepEqual(tracker.positions(), { a: { offset: 2, epoch: "e" } });
  assert.deepEqual(delivered(tracker.receive(frame("a", 3))), ["a@3"]);
});

test("tracker: adopt takes the server's position only for streams it does not track", () => {
  const tracker = new StreamTracker({ a: { offset: 2, epoch: "e" } });
  tracker.adopt({ a: { offset: 9, epoch: "e" }, b: { offset: 4, epoch: "f" }, bad: { offset: "1" } });
  assert.deepEqual(tracker.positions(), { a: { offset: 2, epoch: "e" }, b: { offset: 4, epoch: "f" } });
});

// --- StreamTracker: what it forgets, and how many streams one resume names ------------------

const at = (stream, offset, type = "x") => ({ type, stream, offset, epoch: "e" });

test("streams the server will never replay (forbidden, unknown_stream) are forgotten", () => {
  const tracker = new StreamTracker({ "chat:guild:g1": { offset: 4, epoch: "e" }, "chat:global": { offset: 9, epoch: "e" } });
  tracker.begin();
  const steps = tracker.finish({ streams: { "chat:guild:g1": { recovered: false, reason: "forbidden", offset: 0, epoch: "" } } });
  assert.deepEqual(steps, [{ resync: { stream: "chat:guild:g1", reason: "forbidden", offset: 0, epoch: "" } }]);
  assert.deepEqual(Object.keys(tracker.positions()), ["chat:global"]);
});

test("a fight is forgotten once it ended; old zones when the zone changes", () => {
  const tracker = new StreamTracker();
  tracker.receive(at("combat:s1", 1, "combat_state"));
  tracker.receive(at("combat:s1", 2, "combat_end"));
  assert.deepEqual(tracker.positions(), {});
  tracker.adopt({ "world:starter_town": { offset: 3, epoch: "e" } });
  tracker.receive({ type: "zone_changed", zone: "dark_forest", streams: { "world:dark_forest": { offset: 8, epoch: "e" } } });
  assert.deepEqual(tracker.positions(), { "world:dark_forest": { offset: 8, epoch: "e" } });
});

test("a resume names the most recently active streams, at most 16; the rest are re-synced", () => {
  const tracker = new StreamTracker();
  for (let n = 0; n < MAX_RESUMED_STREAMS + 2; n++) tracker.receive(at(`chat:party:p${n}`, 1));
  tracker.receive(at("chat:party:p0", 2)); // p0 is the most recently active again
  const asked = tracker.begin();
  assert.equal(Object.keys(asked).length, MAX_RESUMED_STREAMS);
  assert.ok("chat:party:p0" in asked && !("chat:party:p1" in asked) && !("chat:party:p2" in asked));
  const resyncs = tracker.finish({ streams: {} }).filter((step) => step.resync).map((step) => step.resync);
  assert.deepEqual(resyncs.map((r) => [r.stream, r.reason]).sort(), [["chat:party:p1", "not_resumed"], ["chat:party:p2", "not_resumed"]]);
});
