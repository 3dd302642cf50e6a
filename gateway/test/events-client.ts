/**
 * A minimal Server-Sent Events client over node:http for the /events tests and benchmark: keeps
 * every event and comment, and resolves waits as soon as what they wait for arrives.
 */
import http from 'node:http';

export interface SseEvent {
  id: string;
  event: string;
  data: string;
}

export class SseClient {
  readonly events: SseEvent[] = [];
  readonly comments: string[] = [];
  status = 0;
  body = '';
  ended = false;
  /** Called for every event as it is parsed (the benchmark timestamps here). */
  onEvent: ((e: SseEvent) => void) | null = null;
  private buffer = '';
  private waiters: (() => void)[] = [];
  private req!: http.ClientRequest;
  private res: http.IncomingMessage | null = null;

  /** Opens `url`; resolves once the stream is subscribed (`: connected`) or answered with an error status. */
  static open(url: string, headers: Record<string, string> = {}): Promise<SseClient> {
    const client = new SseClient();
    return new Promise((resolve, reject) => {
      client.req = http.get(url, { headers: { accept: 'text/event-stream', ...headers } }, (res) => {
        client.res = res;
        client.status = res.statusCode ?? 0;
        res.setEncoding('utf8');
        if (client.status !== 200) {
          res.on('data', (c: string) => (client.body += c));
          res.on('end', () => resolve(client));
          return;
        }
        res.on('data', (chunk: string) => {
          client.feed(chunk);
          if (client.comments.includes('connected')) resolve(client);
        });
        res.on('end', () => client.finish());
        res.on('close', () => client.finish());
        res.on('error', () => client.finish());
      });
      client.req.on('error', (err) => (client.status ? client.finish() : reject(err)));
    });
  }

  /** The parsed JSON payloads of the events received so far. */
  payloads<T = Record<string, unknown>>(): T[] {
    return this.events.map((e) => JSON.parse(e.data) as T);
  }

  /** Waits until `check()` holds (re-checked on every event, comment and the end of the stream). */
  async waitFor(check: () => boolean, what: string, ms = 60_000): Promise<void> {
    if (check()) return;
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${what}: not reached within ${ms} ms (got ${this.events.length} events)`)), ms);
      const waiter = () => {
        if (!check()) {
          if (!this.ended) return;
          clearTimeout(timer);
          this.waiters = this.waiters.filter((w) => w !== waiter);
          reject(new Error(`${what}: the stream ended first (got ${this.events.length} events; last comment ${JSON.stringify(this.comments.at(-1))})`));
          return;
        }
        clearTimeout(timer);
        this.waiters = this.waiters.filter((w) => w !== waiter);
        resolve();
      };
      this.waiters.push(waiter);
    });
  }

  /** Waits for an event whose payload `id` (the event uuid) is `eventId`. */
  waitForEvent(eventId: string, ms?: number): Promise<void> {
    return this.waitFor(() => this.events.some((e) => e.data.includes(`"id":"${eventId}"`)), `event ${eventId}`, ms);
  }

  /** Stops reading without closing: the server's writes back up (back-pressure tests). */
  pause(): void {
    this.res?.pause();
  }

  resume(): void {
    this.res?.resume();
  }

  close(): void {
    this.req.destroy();
    this.finish();
  }

  private finish(): void {
    this.ended = true;
    this.notify();
  }

  private notify(): void {
    for (const w of [...this.waiters]) w();
  }

  private feed(chunk: string): void {
    this.buffer += chunk;
    let end: number;
    while ((end = this.buffer.indexOf('\n\n')) >= 0) {
      const block = this.buffer.slice(0, end);
      this.buffer = this.buffer.slice(end + 2);
      const e: SseEvent = { id: '', event: 'message', data: '' };
      const data: string[] = [];
      for (const line of block.split('\n')) {
        if (line.startsWith(':')) this.comments.push(line.slice(1).trim());
        else if (line.startsWith('id: ')) e.id = line.slice(4);
        else if (line.startsWith('event: ')) e.event = line.slice(7);
        else if (line.startsWith('data: ')) data.push(line.slice(6));
      }
      if (data.length) {
        e.data = data.join('\n');
        this.events.push(e);
        this.onEvent?.(e);
      }
    }
    this.notify();
  }
}
