// Stream positions and recovery (docs/clients.md, "Stream recovery"): the last offset and
// epoch of every stream a connection receives, the `resume` request after a reconnect, and the
// order in which held, replayed and live frames reach the application.
//
// Every method returns a list of steps, in the order the application must see them:
// `{frame}` to deliver a frame, `{resync}` to tell it that a stream lost frames for good.

function position(frame) {
  const { stream, offset, epoch } = frame;
  if (typeof stream !== "string" || !Number.isInteger(offset) || typeof epoch !== "string") return null;
  return { stream, offset, epoch };
}

function byOffset(a, b) {
  return a.offset - b.offset;
}

/** The most streams one `resume` may name (docs/protocol.md §12). */
export const MAX_RESUMED_STREAMS = 16;
// Streams the server will never replay again: forgotten, not asked about on every reconnect.
const GONE_REASONS = new Set(["forbidden", "unknown_stream"]);

export class StreamTracker {
  /** `initial`: positions saved from an earlier session, `{"<stream>": {offset, epoch}}`. */
  constructor(initial = {}) {
    this._positions = new Map();
    for (const [name, at] of Object.entries(initial || {})) {
      if (at && Number.isInteger(at.offset) && typeof at.epoch === "string") {
        this._positions.set(name, { offset: at.offset, epoch: at.epoch });
      }
    }
    this._resuming = null; // Set of stream names whose frames are held until `resumed`
    this._held = null; // stream name → frames received while resuming
    this._notResumed = [];
    this._active = new Map(); // stream name → when it last moved (a counter)
    this._clock = 0;
  }

  /** The last position of every stream seen: what a `resume` asks for. */
  positions() {
    return Object.fromEntries([...this._positions].map(([name, at]) => [name, { ...at }]));
  }

  get size() {
    return this._positions.size;
  }

  get resuming() {
    return this._resuming !== null;
  }

  /**
   * `connection_established.streams`: where each stream stands now. Streams not tracked yet
   * start there; tracked ones keep their own position, which the resume asks the server about.
   */
  adopt(streams) {
    for (const [name, at] of Object.entries(streams || {})) {
      if (!this._positions.has(name) && at && Number.isInteger(at.offset) && typeof at.epoch === "string") {
        this._positions.set(name, { offset: at.offset, epoch: at.epoch });
      }
    }
  }

  /** Stop tracking a stream (a fight that ended, a zone left, a group left). */
  forget(name) {
    this._positions.delete(name);
    this._active.delete(name);
  }

  /** `zone_changed`: the world streams are now exactly the new zone's. */
  zoneChanged(frame) {
    const streams = frame.streams && typeof frame.streams === "object" ? frame.streams : {};
    for (const name of [...this._positions.keys()]) {
      if (name.startsWith("world:") && !(name in streams)) this.forget(name);
    }
    this.adopt(streams);
  }

  /**
   * Start a resume: returns the `streams` of the `resume` frame; their frames are held until
   * `finish`. At most MAX_RESUMED_STREAMS, the most recently active; the others are re-synced.
   */
  begin() {
    const names = [...this._positions.keys()].sort((a, b) => (this._active.get(b) || 0) - (this._active.get(a) || 0));
    this._notResumed = names.slice(MAX_RESUMED_STREAMS);
    for (const name of this._notResumed) this.forget(name);
    const asked = this.positions();
    this._resuming = new Set(Object.keys(asked));
    this._held = new Map();
    return asked;
  }

  /** A frame from the server, in arrival order. */
  receive(frame) {
    const at = position(frame);
    if (!at) {
      if (frame.type === "zone_changed") this.zoneChanged(frame);
      return [{ frame }];
    }
    if (this._resuming?.has(at.stream)) {
      // Replayed or live, it waits for `resumed`: only then is the order known to be complete.
      const held = this._held.get(at.stream) || [];
      held.push({ ...at, frame });
      this._held.set(at.stream, held);
      return [];
    }
    return this._advance(at, frame);
  }

  /** The `resumed` reply: each held stream delivered in offset order, or re-synced. */
  finish(resumed) {
    const steps = this._resyncNotResumed();
    for (const name of this._resuming || []) {
      const entry = resumed?.streams?.[name];
      const held = (this._held.get(name) || []).sort(byOffset);
      if (entry && entry.recovered === false) {
        steps.push(...this._restart(name, held, entry.reason || "unknown_stream", entry));
      } else {
        for (const { frame, ...at } of held) steps.push(...this._advance(at, frame));
      }
    }
    this._resuming = this._held = null;
    return steps;
  }

  /** The server refused or never answered the resume: every stream asked about starts over. */
  fail(reason = "resume_failed") {
    const steps = this._resyncNotResumed();
    for (const name of this._resuming || []) {
      const held = (this._held.get(name) || []).sort(byOffset);
      steps.push(...this._restart(name, held, reason, null));
    }
    this._resuming = this._held = null;
    return steps;
  }

  /** The connection closed mid-resume: drop what was held; the next resume asks again from the same positions. */
  cancel() {
    this._resuming = this._held = null;
  }

  _resyncNotResumed() {
    const steps = this._notResumed.map((name) => ({ resync: { stream: name, reason: "not_resumed", offset: null, epoch: null } }));
    this._notResumed = [];
    return steps;
  }

  // A stream that cannot be recovered: say so once, then deliver what arrived live from its new
  // position (an announcement cannot be re-read later; chat can be merged by `message_id`).
  _restart(name, held, reason, entry) {
    const now = entry && Number.isInteger(entry.offset) ? { offset: entry.offset, epoch: entry.epoch } : null;
    if (GONE_REASONS.has(reason)) {
      // Never readable again: stop asking about it.
      this.forget(name);
      return [{ resync: { stream: name, reason, offset: now?.offset ?? null, epoch: now?.epoch ?? null } }];
    }
    const live = now ? held.filter((h) => h.epoch === now.epoch) : held;
    const steps = [{ resync: { stream: name, reason, offset: now?.offset ?? null, epoch: now?.epoch ?? null } }];
    if (live.length) this._positions.set(name, { offset: live[0].offset - 1, epoch: live[0].epoch });
    else if (now) this._positions.set(name, now);
    for (const { frame, ...at } of live) steps.push(...this._advance(at, frame, { quiet: true }));
    return steps;
  }

  _advance(at, frame, options) {
    const steps = this._step(at, frame, options);
    this._active.set(at.stream, ++this._clock);
    if (frame.type === "combat_end") this.forget(at.stream); // the fight's last frame: nothing left to resume
    return steps;
  }

  _step(at, frame, { quiet = false } = {}) {
    const known = this._positions.get(at.stream);
    this._positions.set(at.stream, { offset: Math.max(at.offset, known?.epoch === at.epoch ? known.offset : 0), epoch: at.epoch });
    if (!known) return [{ frame }]; // a stream joined now (a zone entered, a fight started)
    if (known.epoch !== at.epoch) {
      // The server lost the stream's history: what came between is gone.
      this._positions.set(at.stream, { offset: at.offset, epoch: at.epoch });
      const resync = { stream: at.stream, reason: "epoch_changed", offset: at.offset, epoch: at.epoch };
      return quiet ? [{ frame }] : [{ resync }, { frame }];
    }
    if (at.offset <= known.offset) return []; // seen already: a replay overlapping live frames
    if (at.offset > known.offset + 1 && !quiet) {
      // Frames were skipped (e.g. a group left and joined again): the app should re-read.
      return [{ resync: { stream: at.stream, reason: "gap", offset: at.offset, epoch: at.epoch } }, { frame }];
    }
    return [{ frame }];
  }
}
