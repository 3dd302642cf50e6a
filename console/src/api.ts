/** Talking to the gateway's public APIs as the signed-in identity. */

const TOKEN_KEY = 'dockyard.token';

export interface Identity {
  id: string;
  login: string;
  admin: boolean;
  approved: boolean;
  groups: string[];
}

export const auth = {
  token: localStorage.getItem(TOKEN_KEY) ?? '',
  me: null as Identity | null,
  setToken(token: string) {
    this.token = token;
    if (token) localStorage.setItem(TOKEN_KEY, token);
    else localStorage.removeItem(TOKEN_KEY);
  },
  headers(extra: Record<string, string> = {}): Record<string, string> {
    return this.token ? { authorization: `Bearer ${this.token}`, ...extra } : extra;
  },
};

export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

async function fail(res: Response): Promise<never> {
  const text = await res.text().catch(() => '');
  let message = text || res.statusText;
  try {
    const body = JSON.parse(text) as { error?: string; message?: string };
    message = body.error ?? body.message ?? text;
  } catch {
    /* plain text */
  }
  throw new ApiError(res.status, `${res.status}: ${message}`);
}

/** fetch with the credential; throws ApiError with the API's `error` text on a non-2xx answer. */
export async function call(path: string, init: RequestInit = {}): Promise<Response> {
  const res = await fetch(path, { credentials: 'same-origin', ...init, headers: auth.headers((init.headers as Record<string, string>) ?? {}) });
  if (!res.ok) await fail(res);
  return res;
}

export async function getJson<T = unknown>(path: string): Promise<T> {
  return (await call(path)).json() as Promise<T>;
}

export async function sendJson<T = unknown>(method: string, path: string, body?: unknown): Promise<T> {
  const res = await call(path, {
    method,
    headers: body === undefined ? {} : { 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  return (text ? JSON.parse(text) : {}) as T;
}

export async function sendForm<T = unknown>(method: string, path: string, form: FormData | URLSearchParams): Promise<T> {
  const res = await call(path, { method, body: form });
  const text = await res.text();
  return (text ? JSON.parse(text) : {}) as T;
}

/** Downloads a protected file (the Authorization header cannot ride on a plain link). */
export async function download(path: string, fallbackName: string): Promise<void> {
  const res = await call(path);
  const disposition = res.headers.get('content-disposition') ?? '';
  const name = /filename\*?=(?:UTF-8'')?"?([^";]+)"?/i.exec(disposition)?.[1] ?? fallbackName;
  const url = URL.createObjectURL(await res.blob());
  const a = document.createElement('a');
  a.href = url;
  a.download = decodeURIComponent(name);
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
}

/** Reads a streaming body chunk by chunk (text), until it ends or `signal` aborts. */
export async function streamText(path: string, signal: AbortSignal, onText: (text: string) => void, headers: Record<string, string> = {}, onOpen?: () => void): Promise<Response> {
  const res = await call(path, { signal, headers });
  onOpen?.();
  if (!res.body) return res;
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      onText(value);
    }
  } catch (err) {
    if (!signal.aborted) throw err;
  }
  return res;
}

export interface SseMessage {
  id?: string;
  event: string;
  data: string;
}

/** Server-Sent Events over fetch (so the Authorization header can be sent). */
export async function streamSse(path: string, signal: AbortSignal, onMessage: (m: SseMessage) => void, headers: Record<string, string> = {}, onOpen?: () => void): Promise<Response> {
  let buffer = '';
  return streamText(
    path,
    signal,
    (text) => {
      buffer += text.replace(/\r\n?/g, '\n');
      for (let end = buffer.indexOf('\n\n'); end >= 0; end = buffer.indexOf('\n\n')) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        const message: SseMessage = { event: 'message', data: '' };
        const data: string[] = [];
        for (const line of block.split('\n')) {
          if (!line || line.startsWith(':')) continue;
          const colon = line.indexOf(':');
          const field = colon < 0 ? line : line.slice(0, colon);
          const value = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '');
          if (field === 'data') data.push(value);
          else if (field === 'event') message.event = value;
          else if (field === 'id') message.id = value;
        }
        if (data.length || message.id) onMessage({ ...message, data: data.join('\n') });
      }
    },
    headers,
    onOpen,
  );
}
