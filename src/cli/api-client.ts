/** The CLI's client of the control plane API; `WEFT_SERVER` picks the control plane, `WEFT_ADMIN_TOKEN` (or the saved credentials) proves who may use it. */
import { adminTokenFor, credentialsFile } from './credentials.js';

export const DEFAULT_SERVER = 'http://127.0.0.1:15010';

/** The control plane answered with an error, or could not be reached. */
export class ApiError extends Error {
  readonly status: number;
  readonly body: unknown;
  constructor(status: number, message: string, body: unknown = null) {
    super(message);
    this.status = status;
    this.body = body;
  }
}

export function serverUrl(): string {
  return (process.env.WEFT_SERVER ?? DEFAULT_SERVER).replace(/\/+$/, '');
}

/** Calls the API; resolves with the JSON body and status (200 or 422), rejects with ApiError when unreachable or on any other error. */
export async function api<T>(method: string, path: string, body?: { text: string; type: string }): Promise<{ status: number; body: T }> {
  const url = `${serverUrl()}${path}`;
  let res: Response;
  const token = adminTokenFor(serverUrl());
  if (token === null && path !== '/api/v1/health') throw new ApiError(401, `${method} ${path}: ${noTokenHint()}`);
  try {
    res = await fetch(url, {
      method,
      headers: { ...(body !== undefined ? { 'content-type': body.type } : {}), ...(token !== null ? { authorization: `Bearer ${token}` } : {}) },
      ...(body !== undefined ? { body: body.text } : {}),
      signal: AbortSignal.timeout(15_000),
    });
  } catch (err) {
    const cause = (err as { cause?: { code?: string } }).cause?.code ?? (err as Error).message;
    throw new ApiError(0, `cannot reach the control plane at ${serverUrl()} (${cause}). Is "weft control" or "weft up" running? WEFT_SERVER picks another.`);
  }
  const text = await res.text();
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw new ApiError(res.status, `${method} ${url}: HTTP ${res.status}, not JSON: ${text.slice(0, 200)}`);
  }
  // 422 carries per-resource results the caller reports; every other error is one message.
  if (res.status === 401) {
    throw new ApiError(401, `${method} ${path}: refused: ${token === null ? noTokenHint() : wrongTokenHint()}`, parsed);
  }
  if (res.status >= 400 && res.status !== 422) {
    const e = (parsed as { error?: { message?: string } }).error;
    throw new ApiError(res.status, e?.message ?? `HTTP ${res.status}`, parsed);
  }
  return { status: res.status, body: parsed as T };
}

/** The `authorization` header for the API, when the CLI has an admin token for the server. */
export function authHeaders(): Record<string, string> {
  const token = adminTokenFor(serverUrl());
  return token === null ? {} : { authorization: `Bearer ${token}` };
}

function noTokenHint(): string {
  return `no admin token for ${serverUrl()}: set WEFT_ADMIN_TOKEN (weft control printed it on its first start and keeps it in admin-token in its data dir), or run the CLI where ${credentialsFile()} has it`;
}

/** Why a token was refused, naming where it came from. */
export function wrongTokenHint(): string {
  return `the admin token from ${process.env.WEFT_ADMIN_TOKEN ? 'WEFT_ADMIN_TOKEN' : credentialsFile()} is not this control plane's (its own is in admin-token in its data dir)`;
}
