// The combat panel (/ws/combat). The server referees every roll: this shows its combat_state,
// sends the player's choice on their turn (with the round, so a late resend can never land
// on a later turn), and counts down the turn's deadline on the server's clock.

import { CONNECTION_ERRORS } from "./socket.js";
import { $, clock, describeError, el, toast } from "./ui.js";

const OUTCOMES = { victory: "Victory!", defeat: "Defeat…", fled: "You got away." };

export class Combat {
  constructor(socket, { config, me, log }) {
    this.socket = socket;
    this.config = config;
    this.me = me;
    this.log = log;
    this.state = null; // the latest combat_state of the fight on screen
    this.names = new Map(); // participant id → name, for the log
    this.target = null;
    this.acting = false;
    this.over = null; // our combat_end outcome, once the fight is over for us

    this.root = $("#combat");
    this.setup = $("#combat-setup");
    this.fight = $("#combat-fight");
    this.participants = $("#combat-participants");
    this.timer = $("#combat-timer");
    this.status = $("#combat-status");
    this.outcome = $("#combat-outcome");
    this.logList = $("#combat-log");
    this.errorLine = $("#combat-error");
    this.buttons = {
      attack: $("#combat-attack"),
      defend: $("#combat-defend"),
      flee: $("#combat-flee"),
    };
    this.withParty = $("#combat-with-party");

    $("#combat-monsters").replaceChildren(
      ...config.monsters.map((monster) =>
        el(
          "label",
          { class: "monster-pick" },
          el("span", {}, `${monster.name} (${monster.max_hp} hp)`),
          el("input", {
            type: "number",
            min: "0",
            max: String(config.max_monsters),
            value: monster.key === "goblin" ? "1" : "0",
            dataset: { monster: monster.key },
            "aria-label": `${monster.name}s`,
          }),
        ),
      ),
    );
    $("#combat-start-form").addEventListener("submit", (event) => {
      event.preventDefault();
      this.start();
    });
    $("#combat-new").addEventListener("click", () => this.showSetup());
    for (const [action, button] of Object.entries(this.buttons)) {
      button.addEventListener("click", () => this.act(action));
    }
    setInterval(() => this._tick(), 250);
    // While the socket is down an action cannot reach the server: no buttons, no countdown.
    socket.onState(() => {
      this.renderActions();
      this._tick();
    });

    socket.on("connection_established", (frame) => this._connected(frame));
    // A fight's frames that could not be recovered after a reconnect: ask for where it stands.
    socket.on("resync", (event) => {
      if (event.stream === `combat:${this.state?.combat_session_id}`) this._askState();
    });
    socket.on("combat_state", (frame) => this._state(frame));
    socket.on("combat_action_result", (frame) => this._result(frame));
    socket.on("combat_timeout", (frame) => this._line(`${this._name(frame.actor)} ran out of time.`, frame.timestamp));
    socket.on("combat_participant", (frame) => this._participant(frame));
    socket.on("combat_end", (frame) => this._end(frame));
    socket.on("error", (frame) => {
      if (CONNECTION_ERRORS.has(frame.code)) return false;
      this.showError(frame);
      return true;
    });
    this.setMembership(me);
  }

  setMembership(me) {
    this.me = me;
    this.withParty.disabled = !me.party;
    if (!me.party) this.withParty.checked = false;
  }

  // After a reconnect the server resends a running fight by itself. A server that recovers
  // streams (docs/protocol.md §12) also replays what happened in the fight meanwhile, its end
  // included, so the page asks only when it cannot ("resync", above). Against an older server,
  // asking for the fight on screen catches one that ended while we were away.
  _connected(frame) {
    if (frame.reconnected && !frame.recovering && this.state && this.state.status === "active") this._askState();
  }

  _askState() {
    const frame = { type: "combat_state_request", combat_session_id: this.state.combat_session_id };
    this.socket.request(frame).catch(() => {}); // the automatic resend may already have done it
  }

  async start() {
    const monsters = [];
    for (const input of $("#combat-monsters").querySelectorAll("input[data-monster]")) {
      const count = Math.max(0, Math.min(this.config.max_monsters, Number.parseInt(input.value, 10) || 0));
      for (let i = 0; i < count; i += 1) monsters.push(input.dataset.monster);
    }
    this.errorLine.textContent = "";
    try {
      await this.socket.request({ type: "combat_start", monsters, with_party: this.withParty.checked });
    } catch (error) {
      const running = error.details && !Array.isArray(error.details) ? error.details.combat_session_id : null;
      if (running) {
        // Still in a fight (another window started it, or we reloaded): show that one.
        this.log("You are still in a fight; resuming it.");
        const frame = { type: "combat_state_request", combat_session_id: running };
        await this.socket.request(frame).catch((failure) => this.showError(failure));
        return;
      }
      this.showError(error);
    }
  }

  async act(action) {
    const state = this.state;
    if (!state || this.acting) return;
    const frame = { type: "combat_action", combat_session_id: state.combat_session_id, action, round: state.round };
    if (action === "attack") frame.target = this.target;
    this.acting = true;
    this.errorLine.textContent = "";
    this.renderActions();
    try {
      await this.socket.request(frame);
    } catch (error) {
      this.showError(error);
    } finally {
      this.acting = false;
      this.renderActions();
    }
  }

  showError(error) {
    this.errorLine.textContent = `${clock()} ${describeError(error, "combat")}`;
    this.errorLine.dataset.code = error.code || "";
    this.errorLine.dataset.code = error.code || "";
  }

  showSetup() {
    this.state = null;
    this.over = null;
    this.root.dataset.status = "";
    this.root.dataset.sessionId = "";
    this.fight.hidden = true;
    this.setup.hidden = false;
  }

  // --- server frames --------------------------------------------------------------------

  _state(state) {
    const isNew = !this.state || this.state.combat_session_id !== state.combat_session_id;
    if (isNew) {
      if (this.state && this.state.status === "active" && state.status !== "active") return; // a stale reply
    } else if (olderThan(state, this.state)) {
      // Replayed after a reconnect, behind the state the server resent on connecting: history
      // (its action results are in the log), not the fight as it stands.
      return;
    }
    if (isNew) {
      this.logList.replaceChildren();
      this.over = null;
      this.target = null;
      this.log(`A fight begins: ${state.participants.map((p) => p.name).join(", ")}.`);
    }
    this.state = state;
    for (const participant of state.participants) this.names.set(participant.id, participant.name);
    const living = state.participants.filter((p) => p.kind === "monster" && p.alive);
    if (!living.some((p) => p.id === this.target)) this.target = living[0]?.id ?? null;
    this.setup.hidden = true;
    this.fight.hidden = false;
    this.render();
  }

  _result(frame) {
    if (this.state && frame.combat_session_id !== this.state.combat_session_id) return;
    const actor = this._name(frame.actor);
    const you = frame.actor === this.me.id; // "You hit", "Goblin hits"
    let text;
    if (frame.action === "attack") {
      const crit = frame.critical ? " (critical!)" : "";
      const target = frame.target === this.me.id ? "you" : this._name(frame.target);
      text = `${actor} ${you ? "hit" : "hits"} ${target} for ${frame.damage}${crit}: ${frame.target_hp} hp left.`;
    } else if (frame.action === "defend") {
      text = `${actor} ${you ? "raise" : "raises"} a guard.`;
    } else if (frame.action === "flee") {
      if (frame.fled) text = `${actor} ${you ? "flee" : "flees"}!`;
      else text = `${actor} ${you ? "try" : "tries"} to flee but ${you ? "fail" : "fails"}.`;
    } else {
      text = `${actor}: ${frame.action}.`;
    }
    this._line(text, frame.timestamp);
  }

  _participant(frame) {
    const you = frame.user_id === this.me.id;
    const verbs = {
      joined: you ? "join the fight" : "joins the fight",
      left: you ? "leave the fight" : "leaves the fight",
      disconnected: "lost the connection",
      reconnected: you ? "are back" : "is back",
    };
    this._line(`${this._name(frame.user_id)} ${verbs[frame.event] || frame.event}.`, frame.timestamp);
  }

  _end(frame) {
    if (this.state && frame.combat_session_id !== this.state.combat_session_id) return;
    this.over = frame.outcome;
    this._line(OUTCOMES[frame.outcome] || frame.outcome, frame.timestamp);
    const kind = frame.outcome === "victory" ? "success" : "warning";
    toast(OUTCOMES[frame.outcome] || frame.outcome, { kind, title: "Fight over" });
    this.log(`Fight over: ${frame.outcome}.`);
    this.render();
  }

  _name(id) {
    if (id === this.me.id) return "You";
    return this.names.get(id) || "Someone";
  }

  _line(text, timestamp) {
    this.logList.append(el("li", {}, el("time", {}, clock(timestamp)), " ", text));
    this.logList.scrollTop = this.logList.scrollHeight;
  }

  // --- rendering ------------------------------------------------------------------------

  _myTurn() {
    const state = this.state;
    return Boolean(state && state.status === "active" && state.turn.actor === this.me.id && !this.over);
  }

  render() {
    const state = this.state;
    if (!state) return;
    this.root.dataset.status = state.status;
    this.root.dataset.sessionId = state.combat_session_id;
    this.root.dataset.round = String(state.round);
    const active = state.status === "active";
    this.status.textContent = active ? `Round ${state.round}` : OUTCOMES[state.status] || state.status;
    this.outcome.textContent = this.over ? OUTCOMES[this.over] || this.over : "";
    this.outcome.dataset.outcome = this.over || "";
    $("#combat-new").hidden = !(this.over || state.status !== "active");
    this.participants.replaceChildren(...state.participants.map((p) => this._participantItem(p, state)));
    this.renderActions();
    this._tick();
  }

  _participantItem(p, state) {
    const percent = p.max_hp ? Math.round((100 * p.hp) / p.max_hp) : 0;
    const targetable = p.kind === "monster" && p.alive;
    const item = el(
      "li",
      {
        class: [
          "fighter",
          p.kind,
          p.alive ? "alive" : "dead",
          state.turn.actor === p.id ? "acting" : "",
          p.id === this.target ? "targeted" : "",
        ].join(" "),
        dataset: { id: p.id, hp: String(p.hp), alive: String(p.alive) },
      },
      targetable
        ? el("input", {
            type: "radio",
            name: "combat-target",
            value: p.id,
            checked: p.id === this.target,
            "aria-label": `Target ${p.name}`,
            onchange: () => {
              this.target = p.id;
              this.render();
            },
          })
        : el("span", { class: "no-target" }),
      el("span", { class: "name" }, p.id === this.me.id ? `${p.name} (you)` : p.name),
      el(
        "span",
        {
          class: "hpbar",
          role: "meter",
          "aria-label": `${p.name}'s hit points`,
          "aria-valuemin": "0",
          "aria-valuemax": String(p.max_hp),
          "aria-valuenow": String(p.hp),
        },
        hpFill(percent),
      ),
      el("span", { class: "hp" }, `${p.hp}/${p.max_hp}`),
    );
    return item;
  }

  renderActions() {
    const enabled = this._myTurn() && !this.acting && this.socket.state === "open";
    this.buttons.attack.disabled = !enabled || !this.target;
    this.buttons.defend.disabled = !enabled;
    this.buttons.flee.disabled = !enabled;
  }

  // The deadline is the server's; compare it with the server's clock, not ours.
  _tick() {
    const state = this.state;
    if (!state || state.status !== "active" || this.over) {
      this.timer.textContent = "";
      this.timer.dataset.remaining = "";
      return;
    }
    this.timer.classList.toggle("offline", this.socket.state !== "open");
    if (this.socket.state !== "open") {
      // The server keeps the fight (and resends it when we are back); its clock is not ours to show.
      this.timer.textContent = "Connection lost — the fight resumes when you reconnect";
      this.timer.dataset.remaining = "";
      this.timer.classList.remove("urgent");
      return;
    }
    const actor = state.turn.actor === this.me.id ? "Your turn" : `${this._name(state.turn.actor)}'s turn`;
    if (!state.turn.deadline) {
      this.timer.textContent = `${actor}…`;
      this.timer.dataset.remaining = "";
      return;
    }
    const remaining = Math.max(0, (Date.parse(state.turn.deadline) - this.socket.serverNow()) / 1000);
    this.timer.textContent = `${actor}: ${remaining.toFixed(0)} s`;
    this.timer.dataset.remaining = remaining.toFixed(1);
    this.timer.classList.toggle("urgent", remaining < 10);
  }
}

// The bar's width through the CSS object model, not a style attribute: the page's
// Content-Security-Policy allows no inline styles.
function hpFill(percent) {
  const fill = el("span", { class: "hpfill" });
  fill.style.width = `${percent}%`;
  return fill;
}

// Whether `state` tells an earlier moment of the same fight than `shown`: an earlier round, or
// a running fight after its end. (Within one round the replayed states come in order and end on
// the last one broadcast, which is the fight as it stands; timestamps of two instances would not
// be a safe order.)
function olderThan(state, shown) {
  if (shown.status !== "active" && state.status === "active") return true;
  return state.round < shown.round;
}
