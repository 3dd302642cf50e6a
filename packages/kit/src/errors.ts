/** An error with an HTTP status whose message is safe to show the caller. */
export class HttpError extends Error {
  constructor(
    readonly statusCode: number,
    message: string,
  ) {
    super(message);
    this.name = 'HttpError';
  }
}

export const badRequest = (message: string) => new HttpError(400, message);
export const unauthorized = (message: string) => new HttpError(401, message);
export const forbidden = (message: string) => new HttpError(403, message);
export const notFound = (message = 'The requested resource was not found') => new HttpError(404, message);
export const conflict = (message: string) => new HttpError(409, message);

/** The body every Dockyard error has, as the four original APIs send it. */
export interface ErrorBody {
  error: string;
}

/**
 * Whether `text` holds a control character (C0 or DEL). Names with one are refused: NUL cannot be
 * stored in PostgreSQL text, and the others forge log lines, listings and file names.
 */
export const hasControlCharacter = (text: string): boolean => /[\0-\x1f\x7f]/.test(text);
