// What the page knows: who I am, the server link, who is online, invitations, the
// conversations and the groups with their messages and unread counts. Events from the
// peer change it. One talk is shown at a time: a user's (current) or a group's
// (currentGroup, its id), never both.

export class Model {
  constructor() {
    this.name = "";
    this.fingerprint = "";
    this.link = "connecting";   // the peer's link to its signalling server
    this.pageLink = false;      // this page's link to the peer
    this.pageWhy = "";          // why it is down: lost, stopped, gone
    this.online = new Set();
    this.invitations = new Map(); // id -> {id, sender, fingerprint}
    this.talks = new Map();       // user -> {user, live, route, via, messages: Map, unread}
    this.files = new Map();       // id -> {id, user, name, size, done, state, outgoing, error, download}
    this.groups = new Map();      // id -> {id, name, admin, members, member, messages: Map, unread, loaded}
    this.current = null;
    this.currentGroup = null;
    this.notices = [];            // {id, text, kind, actions: [{label, command}]}
    this.search = null;           // {text, matches: [{user, message, marks, group, group_name}], reason, pending}
    this.target = null;           // {user, id} or {group, id}: a message to scroll to once it is loaded
    this.nextNotice = 1;
  }

  talk(user) {
    let talk = this.talks.get(user);
    if (talk === undefined) {
      talk = {
        user, live: false, route: "", via: "", messages: new Map(), unread: 0,
        older: false,     // the store holds messages before the first one here
        loading: false,   // an "older" command is on its way
        prepended: false, // older messages were put in front: the view keeps its place
      };
      this.talks.set(user, talk);
    }
    return talk;
  }

  notice(text, kind = "info", actions = [], key = null) {
    // A notice with a key replaces the one before it with that key ("inviting bob"...).
    if (key !== null) this.notices = this.notices.filter((n) => n.key !== key);
    this.notices.push({ id: this.nextNotice++, text, kind, actions, key });
    // Keep the last few; a notice that asks for a decision stays until it is answered.
    while (this.notices.filter((n) => n.actions.length === 0).length > 5) {
      this.notices.splice(this.notices.findIndex((n) => n.actions.length === 0), 1);
    }
  }

  dismiss(id) {
    this.notices = this.notices.filter((n) => n.id !== id);
  }

  get unread() {
    let total = 0;
    for (const talk of this.talks.values()) total += talk.unread;
    for (const group of this.groups.values()) total += group.unread;
    return total;
  }

  get waiting() {
    // What the title counts: unread messages and invitations not yet answered.
    return this.unread + this.invitations.size;
  }

  show(user) {
    this.current = user;
    this.currentGroup = null;
    if (user !== null) this.talk(user).unread = 0;
  }

  showGroup(id) {
    const group = this.groups.get(id);
    if (group === undefined) return;
    this.current = null;
    this.currentGroup = id;
    group.unread = 0;
  }

  get shownGroup() {
    return this.currentGroup === null ? undefined : this.groups.get(this.currentGroup);
  }

  group(info, focus) {
    // A group as the peer lists it; its history (when sent) comes first, then what
    // arrived before it did.
    let group = this.groups.get(info.id);
    if (group === undefined) {
      group = { id: info.id, messages: new Map(), unread: 0, loaded: false };
      this.groups.set(info.id, group);
    }
    Object.assign(group, { name: info.name, admin: info.admin, members: info.members, member: info.member });
    if (!info.older || info.history.length > 0) {
      const messages = new Map(info.history.map((m) => [m.id, m]));
      for (const [id, message] of group.messages) if (!messages.has(id)) messages.set(id, message);
      group.messages = messages;
      group.loaded = true;
    }
    group.unread += info.unread || 0;
    if (focus) this.showGroup(info.id);
  }

  groupMessage(id, message, seen) {
    const group = this.groups.get(id);
    if (group === undefined) return; // a group not listed yet: its history will hold it
    const known = group.messages.get(message.id);
    group.messages.set(message.id, known ? { ...known, shipped: known.shipped || message.shipped } : message);
    if (!known && message.sender !== this.name && !seen) group.unread += 1;
  }

  add(user, message, seen) {
    const talk = this.talk(user);
    const known = talk.messages.get(message.id);
    talk.messages.set(message.id, known ? { ...known, shipped: known.shipped || message.shipped } : message);
    if (!known && message.sender !== this.name && !seen) talk.unread += 1;
  }

  apply(event, visible) {
    switch (event.type) {
      case "snapshot":
        this.name = event.name;
        this.fingerprint = event.fingerprint;
        this.link = event.state;
        this.online = new Set(event.online);
        this.invitations = new Map(event.invitations.map((i) => [i.id, i]));
        for (const info of event.talks) this.open(info, false);
        this.files = new Map((event.files || []).map((f) => [f.id, f]));
        break;
      case "file":
        this.files.set(event.file.id, event.file);
        break;
      case "state":
        this.link = event.state;
        break;
      case "online":
        this.online = new Set(event.users);
        break;
      case "presence":
        if (event.online) this.online.add(event.user);
        else this.online.delete(event.user);
        break;
      case "invited":
        this.invitations.set(event.invitation.id, event.invitation);
        break;
      case "invitation_gone":
        this.invitations.delete(event.id);
        break;
      case "outcome":
        this.outcome(event);
        break;
      case "key_changed":
        this.notice(
          `Warning: the key of ${event.user} changed. Remembered ${event.old}, now ${event.new}. ` +
            `Check with ${event.user} by another channel before trusting the new key.`,
          "problem",
          [
            {
              label: "Trust the new key",
              command: event.action === "invite"
                ? { type: "invite", user: event.user, trust: true }
                : { type: "accept", id: event.id, trust: true },
            },
            { label: "Do not trust it", command: null },
          ],
        );
        break;
      case "talk":
        this.open(event.talk, true);
        break;
      case "talk_ended": {
        const talk = this.talk(event.user);
        talk.live = false;
        if (event.by_me) {
          this.notice(`You left the conversation with ${event.user}. What you write now goes by mail.`);
        } else {
          const reason = event.reason.replace(`${event.user} left: `, "").replace(`${event.user} left`, "");
          this.notice(
            `${event.user} left the conversation${reason ? ` (${reason})` : ""}. What you write now goes by mail.`,
          );
        }
        break;
      }
      case "message": {
        const seen = visible && this.current === event.user;
        this.add(event.user, event.message, seen);
        break;
      }
      case "route": {
        const talk = this.talk(event.user);
        talk.route = event.route;
        talk.via = event.via;
        break;
      }
      case "shipped": {
        const talk = this.talks.get(event.user); // not a talk: group messages are marked apart
        for (const id of event.ids) {
          const message = talk?.messages.get(id);
          if (message) talk.messages.set(id, { ...message, shipped: true });
        }
        break;
      }
      case "found":
        this.search = { text: event.text, matches: event.matches, reason: event.reason, pending: false };
        break;
      case "history": {
        const talk = this.talk(event.user);
        talk.loading = false;
        talk.prepended = event.messages.length > 0;
        this.merge(talk, event.messages, event.older);
        break;
      }
      case "group":
        this.group(event.group, event.focus);
        if (event.added) {
          this.notice(`${event.group.admin} added you to the group ${event.group.name}.`, "info", [
            { label: "Open it", command: { type: "open_group", group: event.group.id } },
            { label: "Dismiss", command: null },
          ]);
        }
        break;
      case "group_members": {
        const group = this.groups.get(event.group);
        if (group === undefined) break;
        if (group.member && !event.member) {
          this.notice(`You are no longer in the group ${group.name}. Its history stays here.`);
        }
        Object.assign(group, { admin: event.admin, members: event.members, member: event.member });
        break;
      }
      case "group_message":
        this.groupMessage(event.group, event.message, visible && this.currentGroup === event.group);
        break;
      case "group_shipped": {
        const group = this.groups.get(event.group);
        for (const id of event.ids) {
          const message = group?.messages.get(id);
          if (message) group.messages.set(id, { ...message, shipped: true });
        }
        break;
      }
      case "error":
        this.notice(`Error: ${event.reason}`, "problem");
        for (const talk of this.talks.values()) talk.loading = false; // an "older" failed, maybe
        break;
    }
  }

  open(info, focus) {
    const talk = this.talk(info.user);
    talk.live = info.live;
    talk.route = info.route;
    talk.via = info.via || "";
    this.merge(talk, info.history, info.older);
    talk.unread += info.unread || 0;
    if (focus || (this.current === null && this.currentGroup === null)) this.show(info.user);
  }

  merge(talk, messages, older) {
    // Messages from the store (a talk's history, an older page) among those held, in the
    // talk's order: sent_at, then id, then sender. ``older`` is about what comes before
    // the first of ``messages``: it holds for the talk if that is the talk's first now.
    for (const message of messages) this.add(talk.user, message, true);
    const key = (m) => [m.sent_at, m.id, m.sender];
    const before = (a, b) => {
      const [x, y] = [key(a), key(b)];
      for (let i = 0; i < 3; i++) if (x[i] !== y[i]) return x[i] < y[i] ? -1 : 1;
      return 0;
    };
    talk.messages = new Map([...talk.messages.values()].sort(before).map((m) => [m.id, m]));
    const first = talk.messages.values().next().value;
    if (messages.length === 0 || (first !== undefined && messages[0].id === first.id)) talk.older = older;
  }

  outcome(event) {
    const words = {
      talking: null,
      refused: `${event.user} refused the invitation${event.reason ? `: ${event.reason}` : ""}.`,
      offline: `${event.user} is offline: what you write is sealed to them and delivered when they log in.`,
      timed_out: `${event.user} did not answer in time.`,
      unreachable: `${event.user} could not be reached: ${event.reason}`,
      error: `Could not invite ${event.user}: ${event.reason}`,
    }[event.outcome];
    const key = `invite:${event.user}`;
    if (words) this.notice(words, event.outcome === "offline" ? "info" : "problem", [], key);
    else this.notices = this.notices.filter((n) => n.key !== key); // talking: shown as a talk
  }
}
