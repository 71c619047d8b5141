// Wires the page together: the connection feeds the model, the model is drawn by the
// view, and what the user does becomes a command to the peer.

import { Connection } from "./connection.js";
import { Model } from "./state.js";
import { View } from "./view.js";

const model = new Model();
let view;

function visible() {
  return document.visibilityState === "visible";
}

const connection = new Connection(
  (event) => {
    model.apply(event, visible());
    view.render();
  },
  (up, why) => {
    model.pageLink = up;
    model.pageWhy = why || "";
    view.render();
  },
);

function send(command) {
  if (!connection.send(command)) {
    model.notice("Not connected to the peer right now: try again in a moment.", "problem");
    view.render();
    return false;
  }
  return true;
}

view = new View(model, {
  invite(user) {
    if (model.talks.get(user)?.live) model.show(user); // talking already: go back to it
    else if (send({ type: "invite", user })) model.notice(`Inviting ${user}…`, "info", [], `invite:${user}`);
    view.render();
  },
  accept(id) {
    send({ type: "accept", id });
  },
  refuse(id) {
    send({ type: "refuse", id });
  },
  show(user) {
    model.show(user);
    view.render();
  },
  showGroup(id) {
    model.showGroup(id);
    if (!model.groups.get(id)?.loaded) send({ type: "open_group", group: id });
    view.render();
  },
  removeMember(group, user) {
    send({ type: "group_remove", group, user });
  },
  notice(id, command) {
    model.dismiss(id);
    if (command) send(command);
    view.render();
  },
});

document.getElementById("composer").addEventListener("submit", (event) => {
  event.preventDefault();
  const box = document.getElementById("message");
  const body = box.value;
  if (body.trim() === "") return;
  if (model.currentGroup !== null) {
    if (send({ type: "group_send", group: model.currentGroup, body })) box.value = "";
  } else if (model.current !== null && send({ type: "send", user: model.current, body })) {
    box.value = "";
  }
});

document.getElementById("message").addEventListener("keydown", (event) => {
  if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
    event.preventDefault();
    document.getElementById("composer").requestSubmit();
  }
});

document.getElementById("leave").addEventListener("click", () => {
  if (model.currentGroup !== null) send({ type: "group_leave", group: model.currentGroup });
  else if (model.current !== null) send({ type: "leave", user: model.current });
});

// New group: a name, the online users ticked, and names typed (for those away).
const groupForm = document.getElementById("group-form");
const newGroup = document.getElementById("new-group");
function showGroupForm(open) {
  groupForm.hidden = !open;
  newGroup.setAttribute("aria-expanded", String(open));
  if (open) document.getElementById("group-name").focus();
}
newGroup.addEventListener("click", () => showGroupForm(groupForm.hidden));
document.getElementById("group-cancel").addEventListener("click", () => showGroupForm(false));
groupForm.addEventListener("submit", (event) => {
  event.preventDefault();
  const name = document.getElementById("group-name").value.trim();
  const typed = document.getElementById("group-others").value.split(/[\s,]+/).filter((user) => user);
  const ticked = [...view.chosen].filter((user) => model.online.has(user)); // boxes still shown
  const members = [...new Set([...ticked, ...typed])];
  if (!name || members.length === 0) {
    model.notice("A group needs a name and at least one other member.", "problem");
    view.render();
    return;
  }
  if (send({ type: "create_group", name, members })) {
    groupForm.reset();
    view.chosen.clear();
    view.choices = null;
    showGroupForm(false);
  }
});

document.getElementById("add-member").addEventListener("submit", (event) => {
  event.preventDefault();
  const input = document.getElementById("add-name");
  const user = input.value.trim();
  if (model.currentGroup !== null && user && send({ type: "group_add", group: model.currentGroup, user })) {
    input.value = "";
  }
});

document.getElementById("open-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const input = document.getElementById("open-name");
  const user = input.value.trim();
  if (user && send({ type: "open", user })) input.value = "";
});

document.addEventListener("visibilitychange", () => {
  if (visible() && model.current !== null) {
    model.show(model.current);
    view.render();
  } else if (visible() && model.currentGroup !== null) {
    model.showGroup(model.currentGroup);
    view.render();
  }
});

view.render();
connection.open();
