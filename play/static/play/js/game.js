// The game panel (/ws/game): announcements and achievements as toasts, presence of guild and
// party members, the player's own status, and guild/party management over HTTP.
//
// Presence events only report changes, so the panel starts from the roster route's snapshot
// and loads it again after membership changes and reconnects, when an event names a member it
// does not list, when the player turns to the guild and party controls, and now and then.

import { CONNECTION_ERRORS } from "./socket.js";
import { $, clock, describeError, el, sessionNotice, toast } from "./ui.js";

// Nobody is told when a group is founded or someone leaves one: look again now and then.
const ROSTER_POLL_MS = 20_000;
// Loads asked for by events, focus or hover: one at a time, at most one per this interval.
const ROSTER_MIN_GAP_MS = 3_000;
const SCOPES = ["guild", "party"];
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
    this._loading = null; // the load in flight
    this._again = false; // asked for while loading: load once more when it is done
    this._loadedAt = 0;
    this._soon = null;
    this.statusSelect = $("#status-select");
    this.statusSelect.addEventListener("change", () => this.setStatus(this.statusSelect.value));

    socket.on("connection_established", (frame) => {
      if (frame.reconnected) this.refresh();
    });
    socket.on("player_status", (frame) => this._status(frame));
    socket.on("membership_changed", (frame) => {
      const verb = frame.change === "joined" ? "joined" : "left";
      this.log(`${frame.username} ${verb} your ${frame.scope}.`, frame.timestamp);
      this.refreshSoon();
    });
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
      const text = moderationWords(frame);
      // A ban or kick closes every connection next: one notice for all of it, not a toast each.
      if (frame.action === "ban" || frame.action === "kick") sessionNotice(text);
      else toast(text, { kind: "warning", title: "Moderation" });
    });
    // The roster shows us online while our connection is (the snapshot may predate it).
    socket.onState(() => this.render());
    socket.on("error", (frame) => {
      if (CONNECTION_ERRORS.has(frame.code)) return false;
      toast(describeError(frame), { kind: "error", title: "Game" });
      return true;
    });
    for (const scope of SCOPES) {
      // The join list is only as fresh as the last load: look again when the player turns to it.
      const box = $(`#${scope}-box`);
      box.addEventListener("focusin", () => this.refreshSoon());
      box.addEventListener("pointerenter", () => this.refreshSoon());
    }
    document.addEventListener("visibilitychange", () => {
      if (!document.hidden) this.refreshSoon();
    });
    setInterval(() => {
      if (!document.hidden) this.refreshSoon();
    }, ROSTER_POLL_MS);
    this.refresh();
  }

  // Someone spoke in guild or party chat: a member the roster does not list has just joined.
  noticeMember(scope, userId) {
    if (!SCOPES.includes(scope) || !userId || userId === this.me.id || !this.roster) return;
    const members = this.roster[scope]?.members || [];
    if (!members.some((member) => member.id === userId)) this.refreshSoon();
  }

  async setStatus(status) {
    try {
      await this.socket.request({ type: "set_status", status });
    } catch (error) {
      toast(describeError(error, "status"), { kind: "error", title: "Status" });
    }
  }

  // Load the roster now; asked again while loading, load once more after (and resolve then),
  // so a caller that just changed a membership sees the change.
  refresh() {
    if (this._loading) {
      this._again = true;
      return this._loading;
    }
    this._loading = this._load().finally(() => {
      this._loading = null;
    });
    return this._loading;
  }

  async _load() {
    do {
      this._again = false;
      this._loadedAt = Date.now();
      clearTimeout(this._soon); // whoever asked for a load soon gets this one
      this._soon = null;
      try {
        this.roster = await this.api.roster();
        this.render();
      } catch (error) {
        this.log(`Could not load the roster: ${error.message}`);
      }
    } while (this._again);
  }

  // Load soon, but not more than once per ROSTER_MIN_GAP_MS however many events ask.
  refreshSoon() {
    if (this._soon) return;
    const wait = this._loadedAt + ROSTER_MIN_GAP_MS - Date.now();
    if (wait <= 0) {
      this.refresh();
      return;
    }
    this._soon = setTimeout(() => {
      this._soon = null;
      this.refresh();
    }, wait);
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
    else if (frame.user_id !== this.me.id) this.refreshSoon(); // someone new in the guild or party
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
      await this.refresh(); // the other members' pages hear of it (membership_changed)
    } catch (failure) {
      error.textContent = failure.message;
    }
  }

  _join(scope, id) {
    const trimmed = (id || "").trim();
    if (!UUID.test(trimmed)) {
      $("#social-error").textContent = `That is not a ${scope} invite code: ask a member to copy theirs for you.`;
      return;
    }
    const call = scope === "guild" ? this.api.guildJoin : this.api.partyJoin;
    this._change(() => call(trimmed), `You joined a ${scope}.`);
  }

  // --- rendering ------------------------------------------------------------------------

  render() {
    const roster = this.roster;
    if (!roster) return;
    this._renderBox("guild", roster.guild, roster.guilds);
    this._renderBox("party", roster.party, roster.parties);
  }

  // A box is rebuilt only when the player's group changes, and its lists only when they change:
  // a load must not wipe a name being typed, take the focus, or pull a button from under a click.
  _renderBox(scope, group, others) {
    const box = $(`#${scope}-box`);
    const shape = group ? `member:${group.id}` : "none";
    if (box.dataset.shape !== shape) {
      box.dataset.shape = shape;
      box.replaceChildren(...(group ? this._memberBox(scope, group) : this._joinBox(scope)));
    }
    if (group) {
      $("h3", box).textContent = `${scope === "guild" ? "Guild" : "Party"}: ${group.name}`;
      const shown = { ...group, members: group.members.map((m) => this._shownMember(m)) };
      replaceIfChanged($("ul.members", box), shown, () => shown.members.map((m) => this._member(m, shown)));
      return;
    }
    const list = $("ul.joinable", box);
    list.hidden = !others.length;
    replaceIfChanged(list, others, () => others.map((other) => this._joinable(scope, other)));
  }

  // While our own game connection is open we are online, whatever an older snapshot says.
  _shownMember(member) {
    if (member.id !== this.me.id || this.socket.state !== "open" || member.status !== "offline") return member;
    return { ...member, status: this.statusSelect.value || "online" };
  }

  _memberBox(scope, group) {
    const copy = el(
      "button",
      {
        type: "button",
        class: "small",
        title: `Others join your ${scope} with this code`,
        dataset: { scope, code: group.id },
        onclick: async () => {
          try {
            await navigator.clipboard.writeText(group.id);
            copy.textContent = "Code copied";
          } catch {
            copy.textContent = group.id; // no clipboard (e.g. plain http): show it to copy by hand
          }
          setTimeout(() => (copy.textContent = "Copy invite code"), 4_000);
        },
      },
      "Copy invite code",
    );
    return [
      el("h3", {}),
      el(
        "p",
        { class: "group-id" },
        copy,
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
      el("ul", { class: "members", dataset: { scope } }),
    ];
  }

  _joinBox(scope) {
    const title = scope === "guild" ? "Guild" : "Party";
    const nameInput = el("input", {
      name: "name",
      placeholder: `${title} name`,
      maxlength: "64",
      "aria-label": `New ${scope} name`,
    });
    const idInput = el("input", { name: "id", placeholder: "Invite code", "aria-label": `${title} invite code to join` });
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
      el("ul", { class: "joinable", dataset: { scope } }),
    ];
  }

  _joinable(scope, other) {
    return el(
      "li",
      { dataset: { id: other.id, name: other.name } },
      `${other.name} (${other.members})`,
      el("button", { type: "button", class: "small", onclick: () => this._join(scope, other.id) }, "join"),
    );
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

function moderationWords(frame) {
  const until = frame.until ? ` until ${clock(frame.until)}` : "";
  const reason = frame.reason ? ` Reason: ${frame.reason}` : "";
  const done = {
    mute: `A moderator muted you${until}.`,
    unmute: "A moderator lifted your mute.",
    ban: `A moderator banned you${until}.`,
    unban: "A moderator lifted your ban.",
    kick: "A moderator removed you from the game.",
    delete_message: "A moderator deleted one of your messages.",
  }[frame.action];
  return `${done || "A moderator acted on your account."}${reason}`;
}

const shownData = new WeakMap(); // list element → JSON of what it shows

function replaceIfChanged(list, data, build) {
  const key = JSON.stringify(data);
  if (shownData.get(list) === key) return;
  shownData.set(list, key);
  list.replaceChildren(...build());
}
