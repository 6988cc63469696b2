// flowrra-ui-flask: live updates over Server-Sent Events. A WSGI server cannot accept a
// WebSocket, so the page's `new WebSocket("<mount>/ws")` gets this stand-in: an
// EventSource on "<mount>/events" that delivers the same JSON messages ({type: "ready"}
// first, then task events). When the stream fails it reports "close", and the page falls
// back to polling every 15 s and retries, as it does for a WebSocket.
(() => {
  "use strict";
  const Native = window.WebSocket;
  const BASE = new URL("..", document.currentScript.src);

  class EventStreamSocket extends EventTarget {
    constructor(url) {
      super();
      const target = new URL(url);
      const live = new URL("ws", BASE);
      if (target.host !== live.host || target.pathname !== live.pathname) {
        return new Native(url); // not the page's live stream
      }
      this.source = new EventSource(new URL("events", BASE));
      this.closed = false;
      this.source.addEventListener("message", (message) => {
        this.dispatchEvent(new MessageEvent("message", { data: message.data }));
      });
      this.source.addEventListener("error", () => this.close());
    }

    close() {
      if (this.closed) return;
      this.closed = true;
      this.source.close(); // the page reconnects itself, with its own backoff
      this.dispatchEvent(new Event("close"));
    }
  }

  window.WebSocket = EventStreamSocket;
})();
