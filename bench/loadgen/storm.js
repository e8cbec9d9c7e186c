// The reconnect storm (bench/run.py storm): N players in global chat on two instances, each a
// real client of the project's JavaScript library (clients/js), so the reconnect rules, the
// backoff with jitter and stream recovery are the ones a game ships. bench/run.py publishes
// numbered chat messages and stops or kills one instance mid-run; its players reconnect to the
// survivor, resume, and every player must end with every message exactly once, in order.
//
// Usage: node storm.js <config.json>. Lines on stdin from bench/run.py: "SIGNALLED <epoch ms>"
// (the instance was signalled), "FINISH <n0>,<n1>,…" (the publishers are done: publisher i had
// n_i messages acknowledged). Writes "READY <n>" on stderr once everyone is connected; the result JSON on stdout.
"use strict";

const fs = require("fs");
const path = require("path");
const readline = require("readline");
const { fork } = require("child_process");
const { performance } = require("perf_hooks");
const WebSocket = require("ws");

// The `ws` package's defaults validate UTF-8 in JavaScript and offer compression (daphne refuses
// it); a browser does neither in script. Without these the load generator, not the server, would
// set the latencies.
class LeanWebSocket extends WebSocket {
  constructor(url, protocols) {
    super(url, protocols, { perMessageDeflate: false, skipUTF8Validation: true });
  }
}

const now = () => performance.timeOrigin + performance.now();
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const CLIENT_MODULE = path.resolve(__dirname, "../../clients/js/src/index.js");

// Sorted samples are fine here: one or two per player, not one per frame.
function summarize(samples) {
  if (!samples.length) return { count: 0, p50_ms: null, p90_ms: null, p99_ms: null, max_ms: null };
  const sorted = Float64Array.from(samples).sort();
  const at = (p) => Math.round(sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]);
  return { count: sorted.length, p50_ms: at(50), p90_ms: at(90), p99_ms: at(99), max_ms: Math.round(sorted[sorted.length - 1]) };
}

// --- one player ------------------------------------------------------------------------------

class Player {
  constructor(RealtimeClient, url, survivor, token, cfg) {
    this.expected = new Array(cfg.publishers).fill(0); // per publisher: the next number to see
    this.offset = null; // the last chat:global offset delivered: must grow by exactly 1
    this.disorder = 0;
    this.duplicates = 0;
    this.missing = 0;
    this.resyncs = 0;
    this.drops = 0;
    this.droppedAt = null;
    this.reconnectedAt = null;
    this.resumedAt = null;
    this.firstFrameAt = null;
    this.recovered = null;
    this.latencies = [];
    this.client = new RealtimeClient(url, {
      token,
      WebSocket: LeanWebSocket,
      listenOnline: false,
      backoffInitialMs: cfg.backoff_initial_ms,
      connectTimeoutMs: cfg.connect_timeout_ms,
      onHandlerError: (error) => process.stderr.write(`handler failed: ${error}\n`),
    });
    this.client.on("close", () => {
      this.drops += 1;
      if (this.droppedAt === null) this.droppedAt = now();
      this.client.url = survivor; // what a load balancer does when an instance is gone
    });
    this.client.on("state", ({ state, reconnected }) => {
      if (state === "open" && reconnected && this.reconnectedAt === null) this.reconnectedAt = now();
    });
    this.client.on("resumed", (frame) => {
      if (this.resumedAt === null) this.resumedAt = now();
      this.recovered = Object.values(frame.streams || {}).every((s) => s.recovered);
    });
    this.client.on("resync", () => { this.resyncs += 1; });
    this.client.on("chat_message", (frame) => this.receive(frame));
  }

  receive(frame) {
    const [publisher, seq, stamp] = frame.content.split("|").map(Number);
    if (this.droppedAt !== null && this.firstFrameAt === null && this.reconnectedAt !== null) this.firstFrameAt = now();
    // The stream's order: every delivered frame is the one after the last (the library drops
    // duplicates and reports gaps as resyncs; this checks what the application saw).
    if (this.offset !== null && frame.offset !== this.offset + 1) this.disorder += 1;
    this.offset = frame.offset;
    const expected = this.expected[publisher];
    if (seq < expected) {
      this.duplicates += 1;
      return;
    }
    if (seq > expected) this.missing += seq - expected;
    this.expected[publisher] = seq + 1;
    if (this.droppedAt === null && (seq & 7) === 0) this.latencies.push(now() - stamp);
  }
}

// --- a worker process: its share of the players ----------------------------------------------

async function workerMain() {
  const { RealtimeClient } = await import(CLIENT_MODULE);
  let players = [];
  process.on("message", async (msg) => {
    if (msg.cmd === "start") {
      const { cfg, tokens, urls } = msg;
      const survivor = urls[1] + cfg.path;
      players = tokens.map((token, i) => new Player(RealtimeClient, urls[i % 2] + cfg.path, survivor, token, cfg));
      let next = 0;
      let failures = 0;
      const opener = async () => {
        while (next < players.length) {
          const player = players[next++];
          try {
            await player.client.connect();
          } catch (error) {
            failures += 1;
          }
        }
      };
      await Promise.all(Array.from({ length: cfg.connect_concurrency }, opener));
      process.send({ cmd: "ready", connected: players.filter((p) => p.client.state === "open").length, failures });
    } else if (msg.cmd === "finish") {
      const deadline = now() + msg.settle_ms;
      const behind = (p) => p.expected.some((seen, i) => seen < msg.totals[i]);
      while (now() < deadline && players.some(behind)) await sleep(100);
      const cpu = process.cpuUsage();
      process.send({ cmd: "result", players: players.map((p) => report(p, msg.totals)), cpu_ms: (cpu.user + cpu.system) / 1000 });
      for (const p of players) p.client.close();
      await sleep(300);
      process.exit(0);
    }
  });
}

function report(p, totals) {
  const short = totals.reduce((a, total, i) => a + Math.max(0, total - p.expected[i]), 0);
  return {
    duplicates: p.duplicates,
    missing: p.missing + short,
    disorder: p.disorder,
    complete: short === 0 && p.missing === 0 && p.duplicates === 0 && p.disorder === 0,
    resyncs: p.resyncs,
    drops: p.drops,
    dropped_at: p.droppedAt,
    reconnected_at: p.reconnectedAt,
    resumed_at: p.resumedAt,
    first_frame_at: p.firstFrameAt,
    recovered: p.recovered,
    latencies: p.latencies,
  };
}

// --- the master ------------------------------------------------------------------------------

async function main() {
  const cfg = JSON.parse(fs.readFileSync(process.argv[2], "utf8"));
  const procs = Math.max(1, cfg.procs || 1);
  const workers = [];
  for (let w = 0; w < procs; w++) {
    const child = fork(__filename, ["--worker"]);
    const tokens = cfg.tokens.filter((_, i) => i % procs === w);
    const ready = new Promise((resolve) => child.once("message", resolve));
    child.send({ cmd: "start", cfg, tokens, urls: cfg.urls });
    workers.push({ child, ready });
  }
  const t0 = now();
  const readies = await Promise.all(workers.map((w) => w.ready));
  const connected = readies.reduce((a, r) => a + r.connected, 0);
  const connectSeconds = (now() - t0) / 1000;
  process.stderr.write(`READY ${connected}\n`);

  let signalledAt = null;
  const totals = await new Promise((resolve) => {
    readline.createInterface({ input: process.stdin }).on("line", (line) => {
      const [word, value] = line.trim().split(" ");
      if (word === "SIGNALLED") signalledAt = Number(value);
      if (word === "FINISH") resolve(value.split(",").map(Number)); // acknowledged, per publisher
    });
  });
  const results = await Promise.all(workers.map(({ child }) => new Promise((resolve) => {
    child.once("message", resolve);
    child.send({ cmd: "finish", totals, settle_ms: cfg.settle_seconds * 1000 });
  })));
  const players = results.flatMap((r) => r.players);
  const total = totals.reduce((a, b) => a + b, 0);
  process.stdout.write(JSON.stringify(aggregate(cfg, players, { connected, connectSeconds, signalledAt, total, results })) + "\n");
  process.exit(0);
}

function aggregate(cfg, players, { connected, connectSeconds, signalledAt, total, results }) {
  const moved = players.filter((p) => p.dropped_at !== null);
  const since = (field) => moved.filter((p) => p[field] !== null).map((p) => p[field] - p.dropped_at);
  const latest = (field) => Math.max(...moved.map((p) => p[field] ?? Infinity));
  const earliest = (field) => Math.min(...moved.map((p) => p[field] ?? Infinity));
  const reconnectSpan = (latest("reconnected_at") - earliest("reconnected_at")) / 1000;
  const allBack = signalledAt !== null && moved.length ? (latest("resumed_at") - signalledAt) / 1000 : null;
  const seconds = (v) => (v === null || !Number.isFinite(v) ? null : Math.round(v * 100) / 100);
  return {
    workload: "storm",
    clients: cfg.tokens.length,
    connected,
    connect_seconds: seconds(connectSeconds),
    published: total,
    moved: moved.length,
    reconnected: moved.filter((p) => p.reconnected_at !== null).length,
    resumed_recovered: moved.filter((p) => p.recovered === true).length,
    complete: players.filter((p) => p.complete).length,
    duplicates: players.reduce((a, p) => a + p.duplicates, 0),
    out_of_order: players.reduce((a, p) => a + p.disorder, 0),
    missing: players.reduce((a, p) => a + p.missing, 0),
    resyncs: players.reduce((a, p) => a + p.resyncs, 0),
    drops_per_moved_player_max: moved.length ? Math.max(...moved.map((p) => p.drops)) : 0,
    all_back_and_recovered_seconds: seconds(allBack),
    reconnects_per_second: reconnectSpan > 0 ? Math.round(moved.length / reconnectSpan) : null,
    drop_to_connected: summarize(since("reconnected_at")),
    drop_to_recovered: summarize(since("resumed_at")),
    drop_to_first_frame: summarize(since("first_frame_at")),
    live_latency_before_the_signal: summarize(players.flatMap((p) => p.latencies)),
    loadgen_cpu_seconds: Math.round(results.reduce((a, r) => a + r.cpu_ms, 0) / 10) / 100,
  };
}

if (process.argv[2] === "--worker") workerMain();
else main();
