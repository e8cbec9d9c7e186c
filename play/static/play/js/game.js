// The game panel (/ws/game): announcements and achievements as toasts, presence of guild and
// party members, the player's own status, and guild/party management over HTTP.
//
// Presence events only report changes, so the panel starts from the roster route's snapshot
// and refreshes it after membership changes and reconnects.

import { CONNECTION_ERRORS } from "./socket.js";
import { $, clock, describeError, el, toast } from "./ui.js";

const ROSTER_REFRESH_MS = 20_000; // nobody is told when someone joins *your* party: look again now and then
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export class Game {
  constructor(socket, { api, me, log, onWhisper, onMembership }) {
    this.socket = socket;
    this.api = api;
    this.me = me;
    this.log = log;
    this.onWhisper = onWhisper;
    this.onMembership = onMembership; // (me) after the player's guild or party changed
    this.roster = null;
    this.statusSelect = $("#status-select");
    this.statusSelect.addEventListener("change", () => this.setStatus(this.statusSelect.value));

    socket.on("connection_established", (frame) => {
      if (frame.reconnected) this.refresh();
    });
    socket.on("player_status", (frame) => this._status(frame));
    socket.on("system_announcement", (frame) => {
      const kind = { warning: "warning", critical: "critical" }[frame.level] || "info";
      toast(frame.message, { kind, title: "Announcement" });
      this.log(`Announcement (${frame.level}): ${frame.message}`, frame.timestamp);
    });
    socket.on("achievement", (frame) => {
      const who = frame.user_id === this.me.id ? "You" : frame.username;
      toast(`${who} earned “${frame.achievement}”`, { kind: "success", title: "Achievement" });
      this.log(`${who} earned the achievement ${frame.achievement}.`, frame.timestamp);
    });
    socket.on("game_state", (frame) => {
      this.log(`Game state ${frame.key} = ${JSON.stringify(frame.value)}`, frame.timestamp);
    });
    socket.on("moderation_notice", (frame) => {
      const until = frame.until ? ` until ${clock(frame.until)}` : "";
      const reason = frame.reason ? ` Reason: ${frame.reason}` : "";
      toast(`A moderator applied ${frame.action} to you${until}.${reason}`, { kind: "warning", title: "Moderation" });
    });
    socket.on("error", (frame) => {
      if (CONNECTION_ERRORS.has(frame.code)) return false;
      toast(describeError(frame), { kind: "error", title: "Game" });
      return true;
    });
    setInterval(() => {
      if (!document.hidden) this.refresh();
    }, ROSTER_REFRESH_MS);
    this.refresh();
  }

  async setStatus(status) {
    try {
      await this.socket.request({ type: "set_status", status });
    } catch (error) {
      toast(describeError(error), { kind: "error", title: "Status" });
    }
  }

  async refresh() {
    try {
      this.roster = await this.api.roster();
      this.render();
    } catch (error) {
      this.log(`Could not load the roster: ${error.message}`);
    }
  }

  _status(frame) {
    if (frame.user_id === this.me.id && frame.status !== "offline") this.statusSelect.value = frame.status;
    let known = false;
    for (const group of [this.roster?.guild, this.roster?.party]) {
      for (const member of group?.members || []) {
        if (member.id === frame.user_id) {
          member.status = frame.status;
          known = true;
        }
      }
    }
    if (known) this.render();
    else if (frame.user_id !== this.me.id) this.refresh(); // someone new in the guild or party
  }

  // --- membership over HTTP -------------------------------------------------------------

  async _change(action, successText) {
    const error = $("#social-error");
    error.textContent = "";
    try {
      await action();
      this.log(successText);
      this.me = await this.api.me();
      this.onMembership(this.me);
      await this.refresh();
    } catch (failure) {
      error.textContent = failure.message;
    }
  }

  _join(scope, id) {
    const trimmed = (id || "").trim();
    if (!UUID.test(trimmed)) {
      const example = "0d8e3c1a-5b7f-4c2e-9a64-3f1b2c4d5e6f";
      $("#social-error").textContent = `That is not a ${scope} id (they look like ${example}).`;
      return;
    }
    const call = scope === "guild" ? this.api.guildJoin : this.api.partyJoin;
    this._change(() => call(trimmed), `You joined a ${scope}.`);
  }

  // --- rendering ------------------------------------------------------------------------

  render() {
    const roster = this.roster;
    if (!roster) return;
    $("#guild-box").replaceChildren(...this._groupBox("guild", roster.guild, roster.guilds).filter(Boolean));
    $("#party-box").replaceChildren(...this._groupBox("party", roster.party, roster.parties).filter(Boolean));
  }

  _groupBox(scope, group, others) {
    const title = scope === "guild" ? "Guild" : "Party";
    if (group) {
      return [
        el("h3", {}, `${title}: ${group.name}`),
        el(
          "p",
          { class: "group-id" },
          "id ",
          el("code", { dataset: { scope } }, group.id),
          el(
            "button",
            { type: "button", class: "small", onclick: () => navigator.clipboard?.writeText(group.id) },
            "copy",
          ),
          el(
            "button",
            {
              type: "button",
              class: "small danger",
              dataset: { action: `${scope}-leave` },
              onclick: () => {
                const leave = scope === "guild" ? this.api.guildLeave : this.api.partyLeave;
                this._change(leave, `You left the ${scope}.`);
              },
            },
            "leave",
          ),
        ),
        el("ul", { class: "members", dataset: { scope } }, ...group.members.map((m) => this._member(m, group))),
      ];
    }
    const nameInput = el("input", {
      name: "name",
      placeholder: `${title} name`,
      maxlength: "64",
      "aria-label": `New ${scope} name`,
    });
    const idInput = el("input", { name: "id", placeholder: `${title} id`, "aria-label": `${title} id to join` });
    return [
      el("h3", {}, `No ${scope}`),
      el(
        "form",
        {
          class: "inline",
          dataset: { action: `${scope}-create` },
          onsubmit: (event) => {
            event.preventDefault();
            const create = scope === "guild" ? this.api.guildCreate : this.api.partyCreate;
            this._change(() => create(nameInput.value.trim()), `You founded a ${scope}.`);
          },
        },
        nameInput,
        el("button", {}, "Create"),
      ),
      el(
        "form",
        {
          class: "inline",
          dataset: { action: `${scope}-join-id` },
          onsubmit: (event) => {
            event.preventDefault();
            this._join(scope, idInput.value);
          },
        },
        idInput,
        el("button", {}, "Join"),
      ),
      others.length
        ? el(
            "ul",
            { class: "joinable", dataset: { scope } },
            ...others.map((other) =>
              el(
                "li",
                { dataset: { id: other.id, name: other.name } },
                `${other.name} (${other.members})`,
                el("button", { type: "button", class: "small", onclick: () => this._join(scope, other.id) }, "join"),
              ),
            ),
          )
        : null,
    ];
  }

  _member(member, group) {
    const mine = member.id === this.me.id;
    const leader = group.leader === member.id ? " ★" : "";
    return el(
      "li",
      { dataset: { userId: member.id, status: member.status } },
      el("span", { class: `dot ${member.status}`, title: member.status }),
      mine
        ? el("span", {}, `${member.username} (you)${leader}`)
        : el(
            "button",
            { type: "button", class: "author", onclick: () => this.onWhisper(member.id, member.username) },
            `${member.username}${leader}`,
          ),
      el("span", { class: "status-text" }, member.status),
    );
  }
}
