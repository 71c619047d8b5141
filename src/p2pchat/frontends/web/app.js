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
    pursue();
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

// Ask for the messages before the first one a talk holds (scrolled to its top, or
// looking for a message a search found there).
function older(talk) {
  const first = talk.messages.values().next().value;
  if (!talk.older || talk.loading || first === undefined) return;
  const before = { id: first.id, sender: first.sender, sent_at: first.sent_at };
  if (send({ type: "older", user: talk.user, before })) {
    talk.loading = true;
    view.render();
  }
}

// Going to a message a search found: its talk (a user's or a group's) is opened, then
// older pages are loaded until the message is among them, then it is scrolled to.
function pursue() {
  const target = model.target;
  if (target === null) return;
  if (target.group !== undefined) {
    // A group's talk holds its newest messages only (no older pages for groups yet).
    const group = model.groups.get(target.group);
    if (group === undefined || !group.loaded || model.currentGroup !== target.group) return;
    model.target = null;
    if (group.messages.has(target.id)) {
      view.reveal(target.id);
    } else {
      model.notice("That message is older than what this page shows of the group.", "problem");
      view.render();
    }
    return;
  }
  const talk = model.talks.get(target.user);
  if (talk === undefined || model.current !== target.user) return; // its talk is on its way
  if (talk.messages.has(target.id)) {
    model.target = null;
    view.reveal(target.id);
  } else if (talk.older) {
    older(talk);
  } else {
    model.target = null;
    model.notice("That message is no longer in the talk.", "problem");
    view.render();
  }
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
  older(user) {
    const talk = model.talks.get(user);
    if (talk !== undefined) older(talk);
  },
  find(match) {
    if (match.group) {
      // A group's match: its talk (asked for if this page has not loaded it yet).
      model.target = { group: match.group, id: match.message.id };
      const group = model.groups.get(match.group);
      if (group?.loaded) {
        model.showGroup(match.group);
        view.render();
        pursue();
      } else {
        send({ type: "open_group", group: match.group });
      }
      return;
    }
    model.target = { user: match.user, id: match.message.id };
    if (model.talks.has(match.user)) {
      model.show(match.user);
      view.render();
      pursue();
    } else {
      send({ type: "open", user: match.user });
    }
  },
  answerFile(id, accept) {
    send({ type: "file_answer", id, accept });
  },
  cancelFile(id) {
    send({ type: "file_cancel", id });
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

document.getElementById("search-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const text = document.getElementById("search-text").value.trim();
  if (text && send({ type: "search", text })) {
    model.search = { text, matches: [], reason: "", pending: true };
    view.render();
  }
});

document.getElementById("messages").addEventListener("scroll", (event) => {
  const talk = model.current === null ? undefined : model.talks.get(model.current);
  if (talk !== undefined && event.target.scrollTop < 40) older(talk);
});

// A file goes to the peer's own web server (this page's origin, its cookie), which offers
// it to the user of the conversation shown; its progress comes back as events.
async function upload(file) {
  const user = model.current;
  if (!file) return;
  if (user === null) {
    if (model.currentGroup !== null) {
      model.notice("A file goes to one person: send it from your talk with them.", "problem");
      view.render();
    }
    return;
  }
  const key = `upload:${file.name}`;
  model.notice(`Offering ${file.name} to ${user}…`, "info", [], key);
  view.render();
  try {
    const query = new URLSearchParams({ user, name: file.name });
    const answer = await fetch(`upload?${query}`, {
      method: "POST",
      body: file,
      headers: { "Content-Type": "application/octet-stream" },
    });
    if (answer.ok) model.notices = model.notices.filter((n) => n.key !== key);
    else model.notice(`Could not send ${file.name}: ${(await answer.text()).trim()}`, "problem", [], key);
  } catch (error) {
    model.notice(`Could not send ${file.name}: ${error}`, "problem", [], key);
  }
  view.render();
}

document.getElementById("file-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const input = document.getElementById("file-pick");
  const file = input.files[0];
  input.value = "";
  upload(file);
});

const talkArea = document.getElementById("talk");
talkArea.addEventListener("dragover", (event) => {
  if (event.dataTransfer?.types.includes("Files")) event.preventDefault();
});
talkArea.addEventListener("drop", (event) => {
  event.preventDefault();
  for (const file of event.dataTransfer?.files || []) upload(file);
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
