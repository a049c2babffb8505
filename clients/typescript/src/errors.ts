/**
 * Every failure surfaces as an {@link ApiError}: the API's JSON error body
 * (`{"error": {"code", "message", "field"}}`) with the HTTP status, or `status: 0` and code
 * `network_error` when no answer arrived.
 */

/** The codes the API documents (`ErrorDetail.code`), plus the client's own `network_error`. */
export type ErrorCode =
  | "invalid_field"
  | "bad_request"
  | "not_found"
  | "method_not_allowed"
  | "conflict"
  | "payload_too_large"
  | "rate_limited"
  | "unavailable"
  | "invalid_token"
  | "insufficient_scope"
  | "internal"
  | "network_error"
  | (string & {});

export class ApiError extends Error {
  override readonly name = "ApiError";
  constructor(
    /** HTTP status, 0 when the request got no answer. */
    readonly status: number,
    readonly code: ErrorCode,
    message: string,
    /** The offending field of an `invalid_field` error. */
    readonly field?: string,
    /** Seconds the API asked to wait (`Retry-After`) on 503 and 429. */
    readonly retryAfterSeconds?: number,
    /** `x-request-id` of the answer, for support. */
    readonly requestId?: string,
  ) {
    super(message);
  }

  /** True when sending the same request later may succeed (503, 429, no answer). */
  get retryable(): boolean {
    return this.status === 503 || this.status === 429 || this.status === 0;
  }
}

/** Builds the error of a non-2xx answer, whatever its body. */
export async function errorFrom(response: Response): Promise<ApiError> {
  let code = `http_${response.status}`;
  let message = response.statusText || `HTTP ${response.status}`;
  let field: string | undefined;
  try {
    const body = (await response.json()) as {
      error?: { code?: unknown; message?: unknown; field?: unknown };
    };
    if (typeof body?.error?.code === "string") code = body.error.code;
    if (typeof body?.error?.message === "string") message = body.error.message;
    if (typeof body?.error?.field === "string") field = body.error.field;
  } catch {
    // Not JSON (a proxy's page): keep the status line.
  }
  return new ApiError(
    response.status,
    code,
    message,
    field,
    retryAfterSeconds(response.headers.get("retry-after")),
    response.headers.get("x-request-id") ?? undefined,
  );
}

/** `Retry-After` as seconds (delta-seconds or an HTTP date), if present and sensible. */
export function retryAfterSeconds(value: string | null, now = Date.now()): number | undefined {
  if (value === null) return undefined;
  const trimmed = value.trim();
  if (/^[0-9]+$/.test(trimmed)) return Number(trimmed);
  const date = Date.parse(trimmed);
  return Number.isNaN(date) ? undefined : Math.max(0, Math.ceil((date - now) / 1000));
}
