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
