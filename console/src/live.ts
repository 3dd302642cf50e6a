import { ApiError, streamSse } from './api.js';

/**
 * Live updates for the current page: GET /events (the gateway's SSE relay of the EVENTS stream,
 * /work/briefs/events-contract.md), filtered by subject; each event refreshes the page (debounced).
 * Where the gateway has no /events (404) the page polls every 2 s instead; while the stream is
 * broken it polls and reconnects with Last-Event-ID. `stop()` ends both.
 */
export type LiveMode = 'events' | 'polling' | 'off';
export const liveStatus = { mode: 'off' as LiveMode, onChange: (_m: LiveMode) => {} };

const POLL_MS = 2000;

function setMode(mode: LiveMode) {
  if (liveStatus.mode === mode) return;
  liveStatus.mode = mode;
  liveStatus.onChange(mode);
}

export function live(subjects: string[], refresh: () => void | Promise<void>): () => void {
  const controller = new AbortController();
  let timer: ReturnType<typeof setTimeout> | undefined;
  let poller: ReturnType<typeof setInterval> | undefined;
  let lastId: string | undefined;
  const debounced = () => {
    clearTimeout(timer);
    timer = setTimeout(() => void refresh(), 150);
  };
  const startPolling = () => {
    setMode('polling');
    poller ??= setInterval(() => void refresh(), POLL_MS);
  };
  const stopPolling = () => {
    if (poller) clearInterval(poller);
    poller = undefined;
    setMode('events');
  };
  const connect = async (attempt: number): Promise<void> => {
    const query = `/events?subjects=${encodeURIComponent(subjects.join(','))}`;
    try {
      await streamSse(
        query,
        controller.signal,
        (m) => {
          if (m.id) lastId = m.id;
          debounced();
        },
        lastId ? { 'last-event-id': lastId } : {},
        () => {
          stopPolling();
          if (attempt > 0) debounced(); // catch up on what happened while disconnected
          attempt = 0;
        },
      );
    } catch (err) {
      if (controller.signal.aborted) return;
      if (err instanceof ApiError && err.status === 404) return startPolling(); // no relay here: poll
    }
    if (controller.signal.aborted) return;
    startPolling();
    await new Promise((r) => setTimeout(r, 1000 * Math.min(attempt + 1, 10)));
    if (!controller.signal.aborted) return connect(attempt + 1);
  };
  void connect(0);
  return () => {
    controller.abort();
    clearTimeout(timer);
    if (poller) clearInterval(poller);
    setMode('off');
  };
}
