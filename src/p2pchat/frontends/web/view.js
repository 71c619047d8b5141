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
    this.tabs();
    this.notices();
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
      this.messages(group.messages, `Chat in the group ${group.name}`);
      return;
    }
    if (talk === undefined) return;
    this.$("talk-title").textContent = talk.live ? `Talking with ${talk.user}` : `${talk.user} (by mail)`;
    this.$("talk-route").textContent = talk.live ? routeText(talk) : "";
    this.$("leave").hidden = !talk.live;
    this.$("leave").textContent = "Leave";
    this.$("composer").hidden = false;
    this.messages(talk.messages, `Chat with ${talk.user}`);
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

  messages(messages, label) {
    const model = this.model;
    const list = this.$("messages");
    list.setAttribute("aria-label", label);
    const atBottom = list.scrollTop + list.clientHeight >= list.scrollHeight - 4;
    list.replaceChildren();
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
    if (atBottom) list.scrollTop = list.scrollHeight;
  }
}
