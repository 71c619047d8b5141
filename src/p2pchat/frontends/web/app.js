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

// Going to a message a search found: its talk is opened, then older pages are loaded
// until the message is among them, then it is scrolled to.
function pursue() {
  const target = model.target;
  if (target === null) return;
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
  if (model.current === null || body.trim() === "") return;
  if (send({ type: "send", user: model.current, body })) box.value = "";
});

document.getElementById("message").addEventListener("keydown", (event) => {
  if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
    event.preventDefault();
    document.getElementById("composer").requestSubmit();
  }
});

document.getElementById("leave").addEventListener("click", () => {
  if (model.current !== null) send({ type: "leave", user: model.current });
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
  if (user === null || !file) return;
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
  }
});

view.render();
connection.open();
