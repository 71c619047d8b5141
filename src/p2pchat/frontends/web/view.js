// The page, drawn from the model. Text goes in with textContent only: a message or a name
// is never read as HTML, whatever it holds.

function element(tag, text, attributes = {}) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = text;
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
  return node;
}

function button(label, onClick, attributes = {}) {
  const node = element("button", label, { type: "button", ...attributes });
  node.addEventListener("click", onClick);
  return node;
}

// "direct (punched)": the route, and how the connection was made.
function routeText(talk) {
  return talk.via && talk.via !== "relayed" ? `${talk.route} (${talk.via})` : talk.route;
}

function time(seconds) {
  return new Date(seconds * 1000).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
}

function when(seconds) {
  return new Date(seconds * 1000).toLocaleString([], { dateStyle: "short", timeStyle: "short" });
}

// A body with what a search matched in <mark>: each piece as text, never as HTML.
function marked(body, marks) {
  const node = element("span", null, { class: "body" });
  let done = 0;
  for (const [start, end] of marks) {
    if (start < done || end > body.length) continue; // not ours to trust blindly
    node.append(document.createTextNode(body.slice(done, start)), element("mark", body.slice(start, end)));
    done = end;
  }
  node.append(document.createTextNode(body.slice(done)));
  return node;
}

export class View {
  constructor(model, actions) {
    this.model = model;
    this.actions = actions;
    this.$ = (id) => document.getElementById(id);
    this.chosen = new Set(); // the online users ticked in the New group form
    this.choices = null;     // the online list the form's boxes were drawn for
  }

  render() {
    const model = this.model;
    this.$("me-name").textContent = model.name || "…";
    this.$("me-fingerprint").textContent = model.fingerprint;
    const link = this.$("link-state");
    const down = {
      stopped: "the peer has stopped (trying again)",
      gone: "cannot reach the peer: if you restarted it, open the new address it printed",
    };
    link.textContent = model.pageLink ? model.link : down[model.pageWhy] || "lost (reconnecting)";
    link.className = `link ${model.pageLink ? model.link : "lost"}`;
    this.online();
    this.invitations();
    this.groups();
    this.files();
    this.tabs();
    this.notices();
    this.results();
    this.talk();
    const waiting = model.waiting;
    document.title = `${waiting ? `(${waiting}) ` : ""}p2pchat${model.name ? ` — ${model.name}` : ""}`;
  }

  online() {
    const list = this.$("online");
    list.replaceChildren();
    for (const user of [...this.model.online].sort()) {
      const item = element("li");
      item.append(element("span", user));
      if (this.model.talks.get(user)?.live) item.append(element("span", "talking", { class: "muted" }));
      if (user !== this.model.name) {
        item.append(button("Talk", () => this.actions.invite(user), { "aria-label": `Talk with ${user}` }));
      } else {
        item.append(element("span", "(you)", { class: "muted" }));
      }
      list.append(item);
    }
  }

  invitations() {
    const list = this.$("invitations");
    list.replaceChildren();
    for (const invitation of this.model.invitations.values()) {
      const item = element("li", null, { "aria-label": `Invitation from ${invitation.sender}` });
      item.append(element("span", `${invitation.sender} invites you to talk`, { class: "who" }));
      item.append(element("span", invitation.fingerprint, { class: "fp", title: "their fingerprint, as the server vouches for it" }));
      item.append(button("Accept", () => this.actions.accept(invitation.id)));
      item.append(button("Refuse", () => this.actions.refuse(invitation.id)));
      list.append(item);
    }
    if (this.model.invitations.size === 0) list.append(element("li", "none", { class: "muted" }));
  }

  groups() {
    const list = this.$("groups");
    list.replaceChildren();
    for (const group of this.model.groups.values()) {
      const item = element("li");
      item.append(element("span", group.name));
      const count = group.members.length;
      item.append(element("span", group.member ? `${count} member${count === 1 ? "" : "s"}` : "left", { class: "muted" }));
      item.append(button("Open", () => this.actions.showGroup(group.id), { "aria-label": `Open the group ${group.name}` }));
      list.append(item);
    }
    if (this.model.groups.size === 0) list.append(element("li", "none", { class: "muted" }));
    // The New group form's boxes: drawn again only when the online list changes, so that
    // a box being ticked keeps its focus.
    const others = [...this.model.online].filter((user) => user !== this.model.name).sort();
    const key = others.join("\n");
    if (key === this.choices) return;
    this.choices = key;
    const boxes = this.$("group-online");
    boxes.replaceChildren();
    for (const user of others) {
      const label = element("label");
      const box = element("input", null, { type: "checkbox", value: user });
      box.checked = this.chosen.has(user);
      box.addEventListener("change", () => (box.checked ? this.chosen.add(user) : this.chosen.delete(user)));
      label.append(box, document.createTextNode(` ${user}`));
      boxes.append(label);
    }
    if (others.length === 0) boxes.append(element("span", "no one else online", { class: "muted" }));
  }

  files() {
    const list = this.$("files");
    list.replaceChildren();
    const states = { offered: "offered", accepted: "going", done: "done", refused: "refused", cancelled: "cancelled", failed: "failed" };
    for (const file of [...this.model.files.values()].reverse()) {
      const way = file.outgoing ? `to ${file.user}` : `from ${file.user}`;
      const item = element("li", null, { "aria-label": `File ${file.name} ${way}` });
      item.append(element("span", `${file.name} ${way}`, { class: "who" }));
      const share = file.size ? Math.floor((file.done * 100) / file.size) : 100;
      item.append(element("progress", null, {
        max: String(Math.max(file.size, 1)),
        value: String(file.size ? file.done : 1),
        "aria-label": `${file.name}: ${share}%`,
      }));
      item.append(element("span", `${states[file.state] || file.state}, ${share}%`, { class: "muted", "data-state": file.state }));
      if (file.error) item.append(element("span", file.error, { class: "problem" }));
      if (file.state === "offered" && !file.outgoing) {
        item.append(button("Accept", () => this.actions.answerFile(file.id, true), { "aria-label": `Accept ${file.name}` }));
        item.append(button("Refuse", () => this.actions.answerFile(file.id, false), { "aria-label": `Refuse ${file.name}` }));
      } else if (file.state === "accepted" || (file.state === "offered" && file.outgoing)) {
        item.append(button("Cancel", () => this.actions.cancelFile(file.id), { "aria-label": `Cancel ${file.name}` }));
      }
      if (file.download) {
        item.append(element("a", `Download ${file.name}`, { href: file.download, download: file.name }));
      }
      list.append(item);
    }
    if (this.model.files.size === 0) list.append(element("li", "none", { class: "muted" }));
  }

  tabs() {
    const list = this.$("tabs");
    list.replaceChildren();
    for (const talk of this.model.talks.values()) {
      const item = element("li");
      const name = talk.unread ? `${talk.user}, ${talk.unread} unread` : talk.user;
      const label = element("button", null, {
        type: "button",
        "aria-current": String(talk.user === this.model.current),
        "aria-label": name,
      });
      label.append(element("span", talk.user));
      if (talk.live) label.append(element("span", routeText(talk), { class: "route" }));
      else label.append(element("span", "mail", { class: "off", title: "no talk open: messages go by mail" }));
      if (talk.unread) label.append(element("span", String(talk.unread), { class: "unread" }));
      label.addEventListener("click", () => this.actions.show(talk.user));
      item.append(label);
      list.append(item);
    }
    for (const group of this.model.groups.values()) {
      const item = element("li");
      const name = `${group.name} (group)${group.unread ? `, ${group.unread} unread` : ""}`;
      const label = element("button", null, {
        type: "button",
        "aria-current": String(group.id === this.model.currentGroup),
        "aria-label": name,
      });
      label.append(element("span", group.name));
      label.append(element("span", "group", { class: "route" }));
      if (group.unread) label.append(element("span", String(group.unread), { class: "unread" }));
      label.addEventListener("click", () => this.actions.showGroup(group.id));
      item.append(label);
      list.append(item);
    }
  }

  notices() {
    const box = this.$("notices");
    box.replaceChildren();
    for (const notice of this.model.notices) {
      const item = element("div", null, { class: `notice ${notice.kind}` });
      item.append(element("span", notice.text));
      const actions = element("div", null, { class: "actions" });
      for (const action of notice.actions) {
        actions.append(button(action.label, () => this.actions.notice(notice.id, action.command)));
      }
      if (notice.actions.length === 0) actions.append(button("Dismiss", () => this.actions.notice(notice.id, null)));
      item.append(actions);
      box.append(item);
    }
  }

  results() {
    const search = this.model.search;
    const list = this.$("results");
    list.replaceChildren();
    let state = "";
    if (search !== null) {
      const count = search.matches.length;
      if (search.pending) state = `Searching for ${search.text}…`;
      else if (search.reason) state = `Cannot search for that: ${search.reason}`;
      else state = `${count === 0 ? "Nothing" : count === 1 ? "1 message" : `${count} messages`} found for ${search.text}`;
      for (const match of search.pending ? [] : search.matches) {
        const message = match.message;
        const from = message.sender === this.model.name ? "you" : message.sender;
        const to = message.recipient === this.model.name ? "you" : message.recipient;
        // A group's match: who wrote it, and in which group (its talk opens on a click).
        const where = match.group ? `in the group ${match.group_name || "you left"}` : `to ${to}`;
        const item = element("li");
        const open = button(null, () => this.actions.find(match), { class: "result" });
        open.append(element("span", `${from} ${where}, ${when(message.sent_at)}`, { class: "meta" }));
        open.append(marked(message.body, match.marks));
        item.append(open);
        list.append(item);
      }
    }
    this.$("search-state").textContent = state;
  }

  reveal(id) {
    // Scroll the talk to the message ``id`` and mark it for a moment: where a search led.
    for (const item of this.$("messages").children) {
      if (item.dataset.id !== id) continue;
      item.classList.add("found");
      item.scrollIntoView({ block: "center" });
      setTimeout(() => item.classList.remove("found"), 4000);
      return true;
    }
    return false;
  }

  talk() {
    const model = this.model;
    const group = model.shownGroup;
    const talk = model.current === null ? undefined : model.talks.get(model.current);
    this.$("talk").hidden = talk === undefined && group === undefined;
    this.$("empty").hidden = talk !== undefined || group !== undefined;
    this.$("group-panel").hidden = group === undefined;
    if (group !== undefined) {
      this.$("talk-title").textContent = group.member ? `Group ${group.name}` : `Group ${group.name} (you left it)`;
      this.$("talk-route").textContent = "";
      this.$("leave").hidden = !group.member;
      this.$("leave").textContent = "Leave group";
      this.$("composer").hidden = !group.member;
      this.members(group);
      this.$("file-form").hidden = true; // a file goes to one person: from their talk
      this.messages(group.messages, `Chat in the group ${group.name}`);
      return;
    }
    if (talk === undefined) return;
    this.$("talk-title").textContent = talk.live ? `Talking with ${talk.user}` : `${talk.user} (by mail)`;
    this.$("talk-route").textContent = talk.live ? routeText(talk) : "";
    this.$("leave").hidden = !talk.live;
    this.$("leave").textContent = "Leave";
    this.$("composer").hidden = false;
    this.$("file-form").hidden = false;
    this.messages(talk.messages, `Chat with ${talk.user}`, talk);
  }

  members(group) {
    const model = this.model;
    const admin = group.member && group.admin === model.name;
    const list = this.$("members");
    list.replaceChildren();
    for (const user of group.members) {
      const item = element("li");
      item.append(element("span", user));
      if (user === group.admin) item.append(element("span", "admin", { class: "muted" }));
      if (user === model.name) item.append(element("span", "(you)", { class: "muted" }));
      else if (admin) {
        item.append(button("Remove", () => this.actions.removeMember(group.id, user), { "aria-label": `Remove ${user} from the group` }));
      }
      list.append(item);
    }
    this.$("add-member").hidden = !admin;
  }

  messages(messages, label, talk = null) {
    // A talk's or a group's messages; a talk's (``talk``) page back through older ones.
    const model = this.model;
    const list = this.$("messages");
    list.setAttribute("aria-label", label);
    const atBottom = list.scrollTop + list.clientHeight >= list.scrollHeight - 4;
    const fromBottom = list.scrollHeight - list.scrollTop;
    list.replaceChildren();
    if (talk?.older) {
      // Scrolling to the top loads them; the button too (a short talk does not scroll).
      const more = element("li", null, { class: "more" });
      if (talk.loading) more.textContent = "Loading older messages…";
      else more.append(button("Older messages", () => this.actions.older(talk.user)));
      list.append(more);
    }
    for (const message of messages.values()) {
      if (message.notice) { // a change of members, said by the group's software: a line
        list.append(element("li", `${message.sender}: ${message.body}`, { class: "change", "data-id": message.id }));
        continue;
      }
      const mine = message.sender === model.name;
      const item = element("li", null, { class: mine ? "mine" : "theirs", "data-id": message.id });
      item.append(element("span", message.body, { class: "body" }));
      const meta = element("span", null, { class: "meta" });
      meta.append(document.createTextNode(`${mine ? "you" : message.sender}, ${time(message.sent_at)}`));
      if (mine) {
        meta.append(document.createTextNode(" · "));
        meta.append(element("span", message.shipped ? "delivered" : "not yet delivered", {
          class: message.shipped ? "delivered" : "pending",
          "data-shipped": String(message.shipped),
        }));
      }
      item.append(meta);
      list.append(item);
    }
    if (talk?.prepended) {
      list.scrollTop = list.scrollHeight - fromBottom; // older above: stay on what was read
      talk.prepended = false;
    } else if (atBottom) {
      list.scrollTop = list.scrollHeight;
    }
  }
}
