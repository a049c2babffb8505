/**
 * The client: one method per API route, over `fetch`.
 *
 * - Read-your-writes: every write's `X-Sync-Token` advances the session's token
 *   ({@link SyncTokenStore}); every read sends it, so an edge answers with that write
 *   included (it waits for its replica, or asks the primary).
 * - Creates carry an `Idempotency-Key` (a fresh UUID per call, reused by the client's own
 *   retries), so a retried create never makes two rows.
 * - 503 and 429 are retried after `Retry-After` (capped), a bounded number of times; then,
 *   like any other error, they surface as an {@link ApiError}.
 * - The access token comes from a provider called before each request (Auth0's
 *   `getTokenSilently` caches and renews it).
 */
import { ApiError, errorFrom } from "./errors.js";
import type { paths } from "./schema.js";
import { memorySyncTokens, type SyncTokenStore } from "./sync-tokens.js";

type Json<T> = T extends { content: { "application/json": infer B } } ? B : never;
type Ok<P extends keyof paths, M extends keyof paths[P], S extends number> =
  paths[P][M] extends { responses: { [K in S]: infer R } } ? Json<R> : never;
type Body<P extends keyof paths, M extends keyof paths[P]> =
  paths[P][M] extends { requestBody: { content: { "application/json": infer B } } } ? B : never;
type Query<P extends keyof paths, M extends keyof paths[P]> =
  paths[P][M] extends { parameters: { query?: infer Q } } ? NonNullable<Q> : never;

export type ProductPage = Ok<"/api/products", "get", 200>;
export type Product = Ok<"/api/products/{id}", "get", 200>;
export type NewProduct = Body<"/api/products", "post">;
export type ProductPatch = Body<"/api/products/{id}", "patch">;
export type ListProductsQuery = Query<"/api/products", "get">;
export type OrderPage = Ok<"/api/orders", "get", 200>;
export type Order = Ok<"/api/orders/{id}", "get", 200>;
export type NewOrder = Body<"/api/orders", "post">;
export type OrderPatch = Body<"/api/orders/{id}", "patch">;
export type ListOrdersQuery = Query<"/api/orders", "get">;
export type Prediction = Ok<"/api/predictions/{productId}", "get", 200>;
export type Reorders = Ok<"/api/reorders", "get", 200>;

/** Returns the current access token (e.g. Auth0's `getTokenSilently`). */
export type TokenProvider = () => string | Promise<string>;

export interface RetryPolicy {
  /** Retries after the first attempt (default 2). */
  maxRetries?: number;
  /** Longest wait before one retry, whatever `Retry-After` says (default 5000 ms). */
  maxDelayMs?: number;
}

export interface ClientOptions {
  /** The edge's origin, e.g. `https://api.example.com` (no trailing `/api`). */
  baseUrl: string;
  /** Called before every request; its token goes in `Authorization: Bearer`. */
  getAccessToken: TokenProvider;
  /** Where the session's sync token lives (default: memory; see `storageSyncTokens`). */
  syncTokens?: SyncTokenStore;
  retry?: RetryPolicy;
  /** Called before each retry (to tell the user something is happening). */
  onRetry?: (error: ApiError, attempt: number, delayMs: number) => void;
  /** Defaults to the global `fetch`. */
  fetch?: typeof fetch;
  /** Defaults to `setTimeout`; tests pass a fake clock. */
  sleep?: (ms: number) => Promise<void>;
}

interface Call {
  method: "GET" | "POST" | "PATCH" | "DELETE";
  path: string;
  query?: Record<string, string | number | undefined | null>;
  body?: unknown;
}

export class AutoOrderClient {
  readonly syncTokens: SyncTokenStore;
  private readonly baseUrl: string;
  private readonly options: ClientOptions;

  constructor(options: ClientOptions) {
    this.options = options;
    this.baseUrl = options.baseUrl.replace(/\/+$/, "");
    this.syncTokens = options.syncTokens ?? memorySyncTokens();
  }

  listProducts(query: ListProductsQuery = {}): Promise<ProductPage> {
    return this.call({ method: "GET", path: "/api/products", query });
  }
  getProduct(id: string): Promise<Product> {
    return this.call({ method: "GET", path: `/api/products/${enc(id)}` });
  }
  createProduct(product: NewProduct): Promise<Product> {
    return this.call({ method: "POST", path: "/api/products", body: product });
  }
  updateProduct(id: string, patch: ProductPatch): Promise<Product> {
    return this.call({ method: "PATCH", path: `/api/products/${enc(id)}`, body: patch });
  }
  deleteProduct(id: string): Promise<void> {
    return this.call({ method: "DELETE", path: `/api/products/${enc(id)}` });
  }

  listOrders(query: ListOrdersQuery = {}): Promise<OrderPage> {
    return this.call({ method: "GET", path: "/api/orders", query });
  }
  getOrder(id: string): Promise<Order> {
    return this.call({ method: "GET", path: `/api/orders/${enc(id)}` });
  }
  createOrder(order: NewOrder): Promise<Order> {
    return this.call({ method: "POST", path: "/api/orders", body: order });
  }
  updateOrder(id: string, patch: OrderPatch): Promise<Order> {
    return this.call({ method: "PATCH", path: `/api/orders/${enc(id)}`, body: patch });
  }
  deleteOrder(id: string): Promise<void> {
    return this.call({ method: "DELETE", path: `/api/orders/${enc(id)}` });
  }

  /** The predicted next purchase of a product (`prediction: null` with a `reason` if none). */
  prediction(productId: string): Promise<Prediction> {
    return this.call({ method: "GET", path: `/api/predictions/${enc(productId)}` });
  }
  /** Products due within `withinDays` (API default 7), soonest first. */
  reorders(withinDays?: number): Promise<Reorders> {
    return this.call({ method: "GET", path: "/api/reorders", query: { within_days: withinDays } });
  }

  private async call<T>(call: Call): Promise<T> {
    const { maxRetries = 2, maxDelayMs = 5000 } = this.options.retry ?? {};
    const sleep = this.options.sleep ?? ((ms) => new Promise((r) => setTimeout(r, ms)));
    // One key for the create and all of its retries: a retry of a create that did commit
    // gets the original answer back instead of making a second row.
    const idempotencyKey = call.method === "POST" ? uuid() : undefined;
    for (let attempt = 0; ; attempt++) {
      const response = await this.send(call, idempotencyKey);
      if (response.ok) {
        const token = response.headers.get("x-sync-token");
        if (token !== null) this.syncTokens.advance(token);
        if (response.status === 204) return undefined as T;
        return (await response.json()) as T;
      }
      const error = await errorFrom(response);
      const again = (error.status === 503 || error.status === 429) && attempt < maxRetries;
      if (!again) throw error;
      const delayMs = Math.min((error.retryAfterSeconds ?? 1) * 1000, maxDelayMs);
      this.options.onRetry?.(error, attempt + 1, delayMs);
      await sleep(delayMs);
    }
  }

  private async send(call: Call, idempotencyKey: string | undefined): Promise<Response> {
    const url = new URL(this.baseUrl + call.path);
    for (const [name, value] of Object.entries(call.query ?? {})) {
      if (value !== undefined && value !== null) url.searchParams.set(name, String(value));
    }
    const headers: Record<string, string> = {
      accept: "application/json",
      authorization: `Bearer ${await this.options.getAccessToken()}`,
    };
    if (call.body !== undefined) headers["content-type"] = "application/json";
    if (idempotencyKey !== undefined) headers["idempotency-key"] = idempotencyKey;
    const token = this.syncTokens.current();
    if (call.method === "GET" && token !== undefined) headers["x-sync-token"] = token;
    const doFetch = this.options.fetch ?? globalThis.fetch;
    try {
      return await doFetch(url, {
        method: call.method,
        headers,
        body: call.body === undefined ? undefined : JSON.stringify(call.body),
      });
    } catch (e) {
      throw new ApiError(0, "network_error", `no answer from ${this.baseUrl}: ${String(e)}`);
    }
  }
}

function enc(id: string): string {
  return encodeURIComponent(id);
}

/** A random (v4) UUID; `crypto.randomUUID` needs a secure context, this does not. */
function uuid(): string {
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6]! & 0x0f) | 0x40;
  b[8] = (b[8]! & 0x3f) | 0x80;
  const h = Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}
