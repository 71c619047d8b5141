// The one WebSocket to this peer's web server: typed JSON events in, commands out.
// It connects again by itself (1 s, 2 s, ... 10 s) when the page's server goes away.

export class Connection {
  constructor(onEvent, onLink) {
    this.onEvent = onEvent;
    this.onLink = onLink;
    this.socket = null;
    this.delay = 1000;
  }

  open() {
    const socket = new WebSocket(`ws://${location.host}/ws`);
    this.socket = socket;
    socket.addEventListener("open", () => {
      this.delay = 1000;
      this.onLink(true);
    });
    socket.addEventListener("message", (frame) => {
      let event;
      try {
        event = JSON.parse(frame.data);
      } catch {
        return; // not ours: ignore
      }
      this.onEvent(event);
    });
    socket.addEventListener("close", () => {
      this.onLink(false);
      setTimeout(() => this.open(), this.delay);
      this.delay = Math.min(this.delay * 2, 10000);
    });
  }

  send(command) {
    if (this.socket === null || this.socket.readyState !== WebSocket.OPEN) {
      return false;
    }
    this.socket.send(JSON.stringify(command));
    return true;
  }
}
