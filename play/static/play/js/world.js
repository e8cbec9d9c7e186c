// The world panel (/ws/world): a canvas of the area around the player, the players nearby
// (kept as docs/protocol.md, "Keeping a client's picture right", says), and walking with the
// arrow keys or WASD.

import { CONNECTION_ERRORS } from "./socket.js";
import { $, describeError, el, toast } from "./ui.js";

const MOVE_TICK_MS = 100; // 10 moves a second at most: half the per-connection frame budget
const SPEED = 120; // world units a second while a key is held
const KEYS = {
  ArrowUp: [0, -1],
  ArrowDown: [0, 1],
  ArrowLeft: [-1, 0],
  ArrowRight: [1, 0],
  w: [0, -1],
  s: [0, 1],
  a: [-1, 0],
  d: [1, 0],
};
const ZONE_COLOURS = { starter_town: "#2f4a2c", dark_forest: "#17261b" };
const DEFAULT_ZONE_COLOUR = "#2a3340";

export class World {
  constructor(socket, { config, me, log, onWhisper }) {
    this.socket = socket;
    this.config = config;
    this.me = me;
    this.log = log;
    this.onWhisper = onWhisper;
    this.zones = new Map(config.zones.map((zone) => [zone.name, zone]));
    this.zone = this.zones.has("starter_town") ? "starter_town" : config.zones[0]?.name;
    this.self = null; // {x, y} once the server placed us
    this.drawn = null;
    this.players = new Map(); // user id → {user_id, username, x, y, drawX, drawY}
    this.controlling = false; // false until zone_changed, and after another window took over
    this.keys = new Set();
    this.moves = 0;

    this.canvas = $("#world-canvas");
    this.context = this.canvas.getContext("2d");
    this.list = $("#world-players");
    this.position = $("#world-position");
    this.banner = $("#world-banner");
    this.zoneSelect = $("#zone-select");
    this.zoneSelect.replaceChildren(...config.zones.map((zone) => el("option", { value: zone.name }, zone.title)));
    this.zoneSelect.value = this.zone;
    this.zoneSelect.addEventListener("change", () => this.enter(this.zoneSelect.value));

    window.addEventListener("keydown", (event) => this._key(event, true));
    window.addEventListener("keyup", (event) => this._key(event, false));
    window.addEventListener("blur", () => this.keys.clear());
    setInterval(() => this._step(), MOVE_TICK_MS);
    requestAnimationFrame(() => this._frame());

    socket.on("connection_established", () => this.enter(this.zone));
    socket.on("zone_changed", (frame) => this._entered(frame));
    socket.on("nearby_players", (frame) => this._nearby(frame));
    socket.on("player_entered", (frame) => this._upsert(frame));
    socket.on("player_movement", (frame) => this._upsert(frame));
    socket.on("player_left", (frame) => this._left(frame));
    socket.on("world_event", (frame) => {
      const where = frame.zone ? ` (${frame.zone})` : "";
      toast(frame.message || frame.event, { title: `World event${where}` });
      this.log(`World event ${frame.event}${where}: ${frame.message}`);
    });
    socket.on("error", (frame) => this._refused(frame));
    this.renderList();
  }

  // zone_change puts a player at the zone's spawn point; also how we take the player back
  // after a reconnect or from another window.
  async enter(zoneName) {
    this.keys.clear();
    try {
      await this.socket.request({ type: "zone_change", zone: zoneName });
    } catch (error) {
      if (error.code !== "not_connected") this._banner(describeError(error));
      this.zoneSelect.value = this.zone;
    }
  }

  _entered(frame) {
    this.zone = frame.zone;
    this.zoneSelect.value = frame.zone;
    this.self = { x: frame.x, y: frame.y };
    this.drawn = { ...this.self };
    this.players.clear(); // nearby_players, right behind, fills it again
    this.controlling = true;
    this._banner("");
    this.renderList();
  }

  _nearby(frame) {
    if (frame.zone !== this.zone) return;
    this.players.clear();
    for (const player of frame.players) this._upsert({ ...player, zone: frame.zone }, false);
    this.renderList();
  }

  _upsert(frame, render = true) {
    if (frame.zone !== this.zone || frame.user_id === this.me.id) return;
    const known = this.players.get(frame.user_id);
    const username = frame.username || known?.username || "?";
    const player = { user_id: frame.user_id, username, x: frame.x, y: frame.y };
    player.drawX = known ? known.drawX : frame.x;
    player.drawY = known ? known.drawY : frame.y;
    this.players.set(frame.user_id, player);
    if (render) this.renderList();
  }

  _left(frame) {
    if (this.players.delete(frame.user_id)) this.renderList();
  }

  // Move refusals come back without an id (moves stream without one).
  _refused(frame) {
    if (CONNECTION_ERRORS.has(frame.code)) return false;
    const details = frame.details && !Array.isArray(frame.details) ? frame.details : {};
    if (frame.code === "rate_limited") return true; // the next tick tries again
    if (frame.code === "forbidden" && "zone" in details) {
      // Another window of this player sent zone_change: it holds the player now.
      this.controlling = false;
      this.keys.clear();
      this._banner("Another window took over your player.", "Take it back", () => this.enter(this.zone));
      return true;
    }
    if (typeof details.x === "number" && typeof details.y === "number") {
      this.self = { x: details.x, y: details.y }; // too long a step: resume where the server has us
      return true;
    }
    this._banner(describeError(frame));
    return true;
  }

  _banner(text, action = null, onAction = null) {
    this.banner.replaceChildren(text, action ? el("button", { type: "button", onclick: onAction }, action) : "");
    this.banner.hidden = !text;
  }

  // --- walking --------------------------------------------------------------------------

  _key(event, down) {
    const target = event.target;
    if (target instanceof HTMLElement && target.closest("input, textarea, select, [contenteditable]")) return;
    const key = event.key.length === 1 ? event.key.toLowerCase() : event.key;
    if (!(key in KEYS)) return;
    event.preventDefault(); // arrows would scroll the page
    if (down) this.keys.add(key);
    else this.keys.delete(key);
  }

  _step() {
    if (!this.keys.size || !this.controlling || !this.self || this.socket.state !== "open") return;
    let dx = 0;
    let dy = 0;
    for (const key of this.keys) {
      dx += KEYS[key][0];
      dy += KEYS[key][1];
    }
    const length = Math.hypot(dx, dy);
    if (!length) return;
    const step = Math.min(this.config.max_step, (SPEED * MOVE_TICK_MS) / 1000);
    const zone = this.zones.get(this.zone);
    const clamp = (value, low, high) => Math.min(Math.max(value, low), high);
    const x = Math.round(clamp(this.self.x + (dx / length) * step, zone.min_x, zone.max_x) * 10) / 10;
    const y = Math.round(clamp(this.self.y + (dy / length) * step, zone.min_y, zone.max_y) * 10) / 10;
    if (x === this.self.x && y === this.self.y) return;
    if (this.socket.send({ type: "player_movement", zone: this.zone, x, y })) {
      this.self = { x, y };
      this.moves += 1;
      this.renderPosition();
    }
  }

  // --- drawing --------------------------------------------------------------------------

  renderPosition() {
    const self = this.self;
    this.canvas.dataset.zone = this.zone || "";
    this.canvas.dataset.x = self ? String(self.x) : "";
    this.canvas.dataset.y = self ? String(self.y) : "";
    const title = this.zones.get(this.zone)?.title ?? this.zone;
    this.position.textContent = self ? `${title} (${Math.round(self.x)}, ${Math.round(self.y)})` : "…";
  }

  // The players list doubles as the page's machine-readable picture (data-x/data-y).
  renderList() {
    this.renderPosition();
    const players = [...this.players.values()].sort((a, b) => a.username.localeCompare(b.username));
    this.list.replaceChildren(
      ...players.map((player) =>
        el(
          "li",
          { dataset: { userId: player.user_id, username: player.username, x: String(player.x), y: String(player.y) } },
          el(
            "button",
            {
              type: "button",
              class: "author",
              title: `Whisper to ${player.username}`,
              onclick: () => this.onWhisper(player.user_id, player.username),
            },
            player.username,
          ),
          ` (${Math.round(player.x)}, ${Math.round(player.y)})`,
        ),
      ),
    );
    if (!players.length) this.list.append(el("li", { class: "empty" }, "Nobody nearby."));
  }

  _frame() {
    this._draw();
    requestAnimationFrame(() => this._frame());
  }

  _draw() {
    const { canvas, context: g } = this;
    const width = canvas.width;
    const height = canvas.height;
    const radius = this.config.nearby_radius;
    g.fillStyle = "#0c0f14";
    g.fillRect(0, 0, width, height);
    const zone = this.zones.get(this.zone);
    if (!this.self || !zone) {
      g.fillStyle = "#8892a6";
      g.font = "16px system-ui, sans-serif";
      g.fillText("Entering the world…", 20, 30);
      return;
    }
    // Ease the drawn positions towards the latest ones: moves arrive a few times a second.
    this.drawn.x += (this.self.x - this.drawn.x) * 0.35;
    this.drawn.y += (this.self.y - this.drawn.y) * 0.35;
    const scale = Math.min(width, height) / (radius * 2.5);
    const toScreen = (x, y) => [width / 2 + (x - this.drawn.x) * scale, height / 2 + (y - this.drawn.y) * scale];

    const [zx0, zy0] = toScreen(zone.min_x, zone.min_y);
    const [zx1, zy1] = toScreen(zone.max_x, zone.max_y);
    g.fillStyle = ZONE_COLOURS[zone.name] || DEFAULT_ZONE_COLOUR;
    g.fillRect(zx0, zy0, zx1 - zx0, zy1 - zy0);
    g.strokeStyle = "rgba(255, 255, 255, 0.06)";
    g.lineWidth = 1;
    const grid = 50;
    for (let x = Math.ceil(zone.min_x / grid) * grid; x <= zone.max_x; x += grid) {
      const [sx] = toScreen(x, 0);
      if (sx < 0 || sx > width) continue;
      g.beginPath();
      g.moveTo(sx, Math.max(0, zy0));
      g.lineTo(sx, Math.min(height, zy1));
      g.stroke();
    }
    for (let y = Math.ceil(zone.min_y / grid) * grid; y <= zone.max_y; y += grid) {
      const [, sy] = toScreen(0, y);
      if (sy < 0 || sy > height) continue;
      g.beginPath();
      g.moveTo(Math.max(0, zx0), sy);
      g.lineTo(Math.min(width, zx1), sy);
      g.stroke();
    }
    const [spawnX, spawnY] = toScreen(zone.spawn_x, zone.spawn_y);
    g.fillStyle = "rgba(240, 200, 90, 0.25)";
    g.fillRect(spawnX - 6, spawnY - 6, 12, 12);

    // What we can see: players farther than this are not reported to us.
    g.setLineDash([6, 6]);
    g.strokeStyle = "rgba(160, 200, 255, 0.35)";
    g.beginPath();
    g.arc(width / 2, height / 2, radius * scale, 0, Math.PI * 2);
    g.stroke();
    g.setLineDash([]);

    g.font = "12px system-ui, sans-serif";
    g.textAlign = "center";
    for (const player of this.players.values()) {
      player.drawX += (player.x - player.drawX) * 0.25;
      player.drawY += (player.y - player.drawY) * 0.25;
      const [sx, sy] = toScreen(player.drawX, player.drawY);
      this._dot(sx, sy, "#6fb3ff", player.username);
    }
    this._dot(width / 2, height / 2, "#ffd166", `${this.me.username} (you)`);
    g.textAlign = "start";
  }

  _dot(x, y, colour, label) {
    const g = this.context;
    g.fillStyle = colour;
    g.beginPath();
    g.arc(x, y, 7, 0, Math.PI * 2);
    g.fill();
    g.fillStyle = "#e8ecf4";
    g.fillText(label, x, y - 12);
  }
}
