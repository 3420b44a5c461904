// Live updates: the realtime WebSocket, with long polling (GET /api/v1/events) as the fallback.
//
// Every event carries the user's change sequence `seq`; the client remembers the last one and
// resumes from it after any drop (`?since=` on the WebSocket, `since=` on the long poll), so a
// network outage loses nothing. "resync" (the server no longer has the log that far back)
// asks the app to load its state again.
import { ApiError, api, getToken } from "./api";
import type { ClientConfig, LiveEvent } from "./types";

export type LiveState = "connecting" | "live" | "polling" | "offline";

interface Callbacks {
  onEvent: (event: LiveEvent) => void;
  onResync: () => void;
  onState: (state: LiveState) => void;
}

const MAX_BACKOFF_MS = 15_000;
const WS_FAILURES_BEFORE_POLLING = 2;
const POLL_SECONDS = 25;

export class LiveEvents {
  private seq: number;
  private socket: WebSocket | null = null;
  private stopped = false;
  private failures = 0;
  private timer: number | undefined;
  private poller: AbortController | null = null;

  constructor(
    private readonly config: ClientConfig,
    since: number,
    private readonly callbacks: Callbacks,
  ) {
    this.seq = since;
    window.addEventListener("online", this.reconnectNow);
  }

  start(): void {
    this.connect();
  }

  stop(): void {
    this.stopped = true;
    window.removeEventListener("online", this.reconnectNow);
    window.clearTimeout(this.timer);
    this.poller?.abort();
    this.socket?.close(1000);
  }

  /** The state was reloaded at this sequence (after a resync). */
  resetTo(seq: number): void {
    this.seq = seq;
  }

  private readonly reconnectNow = (): void => {
    if (this.stopped || this.socket) return;
    window.clearTimeout(this.timer);
    this.failures = 0;
    this.poller?.abort();
    this.connect();
  };

  private url(): string {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const token = encodeURIComponent(getToken() ?? "");
    const { port, path, url } = this.config.realtime;
    const base = url ?? `${scheme}://${location.hostname}:${port}${path}`;
    return `${base}?token=${token}&since=${this.seq}`;
  }

  private deliver(event: LiveEvent): void {
    if (event.type === "ready") return;
    if (event.type === "resync") {
      this.seq = event.seq;
      this.callbacks.onResync();
      return;
    }
    if (event.seq <= this.seq) return; // already seen (a replay overlapping live events)
    this.seq = event.seq;
    this.callbacks.onEvent(event);
  }

  private connect(): void {
    if (this.stopped) return;
    if (this.failures >= WS_FAILURES_BEFORE_POLLING) {
      void this.poll();
      return;
    }
    this.callbacks.onState("connecting");
    let opened = false;
    let socket: WebSocket;
    try {
      socket = new WebSocket(this.url());
    } catch {
      this.failures += 1;
      this.retry();
      return;
    }
    this.socket = socket;
    socket.onopen = () => {
      opened = true;
    };
    socket.onmessage = (message) => {
      let event: LiveEvent;
      try {
        event = JSON.parse(String(message.data)) as LiveEvent;
      } catch {
        return;
      }
      if (event.type === "ready") {
        this.failures = 0;
        this.callbacks.onState("live");
      }
      this.deliver(event);
    };
    socket.onclose = (close) => {
      this.socket = null;
      if (this.stopped) return;
      if (close.code === 4401) {
        this.callbacks.onState("offline"); // the token is no longer valid
        return;
      }
      if (!opened) this.failures += 1;
      this.retry();
    };
  }

  private retry(): void {
    this.callbacks.onState("connecting");
    const delay = Math.min(MAX_BACKOFF_MS, 500 * 2 ** Math.min(this.failures, 5));
    this.timer = window.setTimeout(() => this.connect(), delay * (0.75 + Math.random() / 2));
  }

  /** Long polling until the WebSocket works again (it is retried every few polls). */
  private async poll(): Promise<void> {
    this.callbacks.onState("polling");
    let rounds = 0;
    while (!this.stopped) {
      this.poller = new AbortController();
      try {
        const page = await api<{ events: LiveEvent[]; latest: number }>(
          `/events?since=${this.seq}&timeout=${POLL_SECONDS}`,
          { signal: this.poller.signal },
        );
        this.callbacks.onState("polling");
        for (const event of page.events) this.deliver(event);
        if (!page.events.length) this.seq = Math.max(this.seq, page.latest);
      } catch (error) {
        if (this.stopped || (error as Error).name === "AbortError") return;
        if (error instanceof ApiError && error.status === 410) {
          this.callbacks.onResync();
          return; // the app reloads and starts a new LiveEvents
        }
        if (error instanceof ApiError && error.status === 401) {
          this.callbacks.onState("offline");
          return;
        }
        this.callbacks.onState("offline");
        await new Promise((resolve) => setTimeout(resolve, 3000));
      }
      rounds += 1;
      if (rounds % 4 === 0) {
        // Try the WebSocket again now and then: the outage may have been short.
        this.failures = 0;
        this.connect();
        return;
      }
    }
  }
}
