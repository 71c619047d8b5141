// What the page knows: who I am, the server link, who is online, invitations, and the
// conversations with their messages and unread counts. Events from the peer change it.

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
    this.current = null;
    this.notices = [];            // {id, text, kind, actions: [{label, command}]}
    this.nextNotice = 1;
  }

  talk(user) {
    let talk = this.talks.get(user);
    if (talk === undefined) {
      talk = { user, live: false, route: "", via: "", messages: new Map(), unread: 0 };
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
    return total;
  }

  get waiting() {
    // What the title counts: unread messages and invitations not yet answered.
    return this.unread + this.invitations.size;
  }

  show(user) {
    this.current = user;
    if (user !== null) this.talk(user).unread = 0;
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
        const talk = this.talk(event.user);
        for (const id of event.ids) {
          const message = talk.messages.get(id);
          if (message) talk.messages.set(id, { ...message, shipped: true });
        }
        break;
      }
      case "error":
        this.notice(`Error: ${event.reason}`, "problem");
        break;
    }
  }

  open(info, focus) {
    const talk = this.talk(info.user);
    talk.live = info.live;
    talk.route = info.route;
    talk.via = info.via || "";
    for (const message of info.history) this.add(info.user, message, true);
    talk.unread += info.unread || 0;
    if (focus || this.current === null) this.show(info.user);
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
