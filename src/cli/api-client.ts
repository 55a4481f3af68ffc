/** The CLI's client of the control plane API; `WEFT_SERVER` picks the control plane. */

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
  try {
    res = await fetch(url, {
      method,
      ...(body !== undefined ? { body: body.text, headers: { 'content-type': body.type } } : {}),
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
  if (res.status >= 400 && res.status !== 422) {
    const e = (parsed as { error?: { message?: string } }).error;
    throw new ApiError(res.status, e?.message ?? `HTTP ${res.status}`, parsed);
  }
  return { status: res.status, body: parsed as T };
}
