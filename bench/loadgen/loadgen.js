// Load generator for the rpgrealtime benchmarks. Node + ws: far cheaper per received frame than
// the Python servers it measures; it reports its own CPU so that can be checked.
//
// Usage: node loadgen.js <config.json>   (written by bench/run.py; result JSON on stdout)
//
// Workloads:
//   fanout   S subscribers in global chat spread over the servers, one publisher at R msgs/s.
//   connect  C authenticated connections as fast as possible (concurrency K), then hold them.
//   chatmix  parties of 5 chatting at a realistic rate, plus some global chat.
// Protocols: "rpgrealtime" (this project) and "socketio" (the python-socketio reference peer).
// Subscribers may be spread over several child processes ("procs") so one event loop is never
// the bottleneck; latencies use the shared wall clock (performance.timeOrigin + now()).
"use strict";

const fs = require("fs");
const { fork } = require("child_process");
const { performance } = require("perf_hooks");
const WebSocket = require("ws");
const { RawWebSocket } = require("./rawws");

const now = () => performance.timeOrigin + performance.now();
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// Latencies go into log-spaced buckets (1 % wide) instead of arrays: a million samples per run
// must not be shipped between processes or sorted.
const BUCKET_BASE = Math.log(1.01);
const MIN_MS = 0.01;

class Histogram {
  constructor() { this.counts = new Map(); this.count = 0; this.max = 0; }
  add(ms) {
    const index = ms <= MIN_MS ? 0 : Math.ceil(Math.log(ms / MIN_MS) / BUCKET_BASE);
    this.counts.set(index, (this.counts.get(index) || 0) + 1);
    this.count++;
    if (ms > this.max) this.max = ms;
  }
  toJSON() { return { counts: [...this.counts], count: this.count, max: this.max }; }
  static merge(parts) {
    const merged = new Histogram();
    for (const part of parts) {
      for (const [index, n] of part.counts) merged.counts.set(index, (merged.counts.get(index) || 0) + n);
      merged.count += part.count;
      merged.max = Math.max(merged.max, part.max);
    }
    return merged;
  }
  percentile(p) {
    if (!this.count) return null;
    const target = Math.ceil((p / 100) * this.count);
    let seen = 0;
    for (const index of [...this.counts.keys()].sort((a, b) => a - b)) {
      seen += this.counts.get(index);
      if (seen >= target) return Math.min(this.max, MIN_MS * Math.exp(index * BUCKET_BASE));
    }
    return this.max;
  }
}

function summarize(histogram) {
  const round = (v) => (v == null ? null : Math.round(v * 100) / 100);
  return {
    count: histogram.count,
    p50_ms: round(histogram.percentile(50)),
    p90_ms: round(histogram.percentile(90)),
    p99_ms: round(histogram.percentile(99)),
    max_ms: round(histogram.count ? histogram.max : null),
  };
}

// --- clients -------------------------------------------------------------------------------

// Frames carry "<stamp>|<seq>" in their content; finding it in the raw bytes avoids decoding and
// JSON-parsing every received frame, which would make the generator the bottleneck.
const CONTENT = Buffer.from('"content":');
const PING = Buffer.from('{"type":"ping"');
const BAR = 124; // "|"
const QUOTE = 34;
const SPACE = 32;

function stampOf(buf) {
  const marker = buf.indexOf(CONTENT);
  if (marker < 0) return null;
  let start = marker + CONTENT.length;
  while (buf[start] === SPACE) start++;
  if (buf[start] !== QUOTE) return null;
  start++;
  const bar = buf.indexOf(BAR, start);
  if (bar < 0) return null;
  const stamp = Number(buf.toString("latin1", start, bar));
  return Number.isFinite(stamp) ? stamp : null;
}

// Subscribers use the raw client (see rawws.js) unless cfg.client is "ws".
function openRpgRaw(url, token, onFrame) {
  return new Promise((resolve, reject) => {
    let established = false;
    const ws = new RawWebSocket(
      `${url}?token=${token}`,
      (payload) => {
        if (!established) {
          const text = payload.toString();
          if (text.includes('"connection_established"')) {
            established = true;
            resolve(ws);
          } else if (text.includes('"error"')) {
            reject(new Error(text));
          }
          return;
        }
        if (payload.length < 64 && payload.indexOf(PING) === 0) {
          ws.send('{"type":"pong"}');
          return;
        }
        onFrame(payload);
      },
      { onClose: (error) => { if (!established) reject(error); } },
    );
    ws.opened.catch(reject);
  });
}

// Engine.IO v4 over WebSocket, as socket.io-client speaks it: "0{open}", "40{auth}" to join the
// default namespace, "42[event, data]" for events, "2"/"3" for ping/pong.
function openSocketIORaw(url, token, onFrame) {
  return new Promise((resolve, reject) => {
    let joined = false;
    const wsUrl = url.replace(/^http/, "ws") + "/socket.io/?EIO=4&transport=websocket";
    const ws = new RawWebSocket(
      wsUrl,
      (payload) => {
        const kind = payload[0];
        if (kind === 0x32 && payload.length === 1) { // "2": ping
          ws.send("3");
          return;
        }
        if (!joined) {
          const text = payload.toString();
          if (text.startsWith("0")) ws.send(`40${JSON.stringify({ token })}`);
          else if (text.startsWith("40")) { joined = true; resolve(ws); }
          else if (text.startsWith("44")) reject(new Error(text));
          return;
        }
        onFrame(payload);
      },
      { onClose: (error) => { if (!joined) reject(error); } },
    );
    ws.opened.catch(reject);
  });
}

function openRpg(url, token, onFrame) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`${url}?token=${token}`, {
      perMessageDeflate: false,
      skipUTF8Validation: true,
      handshakeTimeout: 30000,
    });
    let established = false;
    ws.on("message", (data) => {
      if (!established) {
        const text = data.toString();
        if (text.includes('"connection_established"')) {
          established = true;
          resolve(ws);
        } else if (text.includes('"error"')) {
          reject(new Error(text));
        }
        return;
      }
      if (data.length < 64 && data.indexOf(PING) === 0) {
        ws.send('{"type":"pong"}');
        return;
      }
      onFrame(data);
    });
    ws.on("error", (err) => { if (!established) reject(err); });
    ws.on("close", (code) => { if (!established) reject(new Error(`closed ${code}`)); });
  });
}

function openSocketIO(url, token, onFrame) {
  const { io } = require("socket.io-client");
  return new Promise((resolve, reject) => {
    const socket = io(url, { transports: ["websocket"], auth: { token }, reconnection: false, timeout: 30000 });
    socket.on("connect", () => resolve(socket));
    socket.on("connect_error", reject);
    socket.on("chat_message", (message) => onFrame(Buffer.from(`{"content":"${message.content}"}`)));
  });
}

async function openAll(cfg, tokens, urls, onFrame, concurrency = 50) {
  const clients = new Array(tokens.length);
  let next = 0;
  let failures = 0;
  const raw = cfg.client !== "ws";
  const open = cfg.protocol === "socketio" ? (raw ? openSocketIORaw : openSocketIO) : raw ? openRpgRaw : openRpg;
  async function worker() {
    while (next < tokens.length) {
      const i = next++;
      const url = urls[i % urls.length] + (cfg.protocol === "socketio" ? "" : cfg.path);
      for (let attempt = 0; attempt < 3 && !clients[i]; attempt++) {
        try {
          clients[i] = await open(url, tokens[i], onFrame);
        } catch (err) {
          failures++;
          await sleep(200);
        }
      }
    }
  }
  await Promise.all(Array.from({ length: concurrency }, worker));
  return { clients: clients.filter(Boolean), failures };
}

function closeAll(clients) {
  for (const c of clients) {
    try { c.close(); } catch (_) { /* already gone */ }
  }
}

// --- subscriber child process --------------------------------------------------------------

async function subscriberMain() {
  process.on("message", async (msg) => {
    if (msg.cmd === "start") {
      const latencies = new Histogram();
      let received = 0;
      const onFrame = (buf) => {
        const stamp = stampOf(buf);
        if (stamp !== null) {
          received++;
          latencies.add(now() - stamp);
        }
      };
      const cpu0 = process.cpuUsage();
      const { clients, failures } = await openAll(msg.cfg, msg.tokens, msg.urls, onFrame, 25);
      process.send({ cmd: "ready", connected: clients.length, failures });
      process.on("message", async (m2) => {
        if (m2.cmd === "finish") {
          const cpu = process.cpuUsage(cpu0);
          process.send({ cmd: "result", received, latencies: latencies.toJSON(), cpu_ms: (cpu.user + cpu.system) / 1000 });
          closeAll(clients);
          await sleep(200);
          process.exit(0);
        }
      });
    }
  });
}

async function startSubscribers(cfg, tokens) {
  const procs = Math.max(1, cfg.procs || 1);
  const children = [];
  for (let p = 0; p < procs; p++) {
    const mine = tokens.filter((_, i) => i % procs === p);
    const child = fork(__filename, ["--subscriber"]);
    const ready = new Promise((resolve) => child.once("message", resolve));
    child.send({ cmd: "start", cfg, tokens: mine, urls: cfg.urls });
    children.push({ child, ready });
  }
  const readies = await Promise.all(children.map((c) => c.ready));
  return {
    connected: readies.reduce((a, r) => a + r.connected, 0),
    failures: readies.reduce((a, r) => a + r.failures, 0),
    async finish() {
      const results = await Promise.all(children.map(({ child }) => new Promise((resolve) => {
        child.once("message", resolve);
        child.send({ cmd: "finish" });
      })));
      return results;
    },
  };
}

// --- workloads -----------------------------------------------------------------------------

async function publisherFor(cfg, token, url) {
  if (cfg.protocol === "socketio") {
    const socket = await openSocketIO(url, token, () => {});
    return (content) => socket.emit("chat", { content });
  }
  const ws = await openRpg(url + cfg.path, token, () => {});
  return (content) => ws.send(`{"type":"chat_message","channel":"global","content":"${content}"}`);
}

async function fanout(cfg) {
  const t0 = now();
  const subs = await startSubscribers(cfg, cfg.tokens.slice(1, 1 + cfg.subscribers));
  const connectSeconds = (now() - t0) / 1000;
  const send = await publisherFor(cfg, cfg.tokens[0], cfg.urls[0]);
  await sleep(1000);
  const cpu0 = process.cpuUsage();
  const interval = 1000 / cfg.rate;
  const total = Math.round(cfg.rate * cfg.duration);
  const start = now();
  let sent = 0;
  while (sent < total) {
    const due = start + sent * interval;
    const wait = due - now();
    if (wait > 1) await sleep(wait);
    send(`${now()}|${sent}`);
    sent++;
  }
  const sendSeconds = (now() - start) / 1000;
  await sleep(cfg.drain_seconds * 1000);
  const results = await subs.finish();
  const cpu = process.cpuUsage(cpu0);
  const latencies = Histogram.merge(results.map((r) => r.latencies));
  const received = results.reduce((a, r) => a + r.received, 0);
  const expected = sent * subs.connected;
  return {
    workload: "fanout",
    protocol: cfg.protocol,
    subscribers: subs.connected,
    connect_failures: subs.failures,
    connect_seconds: Math.round(connectSeconds * 100) / 100,
    rate: cfg.rate,
    sent,
    send_seconds: Math.round(sendSeconds * 100) / 100,
    expected,
    received,
    delivered_pct: expected ? Math.round((received / expected) * 10000) / 100 : 0,
    deliveries_per_second: Math.round(received / sendSeconds),
    latency: summarize(latencies),
    loadgen_cpu_seconds: Math.round(((cpu.user + cpu.system) / 1e6 + results.reduce((a, r) => a + r.cpu_ms, 0) / 1000) * 100) / 100,
  };
}

async function connect(cfg) {
  const t0 = now();
  const cpu0 = process.cpuUsage();
  const { clients, failures } = await openAll(cfg, cfg.tokens.slice(0, cfg.connections), cfg.urls, () => {}, cfg.concurrency || 100);
  const seconds = (now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  process.stderr.write(`HOLDING ${clients.length}\n`);
  await sleep(cfg.hold_seconds * 1000);
  closeAll(clients);
  await sleep(500);
  return {
    workload: "connect",
    protocol: cfg.protocol,
    connections: clients.length,
    failures,
    seconds: Math.round(seconds * 100) / 100,
    connects_per_second: Math.round(clients.length / seconds),
    loadgen_cpu_seconds: Math.round(((cpu.user + cpu.system) / 1e6) * 100) / 100,
  };
}

async function chatmix(cfg) {
  // Users come in parties of 5 (cfg.parties[i] = party of tokens[i]); each sends a party message
  // every `party_interval` seconds (jittered); `global_every`th user also speaks in global chat.
  const latencies = new Histogram();
  let received = 0;
  const PARTY = Buffer.from('"channel":"party"');
  const onFrame = (buf) => {
    if (buf.indexOf(PARTY) < 0) return;
    const stamp = stampOf(buf);
    if (stamp !== null) {
      received++;
      latencies.add(now() - stamp);
    }
  };
  const t0 = now();
  const { clients, failures } = await openAll(cfg, cfg.tokens, cfg.urls, onFrame, 50);
  const connectSeconds = (now() - t0) / 1000;
  await sleep(1000);
  const cpu0 = process.cpuUsage();
  let sent = 0;
  let globalSent = 0;
  const end = now() + cfg.duration * 1000;
  const timers = clients.map((ws, i) => {
    const loop = async () => {
      await sleep(Math.random() * cfg.party_interval * 1000);
      while (now() < end) {
        ws.send(`{"type":"chat_message","channel":"party","content":"${now()}|${i}"}`);
        sent++;
        if (cfg.global_every && i % cfg.global_every === 0) {
          ws.send(`{"type":"chat_message","channel":"global","content":"hello from ${i}"}`);
          globalSent++;
        }
        await sleep(cfg.party_interval * 1000 * (0.5 + Math.random()));
      }
    };
    return loop();
  });
  await Promise.all(timers);
  await sleep(cfg.drain_seconds * 1000);
  const cpu = process.cpuUsage(cpu0);
  closeAll(clients);
  const expected = sent * 5; // each party message reaches the 5 members (sender included)
  return {
    workload: "chatmix",
    users: clients.length,
    connect_failures: failures,
    connect_seconds: Math.round(connectSeconds * 100) / 100,
    party_messages: sent,
    global_messages: globalSent,
    expected_party_deliveries: expected,
    received_party_deliveries: received,
    delivered_pct: expected ? Math.round((received / expected) * 10000) / 100 : 0,
    latency: summarize(latencies),
    loadgen_cpu_seconds: Math.round(((cpu.user + cpu.system) / 1e6) * 100) / 100,
  };
}

async function main() {
  if (process.argv.includes("--subscriber")) return subscriberMain();
  const cfg = JSON.parse(fs.readFileSync(process.argv[2], "utf8"));
  const workloads = { fanout, connect, chatmix };
  const result = await workloads[cfg.workload](cfg);
  process.stdout.write(JSON.stringify(result) + "\n");
  process.exit(0);
}

main().catch((err) => {
  process.stderr.write(`loadgen failed: ${err.stack || err}\n`);
  process.exit(1);
});
