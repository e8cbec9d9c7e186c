// The world panel (/ws/world): a canvas of the area around the player, the players nearby
// (kept as docs/protocol.md, "Keeping a client's picture right", says), and walking with the
// arrow keys or WASD, or towards where the map is tapped or dragged.

import { DOT_RADIUS, layOut } from "./layout.js";
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
const SELF_COLOUR = "#ffd166";
const AWAY_COLOUR = "rgba(255, 209, 102, 0.45)"; // our player, held by another window
const OTHER_COLOUR = "#6fb3ff";
// The map's drawing size: 640×320 where there is room; on a narrow screen it is drawn at the
// size it is shown (in CSS pixels, sharp on dense screens), so names stay readable.
const WIDE = { width: 640, height: 320 };
const NARROW_BELOW_PX = 560;

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
    this.away = null; // {x, y, drawX, drawY}: our player as another window moves it, when in sight
    this.fan = new Map(); // key → {dx, dy}: how far a dot is drawn from its place, eased
    this.picture = ""; // what the canvas shows, as JSON in its data-picture (for tests)
    this.keys = new Set();
    this.target = null; // {x, y}: where a tap or a drag on the map asks to walk
    this._dragging = false;
    this.moves = 0;

    this.canvas = $("#world-canvas");
    this.context = this.canvas.getContext("2d");
    this.view = { ...WIDE }; // the drawing's size in its own pixels
    // Also when the panel first appears (the page starts hidden behind the login form).
    new ResizeObserver(() => this._fit()).observe(this.canvas);
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
    this.canvas.addEventListener("pointerdown", (event) => this._pointed(event, true));
    this.canvas.addEventListener("pointermove", (event) => {
      if (this._dragging) this._pointed(event, false);
    });
    for (const end of ["pointerup", "pointercancel"]) window.addEventListener(end, () => (this._dragging = false));
    setInterval(() => this._step(), MOVE_TICK_MS);
    requestAnimationFrame(() => this._frame());

    socket.on("connection_established", () => this.enter(this.zone));
    socket.on("zone_changed", (frame) => this._entered(frame));
    socket.on("nearby_players", (frame) => this._nearby(frame));
    socket.on("player_entered", (frame) => this._seen(frame));
    socket.on("player_movement", (frame) => this._seen(frame));
    socket.on("player_left", (frame) => this._gone(frame));
    socket.on("world_event", (frame) => {
      // A zone left before a drop is still resumed (its stream is remembered): old news there.
      if (frame.zone && frame.zone !== this.zone) return;
      const where = frame.zone ? ` (${this.zones.get(frame.zone)?.title ?? frame.zone})` : "";
      toast(frame.message || frame.event, { title: `World event${where}` });
      this.log(`World event ${frame.event}${where}: ${frame.message}`);
    });
    // World events that could not be recovered cannot be read again; where everyone stands is
    // read again anyway, by entering the zone on every reconnect.
    socket.on("resync", (event) => {
      if (event.stream !== `world:${this.zone}`) return;
      this.log("World events here may have been missed while you were away.");
    });
    socket.on("error", (frame) => this._refused(frame));
    this.renderList();
  }

  // zone_change puts a player at the zone's spawn point, or where it stood if its last world
  // connection closed only minutes ago (docs/protocol.md §7): zone_changed says where. Also how
  // we take the player back after a reconnect or from another window.
  async enter(zoneName) {
    this.keys.clear();
    this.target = null;
    try {
      await this.socket.request({ type: "zone_change", zone: zoneName });
    } catch (error) {
      if (error.code !== "not_connected") this._banner(describeError(error, "world"));
      this.zoneSelect.value = this.zone;
    }
  }

  _entered(frame) {
    this.socket.adoptStreams(frame.streams); // the zone's world events, from here on
    this.zone = frame.zone;
    this.zoneSelect.value = frame.zone;
    this.self = { x: frame.x, y: frame.y };
    this.drawn = { ...this.self };
    this.players.clear(); // nearby_players, right behind, fills it again
    this.controlling = true;
    this.away = null;
    this._banner("");
    this.renderList();
  }

  _nearby(frame) {
    if (frame.zone !== this.zone) return;
    this.players.clear();
    for (const player of frame.players) {
      if (player.user_id !== this.me.id) this._upsert({ ...player, zone: frame.zone }, false);
    }
    this.renderList();
  }

  // The server never echoes our own moves, so a frame about our player means another connection
  // of ours (a second window) holds it now: it entered a zone, wherever the server put it.
  _seen(frame) {
    if (frame.user_id !== this.me.id) {
      this._upsert(frame);
      return;
    }
    if (frame.zone !== this.zone) return;
    const drawn = this.away ?? { drawX: frame.x, drawY: frame.y };
    this.away = { x: frame.x, y: frame.y, drawX: drawn.drawX, drawY: drawn.drawY };
    if (this.controlling) this._takenOver();
  }

  _gone(frame) {
    if (frame.user_id !== this.me.id) {
      this._left(frame);
      return;
    }
    this.away = null;
    // Our player left this spot: another window took it to another zone, or (rarely) the
    // server lost it in an outage and puts it back on our next move. A move to where we stand
    // tells which.
    if (this.controlling) this._probe();
  }

  async _probe() {
    const { x, y } = this.self;
    try {
      await this.socket.request({ type: "player_movement", zone: this.zone, x, y });
    } catch (error) {
      if (error.code === "forbidden") this._takenOver();
    }
  }

  _takenOver() {
    this.controlling = false;
    this.keys.clear();
    this.target = null;
    this._banner("Another window took over your player.", "Take it back", () => this.enter(this.zone));
    this.renderPosition();
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
      this._takenOver(); // another window of this player sent zone_change: it holds the player now
      return true;
    }
    if (typeof details.x === "number" && typeof details.y === "number") {
      this.self = { x: details.x, y: details.y }; // too long a step: resume where the server has us
      return true;
    }
    this._banner(describeError(frame, "world"));
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
    this.target = null; // keys take over from a tap
  }

  // A tap or drag on the map: walk towards that point (the map is centred on where we stand).
  _pointed(event, start) {
    if (!this.self || !this.controlling) return;
    if (start) {
      this._dragging = true;
      this.canvas.setPointerCapture?.(event.pointerId);
      // The map has the player's attention now: the keys walk (not type into the chat box).
      if (document.activeElement?.closest?.("input, textarea")) document.activeElement.blur();
    }
    const rect = this.canvas.getBoundingClientRect();
    const px = ((event.clientX - rect.left) * this.view.width) / rect.width;
    const py = ((event.clientY - rect.top) * this.view.height) / rect.height;
    const scale = this._scale();
    const zone = this.zones.get(this.zone);
    const clamp = (value, low, high) => Math.min(Math.max(value, low), high);
    this.target = {
      x: clamp(this.drawn.x + (px - this.view.width / 2) / scale, zone.min_x, zone.max_x),
      y: clamp(this.drawn.y + (py - this.view.height / 2) / scale, zone.min_y, zone.max_y),
    };
  }

  // Where the next step heads: the keys held, else the point tapped. [dx, dy] or null.
  _heading() {
    if (this.keys.size) {
      let dx = 0;
      let dy = 0;
      for (const key of this.keys) {
        dx += KEYS[key][0];
        dy += KEYS[key][1];
      }
      return [dx, dy];
    }
    if (!this.target) return null;
    const dx = this.target.x - this.self.x;
    const dy = this.target.y - this.self.y;
    if (Math.hypot(dx, dy) < 0.5) {
      this.target = null;
      return null;
    }
    return [dx, dy];
  }

  _step() {
    if (!this.controlling || !this.self || this.socket.state !== "open") return;
    const heading = this._heading();
    if (!heading) return;
    const [dx, dy] = heading;
    const length = Math.hypot(dx, dy);
    if (!length) return;
    let step = Math.min(this.config.max_step, (SPEED * MOVE_TICK_MS) / 1000);
    if (!this.keys.size) step = Math.min(step, length); // stop on the point tapped
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
    this.canvas.dataset.controlling = String(this.controlling);
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

  // Canvas pixels per world unit: the circle of sight fills most of the map's height.
  _scale() {
    return Math.min(this.view.width, this.view.height) / (this.config.nearby_radius * 2.5);
  }

  _fit() {
    const shown = this.canvas.clientWidth; // its CSS width is the panel's: the drawing size does not change it
    const narrow = shown > 0 && shown < NARROW_BELOW_PX;
    const view = narrow ? { width: Math.round(shown), height: Math.round(shown * 0.62) } : { ...WIDE };
    const ratio = narrow ? Math.min(window.devicePixelRatio || 1, 2) : 1;
    if (view.width === this.view.width && view.height === this.view.height && ratio === this.ratio) return;
    this.view = view;
    this.ratio = ratio;
    this.canvas.width = Math.round(view.width * ratio);
    this.canvas.height = Math.round(view.height * ratio);
    this.context.setTransform(ratio, 0, 0, ratio, 0, 0);
  }

  _draw() {
    const { context: g } = this;
    const { width, height } = this.view;
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
    const scale = this._scale();
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

    this._drawPlayers(width / 2, height / 2, toScreen);
  }

  // Players on one spot (newcomers enter a zone at its spawn point) are fanned out round it
  // and their names stacked, for display only (layout.js).
  _drawPlayers(centreX, centreY, toScreen) {
    const g = this.context;
    const marks = [];
    if (this.controlling) {
      marks.push({ key: this.me.id, x: centreX, y: centreY, label: `${this.me.username} (you)`, colour: SELF_COLOUR });
    } else if (this.away) {
      ease(this.away);
      const [x, y] = toScreen(this.away.drawX, this.away.drawY);
      marks.push({ key: this.me.id, x, y, label: `${this.me.username} (you, other window)`, colour: AWAY_COLOUR });
    }
    const players = [...this.players.values()].sort((a, b) => a.username.localeCompare(b.username));
    for (const player of players) {
      ease(player);
      const [x, y] = toScreen(player.drawX, player.drawY);
      marks.push({ key: player.user_id, x, y, label: player.username, colour: OTHER_COLOUR });
    }
    g.font = "12px system-ui, sans-serif";
    g.textAlign = "center";
    const { dots, labels } = layOut(marks, (text) => g.measureText(text).width);
    const colours = new Map(marks.map((mark) => [mark.key, mark.colour]));
    const fan = new Map();
    // Drawn last to first, so our own dot (the first) is on top.
    for (const dot of [...dots].reverse()) {
      const shown = this.fan.get(dot.key) ?? { dx: 0, dy: 0 }; // a newcomer slides out of the crowd
      shown.dx += (dot.dx - shown.dx) * 0.3;
      shown.dy += (dot.dy - shown.dy) * 0.3;
      fan.set(dot.key, shown);
      g.fillStyle = colours.get(dot.key);
      g.beginPath();
      g.arc(dot.x + shown.dx, dot.y + shown.dy, DOT_RADIUS, 0, Math.PI * 2);
      g.fill();
    }
    this.fan = fan;
    g.fillStyle = "#e8ecf4";
    for (const label of labels) g.fillText(label.text, label.x, label.y);
    g.textAlign = "start";
    this._describePicture(dots, labels, fan);
  }

  // The canvas's machine-readable picture: where each dot and name is drawn (tests read it).
  _describePicture(dots, labels, fan) {
    const round = (value) => Math.round(value);
    const picture = JSON.stringify({
      dots: dots.map((dot) => [dot.key, round(dot.x + fan.get(dot.key).dx), round(dot.y + fan.get(dot.key).dy)]),
      labels: labels.map((label) => [label.text, round(label.x), round(label.y), round(label.width)]),
    });
    if (picture === this.picture) return;
    this.picture = picture;
    this.canvas.dataset.picture = picture;
  }
}

// Ease a drawn position towards the latest one: moves arrive a few times a second.
function ease(point, rate = 0.25) {
  point.drawX += (point.x - point.drawX) * rate;
  point.drawY += (point.y - point.drawY) * rate;
  return point;
}
