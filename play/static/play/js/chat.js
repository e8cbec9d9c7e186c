// The chat panel (/ws/chat): global, guild, party and private tabs, typing indicators, and
// history paged backwards with `before` as the player scrolls up.

import { CONNECTION_ERRORS } from "./socket.js";
import { $, clock, describeError, el } from "./ui.js";

const PAGE_SIZE = 30;
const TYPING_REPEAT_MS = 3000; // the server passes one `true` per 3 s; repeat while typing goes on
const TYPING_IDLE_MS = 3000; // no keystroke for this long: send `false`
const TYPING_SHOWN_MS = 6000; // receivers hide an indicator 6 s after the last `true`
const LOAD_OLDER_AT_PX = 40;

function conversationKey(channel, withUser) {
  return channel === "private" ? `private:${withUser}` : channel;
}

export class Chat {
  constructor(socket, { me, log }) {
    this.socket = socket;
    this.me = me;
    this.log = log;
    this.conversations = new Map();
    this.active = "global";
    this.typingShown = new Map(); // conversation key → Map(user id → {username, until})
    this.typingSent = null; // {key, at}: typing in this conversation (at: our last `true`, 0 = none yet)
    this.lastTrueAt = new Map(); // conversation key → when we last sent `is_typing: true`
    this._typingIdle = null;
    this._typingRetry = null;

    this.tabs = $("#chat-tabs");
    this.list = $("#chat-messages");
    this.typingLine = $("#chat-typing");
    this.input = $("#chat-input");
    this.errorLine = $("#chat-error");

    for (const channel of ["global", "guild", "party"]) this._conversation(channel, null, channel);
    $("#chat-form").addEventListener("submit", (event) => {
      event.preventDefault();
      this.sendCurrent();
    });
    this.input.addEventListener("input", () => this._typed());
    this.input.addEventListener("blur", () => this._stopTyping());
    this.list.addEventListener("scroll", () => {
      if (this.list.scrollTop < LOAD_OLDER_AT_PX) this.loadOlder(this.current);
    });
    setInterval(() => this._renderTyping(), 1000);

    socket.on("connection_established", (frame) => this._connected(frame));
    socket.on("resync", (event) => this._lost(event));
    socket.on("chat_message", (frame) => this._received(frame));
    socket.on("typing", (frame) => this._typingReceived(frame));
    socket.on("moderation_event", (frame) => this._moderation(frame));
    socket.on("error", (frame) => {
      if (CONNECTION_ERRORS.has(frame.code)) return false;
      this.showError(frame);
      return true;
    });
    this.setMembership(me);
  }

  get current() {
    return this.conversations.get(this.active);
  }

  _conversation(channel, withUser, title) {
    const key = conversationKey(channel, withUser);
    let conv = this.conversations.get(key);
    if (!conv) {
      conv = {
        key,
        channel,
        with: withUser, // the other player, for private conversations
        title,
        messages: [], // oldest first
        ids: new Set(), // message ids held, so nothing shows twice
        hasMore: true, // older messages exist on the server
        loaded: false, // the first page has been fetched
        loading: false,
        unread: 0,
        enabled: true, // guild/party: only while a member
      };
      this.conversations.set(key, conv);
    }
    return conv;
  }

  _reset(conv) {
    conv.messages = [];
    conv.ids.clear();
    conv.hasMore = true;
    conv.loaded = false;
    conv.unread = 0;
  }

  // Guild and party chat always mean the *current* guild or party (docs/protocol.md).
  setMembership(me) {
    const previous = this.me;
    this.me = me;
    for (const scope of ["guild", "party"]) {
      const conv = this.conversations.get(scope);
      const now = me[scope];
      conv.enabled = Boolean(now);
      const label = scope === "guild" ? "Guild" : "Party";
      conv.title = now ? `${label}: ${now.name}` : label;
      if ((previous[scope]?.id || null) !== (now?.id || null)) this._reset(conv);
    }
    if (!this.current?.enabled) this.select("global");
    else if (!this.current.loaded) this.loadOlder(this.current);
    this.render();
  }

  openPrivate(userId, username) {
    if (!userId || userId === this.me.id) return;
    const conv = this._conversation("private", userId, username);
    conv.title = username || conv.title;
    this.select(conv.key);
    this.input.focus();
  }

  select(key) {
    if (key !== this.active) this._stopTyping();
    this.active = key;
    const conv = this.current;
    conv.unread = 0;
    this.render({ stickToBottom: true });
    if (!conv.loaded) this.loadOlder(conv);
  }

  // --- server frames --------------------------------------------------------------------

  _connected(frame) {
    // Back after a gap. A server that recovers streams (docs/protocol.md §12) sends the global,
    // guild and party messages that were missed itself (they count as unread), and says which
    // of those conversations it cannot recover ("resync", below): only those are read again.
    // Private messages are not a stream: the server keeps them for a player it knows is away,
    // but one sent during a silent drop it had not noticed yet went into the dead connection,
    // so open private conversations are checked. Against an older server, every conversation
    // shown is.
    if (frame.reconnected) {
      for (const conv of this.conversations.values()) {
        if (conv.loaded && conv.enabled && (!frame.recovering || conv.channel === "private")) this._resync(conv);
      }
    }
    if (!this.current.loaded) this.loadOlder(this.current);
  }

  // A chat stream whose missed messages will not come ("chat:global", "chat:guild:<id>", …):
  // fetch the newest page of that conversation and merge it. A guild or party left meanwhile
  // is not the one on show.
  _lost(event) {
    const [kind, channel, id] = event.stream.split(":");
    if (kind !== "chat") return;
    if (channel !== "global" && this.me[channel]?.id !== id) return;
    const conv = this.conversations.get(channel);
    if (conv?.loaded && conv.enabled) this._resync(conv);
  }

  // The newest history page, merged by message_id. If it does not overlap what we hold, more
  // was missed than a page: the conversation restarts from that page. Messages newer than the
  // newest we held are new to the player, as if they had come live: unread on their tab.
  async _resync(conv) {
    try {
      const reply = await this.socket.request(this._historyFrame(conv, null));
      const newest = conv.messages.at(-1)?.timestamp ?? "";
      const overlaps = reply.messages.some((m) => conv.ids.has(m.message_id));
      if (!overlaps && reply.has_more) {
        const unread = conv.unread;
        this._reset(conv);
        conv.unread = unread;
        conv.loaded = true;
        conv.hasMore = true;
      }
      let fresh = 0;
      for (const message of reply.messages) {
        if (this._add(conv, message) && message.timestamp > newest && message.user_id !== this.me.id) fresh += 1;
      }
      if (conv.key === this.active) this.render({ stickToBottom: true });
      else {
        conv.unread += fresh;
        this.renderTabs();
      }
    } catch (error) {
      if (conv.key === this.active) this.showError(error);
    }
  }

  _historyFrame(conv, before) {
    const frame = { type: "history_request", channel: conv.channel, limit: PAGE_SIZE };
    if (conv.with) frame.with = conv.with;
    if (before) frame.before = before;
    return frame;
  }

  // The first page, or the page before the oldest message we hold.
  async loadOlder(conv) {
    if (!conv || !conv.enabled || conv.loading || (conv.loaded && !conv.hasMore)) return;
    if (this.socket.state !== "open") return; // the reconnect loads it
    conv.loading = true;
    this.renderLoading();
    const before = conv.loaded ? conv.messages[0]?.message_id : null;
    const heightBefore = this.list.scrollHeight;
    try {
      const reply = await this.socket.request(this._historyFrame(conv, before));
      for (const message of reply.messages) this._add(conv, message);
      conv.hasMore = reply.has_more;
      conv.loaded = true;
    } catch (error) {
      if (conv.key === this.active) this.showError(error);
    } finally {
      conv.loading = false;
    }
    if (conv.key !== this.active) return;
    if (before) {
      // Keep the message the player was looking at in place while older ones appear above it.
      this.render();
      this.list.scrollTop += this.list.scrollHeight - heightBefore;
    } else {
      this.render({ stickToBottom: true });
    }
    // A first page that does not fill the box leaves nothing to scroll: fetch another.
    if (conv.hasMore && this.list.scrollHeight <= this.list.clientHeight) this.loadOlder(conv);
  }

  _received(message) {
    const other = message.user_id === this.me.id ? message.to : message.user_id;
    const conv =
      message.channel === "private"
        ? this._conversation("private", other, message.user_id === this.me.id ? null : message.user)
        : this.conversations.get(message.channel);
    if (!conv) return;
    if (!conv.title && message.user_id !== this.me.id) conv.title = message.user;
    if (!this._add(conv, message)) return;
    this._clearTyping(conv.key, message.user_id);
    if (conv.key === this.active) this.render({ stickToBottom: this._nearBottom() });
    else {
      conv.unread += 1;
      this.renderTabs();
    }
  }

  // Insert in timestamp order, once (a message can come live and in a history page).
  _add(conv, message) {
    if (conv.ids.has(message.message_id)) return false;
    conv.ids.add(message.message_id);
    const list = conv.messages;
    let at = list.length;
    while (at > 0 && list[at - 1].timestamp > message.timestamp) at -= 1;
    list.splice(at, 0, message);
    return true;
  }

  _moderation(frame) {
    if (frame.action === "delete_message" && frame.message_id) {
      for (const conv of this.conversations.values()) {
        if (!conv.ids.delete(frame.message_id)) continue;
        conv.messages = conv.messages.filter((m) => m.message_id !== frame.message_id);
      }
      this.render();
      return;
    }
    const reason = frame.reason ? `: ${frame.reason}` : "";
    this.log(`Moderator ${frame.moderator} applied ${frame.action} to a player${reason}.`);
  }

  // --- typing ---------------------------------------------------------------------------

  _typingFrame(conv, isTyping) {
    const frame = { type: "typing", channel: conv.channel, is_typing: isTyping };
    if (conv.with) frame.to = conv.with;
    return frame;
  }

  // The server passes one `is_typing: true` per conversation every 3 s: one sent sooner (say,
  // for the next message right after sending one) would be dropped, so it waits until then.
  _typed() {
    const conv = this.current;
    if (!this.input.value.trim()) {
      this._stopTyping();
      return;
    }
    if (this.typingSent && this.typingSent.key !== conv.key) this._stopTyping();
    if (!this.typingSent) this.typingSent = { key: conv.key, at: 0 };
    const now = Date.now();
    const due = Math.max((this.lastTrueAt.get(conv.key) || 0) + TYPING_REPEAT_MS, this.typingSent.at + TYPING_REPEAT_MS);
    if (now >= due) {
      if (this.socket.send(this._typingFrame(conv, true))) {
        this.typingSent.at = now;
        this.lastTrueAt.set(conv.key, now);
      }
    } else if (!this._typingRetry && !this.typingSent.at) {
      this._typingRetry = setTimeout(() => {
        this._typingRetry = null;
        if (this.typingSent?.key === conv.key) this._typed();
      }, due - now + 20);
    }
    clearTimeout(this._typingIdle);
    this._typingIdle = setTimeout(() => this._stopTyping(), TYPING_IDLE_MS);
  }

  _stopTyping() {
    clearTimeout(this._typingIdle);
    clearTimeout(this._typingRetry);
    this._typingRetry = null;
    const sent = this.typingSent;
    this.typingSent = null;
    if (!sent?.at) return; // nothing was announced
    const conv = this.conversations.get(sent.key);
    if (conv) this.socket.send(this._typingFrame(conv, false));
  }

  _typingReceived(frame) {
    const key = conversationKey(frame.channel, frame.user_id);
    if (!frame.is_typing) {
      this._clearTyping(key, frame.user_id);
      return;
    }
    if (!this.typingShown.has(key)) this.typingShown.set(key, new Map());
    this.typingShown.get(key).set(frame.user_id, { username: frame.user, until: Date.now() + TYPING_SHOWN_MS });
    this._renderTyping();
  }

  _clearTyping(key, userId) {
    this.typingShown.get(key)?.delete(userId);
    this._renderTyping();
  }

  // --- sending --------------------------------------------------------------------------

  // The server is the judge of what is valid (length, control characters, mute): whatever it
  // refuses comes back as an `error` and is shown under the input, which keeps the text.
  async sendCurrent() {
    const conv = this.current;
    const content = this.input.value;
    if (!content) return;
    const frame = { type: "chat_message", channel: conv.channel, content };
    if (conv.with) frame.to = conv.with;
    this._stopTyping();
    try {
      await this.socket.request(frame);
      this.input.value = "";
      this.errorLine.textContent = "";
    } catch (error) {
      this.showError(error);
    }
  }

  showError(error) {
    this.errorLine.textContent = `${clock()} ${describeError(error, "chat")}`;
    this.errorLine.dataset.code = error.code || "";
  }

  // --- rendering ------------------------------------------------------------------------

  _nearBottom() {
    return this.list.scrollHeight - this.list.scrollTop - this.list.clientHeight < 60;
  }

  render({ stickToBottom = false } = {}) {
    this.renderTabs();
    const conv = this.current;
    const items = conv.messages.map((message) => this._messageItem(message));
    if (conv.loaded && !conv.hasMore) items.unshift(el("li", { class: "msg-start" }, "Beginning of the conversation"));
    this.list.replaceChildren(...items);
    this.list.dataset.conversation = conv.key;
    if (stickToBottom) this.list.scrollTop = this.list.scrollHeight;
    this.input.placeholder =
      conv.channel === "private" ? `Whisper to ${conv.title}…` : `Say something in ${conv.title}…`;
    this._renderTyping();
  }

  renderLoading() {
    if (this.current.loading && !this.list.querySelector(".msg-loading")) {
      this.list.prepend(el("li", { class: "msg-loading" }, "Loading earlier messages…"));
    }
  }

  _messageItem(message) {
    const mine = message.user_id === this.me.id;
    return el(
      "li",
      { class: mine ? "msg mine" : "msg", dataset: { messageId: message.message_id, userId: message.user_id } },
      el("time", { datetime: message.timestamp }, clock(message.timestamp)),
      el(
        "button",
        {
          type: "button",
          class: "author",
          title: mine ? "you" : `Whisper to ${message.user}`,
          onclick: () => this.openPrivate(message.user_id, message.user),
        },
        message.user,
      ),
      el("span", { class: "content" }, message.content),
    );
  }

  renderTabs() {
    const tabs = [];
    for (const conv of this.conversations.values()) {
      const label = conv.channel === "private" ? `@${conv.title || "…"}` : conv.title;
      const tab = el(
        "button",
        {
          type: "button",
          class: conv.key === this.active ? "tab active" : "tab",
          dataset: { key: conv.key },
          disabled: !conv.enabled,
          title: conv.enabled ? "" : `Join a ${conv.channel} to chat here`,
          onclick: () => this.select(conv.key),
        },
        label,
        conv.unread ? el("span", { class: "badge" }, String(conv.unread)) : null,
      );
      tabs.push(tab);
    }
    this.tabs.replaceChildren(...tabs);
  }

  _renderTyping() {
    const now = Date.now();
    const shown = this.typingShown.get(this.active);
    const names = [];
    for (const [userId, entry] of shown || []) {
      if (entry.until <= now) shown.delete(userId);
      else names.push(entry.username);
    }
    this.typingLine.textContent = names.length ? `${names.join(", ")} ${names.length > 1 ? "are" : "is"} typing…` : "";
  }
}
