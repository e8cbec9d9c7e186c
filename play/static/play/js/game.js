// The game panel (/ws/game): announcements and achievements as toasts, presence of guild and
// party members, the player's own status, invitations, and guild/party management over HTTP.
//
// Presence events only report changes, so the panel starts from the roster route's snapshot
// and loads it again after membership changes and reconnects, when an event names a member it
// does not list, when the player turns to the guild and party controls, and now and then.
// Guilds and parties are invitation-only unless founded open (docs/protocol.md §8): a leader
// invites by name, the invited player accepts from a notice or from the roster's list.

import { CONNECTION_ERRORS } from "./socket.js";
import { $, clock, describeError, dismissToast, el, sessionNotice, toast } from "./ui.js";

// Nobody is told when a group is founded or someone leaves one: look again now and then.
const ROSTER_POLL_MS = 20_000;
// Loads asked for by events, focus or hover: one at a time, at most one per this interval.
const ROSTER_MIN_GAP_MS = 3_000;
const SCOPES = ["guild", "party"];
// An invitation asks for a decision: its notice stays a minute (the roster lists it after).
const INVITATION_TOAST_MS = 60_000;
// After a reconnect the roster (presence, not a stream) is read again: spread over this much, so
// a crowd coming back after a restart does not all ask at the same moment.
const RECONNECT_SPREAD_MS = 2_000;

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
      if (frame.reconnected) setTimeout(() => this.refresh(), Math.random() * RECONNECT_SPREAD_MS);
    });
    socket.on("invitation", (frame) => this._invited(frame));
    // Announcements and game state that could not be recovered cannot be read again either.
    socket.on("resync", (event) => {
      if (event.stream === "game") this.log("Announcements made while you were away may be missing.");
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
      } catch {
        this.log("Could not load your guild and party; trying again soon.");
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

  // Run one membership change; on success reload the player and the roster. Returns true when
  // it worked. A refusal is said in the player's words under the guild and party boxes.
  async _change(action, successText, words) {
    this._say("");
    try {
      await action();
    } catch (failure) {
      this._say(membershipWords(failure, { ...words, me: this.me }), "error");
      return false;
    }
    this.log(successText);
    try {
      this.me = await this.api.me();
      this.onMembership(this.me);
    } catch {
      // The change is done; the next roster load or reconnect brings the rest up to date.
    }
    await this.refresh(); // the other members' pages hear of it (membership_changed)
    return true;
  }

  // One line under the guild and party boxes: what went wrong, or what was done.
  _say(text, kind = "note") {
    const error = $("#social-error");
    const note = $("#social-note");
    error.textContent = kind === "error" ? text : "";
    note.textContent = kind === "note" ? text : "";
  }

  _create(scope, name, open) {
    const kind = open ? "open" : "invitation-only";
    this._change(
      () => this.api.groupCreate(scope, { name, open }),
      `You founded an ${kind} ${scope}.`,
      { scope, action: "create" },
    );
  }

  _join(scope, id, name) {
    this._change(() => this.api.groupJoin(scope, id), `You joined the ${scope} ${name}.`, { scope, action: "join" });
  }

  _leave(scope) {
    this._change(() => this.api.groupLeave(scope), `You left the ${scope}.`, { scope, action: "leave" });
  }

  // The leader invites a player by name; the player gets an `invitation` event (or finds it in
  // the roster) and accepts it by joining.
  async _invite(scope, group, input) {
    const username = input.value.trim();
    this._say("");
    try {
      await this.api.groupInvite(scope, group.id, username);
    } catch (failure) {
      this._say(membershipWords(failure, { scope, action: "invite", username, me: this.me }), "error");
      return;
    }
    input.value = "";
    this._say(`${username} is invited to your ${scope}: they can accept from their page.`);
    this.log(`You invited ${username} to your ${scope} ${group.name}.`);
  }

  // --- invitations ----------------------------------------------------------------------

  // One notice per invitation, live or kept while the player was away (docs/protocol.md §4,
  // "Invitations"); the roster lists it too, in case the notice goes unseen.
  _invited(frame) {
    const from = frame.from?.username;
    const text = from
      ? `${from} invites you to join the ${frame.kind} ${frame.name}.`
      : `You are invited to join the ${frame.kind} ${frame.name}.`;
    this.log(text, frame.timestamp);
    toast(`${text}${this._wouldLeave(frame.kind)}`, {
      kind: "info",
      title: "Invitation",
      key: invitationKey(frame),
      ms: INVITATION_TOAST_MS,
      action: { label: "Accept", onClick: () => this._accept(frame) },
    });
    this.refreshSoon(); // the roster's list of invitations
  }

  // Joining another guild (or party) moves the player out of the one they are in: say so first.
  _wouldLeave(scope) {
    const current = this.me[scope];
    return current ? ` Accepting moves you out of ${current.name}.` : "";
  }

  async _accept(invitation) {
    dismissToast(invitationKey(invitation));
    const done = await this._change(
      () => this.api.groupJoin(invitation.kind, invitation.group_id),
      `You joined the ${invitation.kind} ${invitation.name}.`,
      { scope: invitation.kind, action: "accept" },
    );
    if (done) return;
    // The boxes may be scrolled out of sight (a phone): the toast was the player's view of it.
    toast($("#social-error").textContent, { kind: "error", title: "Invitation" });
  }

  // --- rendering ------------------------------------------------------------------------

  render() {
    const roster = this.roster;
    if (!roster) return;
    this._renderInvitations(roster.invitations || []);
    this._renderBox("guild", roster.guild, roster.guilds);
    this._renderBox("party", roster.party, roster.parties);
  }

  _renderInvitations(invitations) {
    const box = $("#invitations-box");
    box.hidden = !invitations.length;
    const shown = invitations.map(({ id, kind, group_id: groupId, name, from, expires_at: expiresAt }) => ({
      id,
      kind,
      group_id: groupId,
      name,
      from: from?.username ?? null,
      expires_at: expiresAt,
    }));
    replaceIfChanged($("#invitations"), shown, () => shown.map((invitation) => this._invitation(invitation)));
  }

  _invitation(invitation) {
    const from = invitation.from ? ` from ${invitation.from}` : "";
    return el(
      "li",
      { dataset: { kind: invitation.kind, groupId: invitation.group_id, name: invitation.name } },
      el("span", {}, `${invitation.name} (${invitation.kind})${from}`),
      el("span", { class: "status-text" }, `until ${day(invitation.expires_at)}`),
      el(
        "button",
        {
          type: "button",
          class: "small",
          title: `Join ${invitation.name}`,
          onclick: () => this._accept(invitation),
        },
        "Accept",
      ),
    );
  }

  // A box is rebuilt only when the player's group (or who leads it) changes, and its lists only
  // when they change: a load must not wipe a name being typed, take the focus, or pull a button
  // from under a click.
  _renderBox(scope, group, others) {
    const box = $(`#${scope}-box`);
    const leading = Boolean(group && group.leader === this.me.id);
    const shape = group ? `member:${group.id}:${leading ? "leader" : "member"}` : "none";
    if (box.dataset.shape !== shape) {
      box.dataset.shape = shape;
      box.replaceChildren(...(group ? this._memberBox(scope, group, leading) : this._joinBox(scope)));
    }
    if (group) {
      $("h3", box).textContent = `${scope === "guild" ? "Guild" : "Party"}: ${group.name}`;
      const access = $(".access", box);
      access.textContent = group.open ? "open to anyone" : "invitation only";
      access.dataset.open = String(Boolean(group.open));
      const shown = { ...group, members: group.members.map((m) => this._shownMember(m)) };
      replaceIfChanged($("ul.members", box), shown, () => shown.members.map((m) => this._member(m, shown)));
      return;
    }
    const list = $("ul.joinable", box);
    list.hidden = $(".joinable-title", box).hidden = !others.length;
    replaceIfChanged(list, others, () => others.map((other) => this._joinable(scope, other)));
  }

  // While our own game connection is open we are online, whatever an older snapshot says.
  _shownMember(member) {
    if (member.id !== this.me.id || this.socket.state !== "open" || member.status !== "offline") return member;
    return { ...member, status: this.statusSelect.value || "online" };
  }

  _memberBox(scope, group, leading) {
    const parts = [
      el("h3", {}),
      el(
        "p",
        { class: "group-id" },
        el("span", { class: "access" }),
        el(
          "button",
          {
            type: "button",
            class: "small danger",
            dataset: { action: `${scope}-leave` },
            onclick: () => this._leave(scope),
          },
          "leave",
        ),
      ),
    ];
    if (leading) {
      const input = el("input", {
        name: "username",
        placeholder: "Player name",
        required: true,
        maxlength: "32",
        autocomplete: "off",
        "aria-label": `Invite a player to your ${scope} by name`,
      });
      parts.push(
        el(
          "form",
          {
            class: "inline",
            dataset: { action: `${scope}-invite` },
            onsubmit: (event) => {
              event.preventDefault();
              this._invite(scope, group, input);
            },
          },
          input,
          el("button", {}, "Invite"),
        ),
      );
    } else {
      parts.push(el("p", { class: "hint" }, `Only the ${scope}'s leader (★) can invite players.`));
    }
    parts.push(el("ul", { class: "members", dataset: { scope } }));
    return parts;
  }

  _joinBox(scope) {
    const plural = scope === "guild" ? "guilds" : "parties";
    const nameInput = el("input", {
      name: "name",
      placeholder: scope === "guild" ? "Guild name" : "Party name (optional)",
      maxlength: "64",
      required: scope === "guild",
      "aria-label": `New ${scope} name`,
    });
    const openBox = el("input", { type: "checkbox", name: "open", "aria-label": `Anyone may join the new ${scope}` });
    return [
      el("h3", {}, `No ${scope}`),
      el(
        "form",
        {
          class: "inline create",
          dataset: { action: `${scope}-create` },
          onsubmit: (event) => {
            event.preventDefault();
            this._create(scope, nameInput.value.trim(), openBox.checked);
          },
        },
        nameInput,
        el(
          "label",
          { class: "check", title: "Unticked, players join only when you invite them" },
          openBox,
          " open to anyone",
        ),
        el("button", {}, "Create"),
      ),
      el("p", { class: "hint joinable-title" }, `Open ${plural} to join:`),
      el("ul", { class: "joinable", dataset: { scope } }),
      el("p", { class: "hint" }, `To join ${plural} that are not open, you need an invitation from their leader.`),
    ];
  }

  _joinable(scope, other) {
    return el(
      "li",
      { dataset: { id: other.id, name: other.name } },
      `${other.name} (${other.members})`,
      el("button", { type: "button", class: "small", onclick: () => this._join(scope, other.id, other.name) }, "join"),
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

function invitationKey(invitation) {
  return `invitation|${invitation.kind}|${invitation.group_id}`;
}

function day(iso) {
  return new Date(iso).toLocaleDateString([], { day: "numeric", month: "short" });
}

// A refused membership change in the player's words (docs/protocol.md §8 lists the answers).
// The server's `detail` is written for developers and can name ids: it stays out of the page.
function membershipWords(failure, { scope, action, username = "", me = null }) {
  const status = failure?.status;
  if (status === 0) return "The server cannot be reached: try again in a moment.";
  if (status === 401) return "Your session has ended: please log in again.";
  if (status === 429) return "You are doing that too fast: wait a moment.";
  if (!status || status >= 500) return "Something went wrong on our side: try again in a moment.";
  const kind = scope;
  const Kind = kind === "guild" ? "Guild" : "Party";
  const words = {
    create: {
      400: `${Kind} names are 2 to 64 characters that show something.`,
      409: `There is a ${kind} with that name already: pick another name.`,
    },
    join: {
      403: `That ${kind} is invitation-only: ask its leader to invite you.`,
      404: `That ${kind} does not exist any more.`,
      409: "That party is full.",
    },
    accept: {
      403: "That invitation has expired or was withdrawn: ask for a new one.",
      404: `That ${kind} does not exist any more.`,
      409: "That party is full for now: try again later.",
    },
    leave: { 409: `You are not in a ${kind}.` },
    invite: {
      400:
        username.toLowerCase() === me?.username?.toLowerCase()
          ? "You cannot invite yourself."
          : `“${username}” cannot be invited.`,
      403: `Only the ${kind}'s leader can invite players.`,
      404: `There is no player called “${username}”.`,
      409: `${username} is in your ${kind} already.`,
    },
  }[action];
  return words?.[status] || "That did not work: please try again.";
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
