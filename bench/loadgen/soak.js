// Soak load for rpgrealtime: thousands of connections over several instances, each playing a
// part for minutes — chat (party, private, some global, typing), world movement, combat, game
// pings — while every sent message is accounted for at its receivers.
//
// Usage: node soak.js <config.json>   (written by bench/soak.py; result JSON on stdout)
// Progress goes to stderr: "PHASE started" once everyone is connected, "PHASE middle" half-way,
// "PHASE ended" after the drain; bench/soak.py samples server memory at each.
"use strict";

const fs = require("fs");
const WebSocket = require("ws");

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const jitter = (ms) => ms * (0.5 + Math.random());

const cfg = JSON.parse(fs.readFileSync(process.argv[2], "utf8"));
const stats = {
  connect_failures: 0,
  unexpected_closes: {},
  errors: {},
  sent: {},
  // Every chat message is tagged "<kind>:<sender>:<seq>"; receivers record the tags they saw.
  expected: { private: 0, party: 0, global: 0 },
  received: { private: 0, party: 0, global: 0 },
  lost_private: [],
  combat: { fights: 0, actions: 0, ends: 0 },
  world: { moves: 0, frames: 0 },
};
const count = (bucket, key, n = 1) => { bucket[key] = (bucket[key] || 0) + n; };
let running = true;

class Player {
  constructor(index, spec) {
    Object.assign(this, spec);
    this.index = index;
    this.seq = 0;
    this.seen = new Set(); // tags of chat messages received from others
    this.timers = [];
  }

  open() {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(`${this.url}/ws/${this.endpoint}?token=${this.token}`, {
        perMessageDeflate: false,
        handshakeTimeout: 30000,
      });
      this.ws = ws;
      let established = false;
      ws.on("message", (data) => {
        const frame = JSON.parse(data.toString());
        if (!established) {
          if (frame.type === "connection_established") {
            established = true;
            resolve(this);
          } else {
            reject(new Error(JSON.stringify(frame)));
          }
          return;
        }
        this.onFrame(frame);
      });
      ws.on("error", (err) => { if (!established) reject(err); });
      ws.on("close", (code) => {
        if (!established) reject(new Error(`closed ${code}`));
        else if (running) count(stats.unexpected_closes, String(code));
      });
    });
  }

  send(frame) {
    if (this.ws.readyState !== WebSocket.OPEN) return;
    this.ws.send(JSON.stringify(frame));
    count(stats.sent, frame.type);
  }

  every(ms, fn) {
    const tick = () => {
      if (!running) return;
      fn();
      this.timers.push(setTimeout(tick, jitter(ms)));
    };
    this.timers.push(setTimeout(tick, jitter(ms)));
  }

  stop() { for (const t of this.timers) clearTimeout(t); }

  onFrame(frame) {
    switch (frame.type) {
      case "ping": this.send({ type: "pong" }); return;
      case "error": count(stats.errors, frame.code); return;
      case "chat_message": {
        if (frame.user_id === this.user_id) return; // our own copy
        const kind = frame.content.split(":", 1)[0];
        if (kind in stats.received && !this.seen.has(frame.content)) {
          this.seen.add(frame.content);
          stats.received[kind]++;
        }
        return;
      }
      case "combat_state": this.onCombatState(frame); return;
      case "combat_action_result": if (frame.actor === this.user_id) stats.combat.actions++; return;
      case "combat_end":
        stats.combat.ends++;
        this.fighting = false;
        setTimeout(() => this.startFight(), jitter(1000));
        return;
      case "player_movement": case "player_entered": case "player_left": stats.world.frames++; return;
      default: return;
    }
  }

  // --- roles -------------------------------------------------------------------------------

  begin() {
    this.every(cfg.ping_interval * 1000, () => this.send({ type: "ping" }));
    if (this.endpoint === "chat") this.beginChat();
    else if (this.endpoint === "world") this.beginWorld();
    else if (this.endpoint === "combat") this.startFight();
    else if (this.endpoint === "game") this.every(cfg.status_interval * 1000, () =>
      this.send({ type: "set_status", status: Math.random() < 0.5 ? "away" : "online" }));
  }

  chat(kind, frame, audience) {
    const content = `${kind}:${this.index}:${++this.seq}`;
    this.send({ type: "chat_message", content, ...frame });
    stats.expected[kind] += audience;
    if (kind === "private") this.sentPrivate = (this.sentPrivate || []).concat(content);
  }

  beginChat() {
    this.every(cfg.party_interval * 1000, () => {
      this.send({ type: "typing", channel: "party", is_typing: true });
      this.chat("party", { channel: "party" }, this.party_size - 1);
    });
    this.every(cfg.private_interval * 1000, () =>
      this.chat("private", { channel: "private", to: this.partner_id }, 1));
    if (this.global_chatter) {
      this.every(cfg.global_interval * 1000, () => this.chat("global", { channel: "global" }, cfg.chat_connections - 1));
    }
  }

  beginWorld() {
    const [zone, size] = this.zone;
    this.send({ type: "zone_change", zone });
    // Leave the spawn point at once (WORLD_MAX_STEP is raised for the soak), then walk.
    this.x = 20 + Math.random() * (size - 40);
    this.y = 20 + Math.random() * (size - 40);
    setTimeout(() => this.send({ type: "player_movement", zone, x: this.x, y: this.y }), 500);
    this.every(cfg.move_interval * 1000, () => {
      this.x = Math.min(size - 1, Math.max(1, this.x + (Math.random() - 0.5) * 20));
      this.y = Math.min(size - 1, Math.max(1, this.y + (Math.random() - 0.5) * 20));
      this.send({ type: "player_movement", zone, x: this.x, y: this.y });
      stats.world.moves++;
    });
  }

  startFight() {
    if (!running || this.fighting) return;
    this.fighting = true;
    stats.combat.fights++;
    this.send({ type: "combat_start", monsters: ["goblin"] });
  }

  onCombatState(state) {
    if (state.status !== "active" || !state.turn || state.turn.actor !== this.user_id) return;
    const target = state.participants.find((p) => p.kind === "monster" && p.alive);
    if (!target) return;
    const round = state.round;
    setTimeout(() => {
      if (running) {
        this.send({ type: "combat_action", combat_session_id: state.combat_session_id, action: "attack", target: target.id, round });
      }
    }, jitter(cfg.combat_think_ms));
  }
}

async function openAll(players, concurrency) {
  let next = 0;
  async function worker() {
    while (next < players.length) {
      const player = players[next++];
      for (let attempt = 0; ; attempt++) {
        try {
          await player.open();
          break;
        } catch (err) {
          stats.connect_failures++;
          if (attempt >= 4) throw err;
          await sleep(500 * (attempt + 1));
        }
      }
    }
  }
  await Promise.all(Array.from({ length: concurrency }, worker));
}

async function main() {
  const players = cfg.players.map((spec, i) => new Player(i, spec));
  const cpu0 = process.cpuUsage();
  const opened = Date.now();
  await openAll(players, cfg.concurrency);
  const connectSeconds = (Date.now() - opened) / 1000;
  console.error(`PHASE started ${players.length} connections in ${connectSeconds.toFixed(1)} s`);
  for (const player of players) player.begin();
  await sleep((cfg.duration * 1000) / 2);
  console.error("PHASE middle");
  await sleep((cfg.duration * 1000) / 2);
  running = false;
  for (const player of players) player.stop();
  await sleep(cfg.drain * 1000);
  // Private messages: exactly which ones never arrived.
  const byIndex = new Map(players.map((p) => [p.user_id, p]));
  for (const sender of players) {
    for (const tag of sender.sentPrivate || []) {
      if (!byIndex.get(sender.partner_id).seen.has(tag)) stats.lost_private.push(tag);
    }
  }
  console.error("PHASE ended");
  const cpu = process.cpuUsage(cpu0);
  for (const player of players) player.ws.close();
  await sleep(500);
  const pct = (kind) => (stats.expected[kind] ? Math.round((10000 * stats.received[kind]) / stats.expected[kind]) / 100 : null);
  process.stdout.write(JSON.stringify({
    connections: players.length,
    connect_seconds: connectSeconds,
    ...stats,
    lost_private: stats.lost_private.slice(0, 20),
    lost_private_count: stats.lost_private.length,
    delivered_pct: { private: pct("private"), party: pct("party"), global: pct("global") },
    loadgen_cpu_seconds: Math.round((cpu.user + cpu.system) / 1e4) / 100,
  }) + "\n");
}

main().catch((err) => { console.error(err); process.exit(1); });
