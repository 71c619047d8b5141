// The one WebSocket to this peer's web server: typed JSON events in, commands out.
// It connects again by itself (1 s, 2 s, ... 10 s) when the page's server goes away, and
// says why it is down: "stopped" (the peer said it is leaving), "lost" (the connection
// broke), "gone" (it has failed again and again: a restarted peer has a new address).

export class Connection {
  constructor(onEvent, onLink) {
    this.onEvent = onEvent;
    this.onLink = onLink;
    this.socket = null;
    this.delay = 1000;
    this.failures = 0;
    this.why = "lost";
  }

  open() {
    const socket = new WebSocket(new URL("ws", location.href).href.replace(/^http/, "ws"));
    this.socket = socket;
    socket.addEventListener("open", () => {
      this.delay = 1000;
      this.failures = 0;
      this.why = "lost";
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
    socket.addEventListener("close", (closing) => {
      if (closing.code === 1001) this.why = "stopped";
      else if (++this.failures >= 4) this.why = "gone";
      this.onLink(false, this.why);
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
