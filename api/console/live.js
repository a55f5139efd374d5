// The WebSocket, kept open: it reconnects after a restart and resumes the log's topics from
// the last position it saw, so that nothing is missed and nothing arrives twice.

const MAX_BACKOFF_MS = 4000;

export class Live {
  constructor(token, onState) {
    this.token = token;
    this.onState = onState;
    this.topics = new Map(); // topic -> {handler, fromLog, position}
    this.ws = null;
    this.backoff = 250;
    this.closed = false;
    this.timer = null;
  }

  start() {
    this.closed = false;
    this.connect();
  }

  // Subscribe `topic`; with `fromPosition`, from the log (every item after it, then live).
  subscribe(topic, handler, options = {}) {
    const entry = {
      handler,
      fromLog: options.fromPosition !== undefined,
      position: options.fromPosition ?? 0,
    };
    this.topics.set(topic, entry);
    this.send(this.subscription(topic, entry));
    return () => {
      if (this.topics.get(topic) === entry) {
        this.topics.delete(topic);
        this.send({ op: "unsubscribe", topics: [topic] });
      }
    };
  }

  subscription(topic, entry) {
    const message = { op: "subscribe", topics: [topic] };
    if (entry.fromLog) message.from_position = entry.position;
    return message;
  }

  send(message) {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(message));
  }

  connect() {
    if (this.closed) return;
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const url = `${scheme}://${location.host}/api/advanced-ai/streaming/ws?token=${encodeURIComponent(this.token())}`;
    const ws = new WebSocket(url);
    this.ws = ws;
    this.onState("connecting");
    ws.onopen = () => {
      this.backoff = 250;
      this.onState("live");
      for (const [topic, entry] of this.topics) this.send(this.subscription(topic, entry));
    };
    ws.onmessage = (message) => this.receive(JSON.parse(message.data));
    ws.onclose = () => {
      if (this.ws !== ws) return;
      this.ws = null;
      if (this.closed) return;
      this.onState("reconnecting");
      this.timer = setTimeout(() => this.connect(), this.backoff);
      this.backoff = Math.min(this.backoff * 2, MAX_BACKOFF_MS);
    };
  }

  receive(message) {
    if (message.type === "event") {
      const entry = this.topics.get(message.topic);
      if (entry) entry.handler(message.payload);
    } else if (message.type === "events") {
      // A page of the log's items for a topic served from it, in order.
      const entry = this.topics.get(message.topic);
      if (!entry) return;
      for (const payload of message.payloads) {
        entry.position = payload.position;
        entry.handler(payload);
      }
    } else if (message.type === "position") {
      // Nothing of ours up to there: resume from it.
      for (const entry of this.topics.values()) {
        if (entry.fromLog) entry.position = Math.max(entry.position, message.position);
      }
    } else if (message.type === "error") {
      this.onState("error", message.error);
    }
  }

  close() {
    this.closed = true;
    clearTimeout(this.timer);
    if (this.ws) this.ws.close(1000);
    this.ws = null;
  }
}
