// Unit tests of the client over real HTTP: a scripted node:http server stands in for an
// edge, so headers, status codes and bodies go through a real fetch. The end-to-end proof
// against real edges, Postgres and Chromium is browser.test.mjs.
import { test } from "node:test";
import assert from "node:assert/strict";
import { createServer } from "node:http";
import { AutoOrderClient, ApiError, memorySyncTokens, storageSyncTokens } from "../dist/index.js";

/** A server answering each request with the next scripted answer; records the requests. */
async function scriptedEdge(answers) {
  const requests = [];
  const server = createServer((req, res) => {
    let body = "";
    req.on("data", (c) => (body += c));
    req.on("end", () => {
      requests.push({ method: req.method, url: req.url, headers: req.headers, body });
      const next = answers.shift() ?? { status: 500, body: { error: { code: "internal", message: "unscripted" } } };
      res.writeHead(next.status, { "content-type": "application/json", ...next.headers });
      res.end(next.body === undefined ? "" : JSON.stringify(next.body));
    });
  });
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  const baseUrl = `http://127.0.0.1:${server.address().port}`;
  return { baseUrl, requests, close: () => new Promise((r) => server.close(r)) };
}

const product = { id: "0b5f5c52-3a44-4c55-8d3f-0e5c1d1f0a01", name: "Coffee" };
const unavailable = (retryAfter) => ({
  status: 503,
  headers: { "retry-after": String(retryAfter) },
  body: { error: { code: "unavailable", message: "the primary database is unreachable; retry shortly" } },
});

function client(edge, extra = {}) {
  const delays = [];
  const c = new AutoOrderClient({
    baseUrl: edge.baseUrl + "/",
    getAccessToken: () => "tok",
    sleep: async (ms) => void delays.push(ms),
    ...extra,
  });
  return { c, delays };
}

test("a write's sync token is sent on the next reads, and an older token never replaces it", async () => {
  const edge = await scriptedEdge([
    { status: 201, headers: { "x-sync-token": "1000" }, body: product },
    { status: 200, headers: { "x-sync-token": "999" }, body: product }, // a late, older answer
    { status: 200, body: product },
    { status: 200, body: { items: [], next_cursor: null } },
  ]);
  const { c } = client(edge);
  await c.createProduct({ name: "Coffee" });
  await c.updateProduct(product.id, { name: "Coffee" });
  await c.getProduct(product.id);
  await c.listProducts({ q: "cof", limit: 5 });
  await edge.close();

  assert.equal(edge.requests[0].headers["x-sync-token"], undefined, "no token before any write");
  assert.equal(edge.requests[2].headers["x-sync-token"], "1000");
  assert.equal(edge.requests[3].headers["x-sync-token"], "1000");
  assert.equal(edge.requests[3].url, "/api/products?q=cof&limit=5");
  assert.equal(c.syncTokens.current(), "1000");
});

test("tokens compare as numbers, not strings", () => {
  const tokens = memorySyncTokens();
  tokens.advance("999");
  tokens.advance("1000");
  tokens.advance("not-a-token");
  assert.equal(tokens.current(), "1000");
});

test("a create carries an Idempotency-Key and its retries after 503 reuse it, waiting Retry-After", async () => {
  const edge = await scriptedEdge([unavailable(2), unavailable(1), { status: 201, body: product }]);
  const retries = [];
  const { c, delays } = client(edge, { onRetry: (e, attempt) => retries.push([e.code, attempt]) });
  const created = await c.createProduct({ name: "Coffee" });
  await edge.close();

  assert.deepEqual(created, product);
  const keys = edge.requests.map((r) => r.headers["idempotency-key"]);
  assert.equal(keys.length, 3);
  assert.match(keys[0], /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
  assert.ok(keys.every((k) => k === keys[0]), "one key for the create and its retries");
  assert.deepEqual(delays, [2000, 1000]);
  assert.deepEqual(retries, [["unavailable", 1], ["unavailable", 2]]);
});

test("two creates get two different keys", async () => {
  const edge = await scriptedEdge([{ status: 201, body: product }, { status: 201, body: product }]);
  const { c } = client(edge);
  await c.createProduct({ name: "A" });
  await c.createProduct({ name: "B" });
  await edge.close();
  assert.notEqual(edge.requests[0].headers["idempotency-key"], edge.requests[1].headers["idempotency-key"]);
});

test("retries are bounded, the wait is capped, and the 503 surfaces as a typed error", async () => {
  const edge = await scriptedEdge([unavailable(120), unavailable(120), unavailable(120), unavailable(120)]);
  const { c, delays } = client(edge, { retry: { maxRetries: 2, maxDelayMs: 3000 } });
  const error = await c.listProducts().catch((e) => e);
  await edge.close();

  assert.ok(error instanceof ApiError);
  assert.equal(error.status, 503);
  assert.equal(error.code, "unavailable");
  assert.equal(error.message, "the primary database is unreachable; retry shortly");
  assert.equal(error.retryAfterSeconds, 120);
  assert.equal(error.retryable, true);
  assert.equal(edge.requests.length, 3, "first attempt and two retries");
  assert.deepEqual(delays, [3000, 3000]);
});

test("429 is retried after Retry-After too", async () => {
  const edge = await scriptedEdge([
    { status: 429, headers: { "retry-after": "1" }, body: { error: { code: "rate_limited", message: "too many requests; retry later" } } },
    { status: 200, body: { within_days: 3, items: [] } },
  ]);
  const { c, delays } = client(edge);
  const due = await c.reorders(3);
  await edge.close();
  assert.equal(due.within_days, 3);
  assert.equal(edge.requests[1].url, "/api/reorders?within_days=3");
  assert.deepEqual(delays, [1000]);
});

test("a 422 is not retried and names the field", async () => {
  const edge = await scriptedEdge([
    { status: 422, body: { error: { code: "invalid_field", message: "must be at least 1", field: "reorder_quantity" } } },
  ]);
  const { c } = client(edge);
  const error = await c.createProduct({ name: "x", reorder_quantity: 0 }).catch((e) => e);
  await edge.close();
  assert.equal(edge.requests.length, 1);
  assert.equal(error.status, 422);
  assert.equal(error.code, "invalid_field");
  assert.equal(error.field, "reorder_quantity");
  assert.equal(error.retryable, false);
  assert.equal(edge.requests[0].headers["content-type"], "application/json");
  assert.deepEqual(JSON.parse(edge.requests[0].body), { name: "x", reorder_quantity: 0 });
});

test("the token provider is asked before every request", async () => {
  const edge = await scriptedEdge([{ status: 200, body: product }, { status: 200, body: product }]);
  let n = 0;
  const { c } = client(edge, { getAccessToken: async () => `token-${++n}` });
  await c.getProduct(product.id);
  await c.getProduct(product.id);
  await edge.close();
  assert.deepEqual(
    edge.requests.map((r) => r.headers.authorization),
    ["Bearer token-1", "Bearer token-2"],
  );
});

test("a delete answers nothing and a non-JSON error keeps its status", async () => {
  const edge = await scriptedEdge([{ status: 204 }, { status: 502 }]);
  const { c } = client(edge);
  assert.equal(await c.deleteProduct(product.id), undefined);
  const error = await c.getOrder("x/y").catch((e) => e);
  await edge.close();
  assert.equal(edge.requests[1].url, "/api/orders/x%2Fy");
  assert.equal(error.status, 502);
  assert.equal(error.code, "http_502");
});

test("no answer at all is a typed network error", async () => {
  const edge = await scriptedEdge([]);
  await edge.close();
  const { c } = client(edge);
  const error = await c.listOrders().catch((e) => e);
  assert.ok(error instanceof ApiError);
  assert.equal(error.status, 0);
  assert.equal(error.code, "network_error");
});

test("a storage-backed token survives a new client (a reload) and still only moves forward", () => {
  const data = new Map();
  const storage = { getItem: (k) => data.get(k) ?? null, setItem: (k, v) => data.set(k, v) };
  storageSyncTokens(storage).advance("42");
  const afterReload = storageSyncTokens(storage);
  assert.equal(afterReload.current(), "42");
  afterReload.advance("41");
  assert.equal(afterReload.current(), "42");
  data.set("auto-order.sync-token", "garbage");
  assert.equal(storageSyncTokens(storage).current(), undefined);
});
