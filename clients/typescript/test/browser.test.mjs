// The client and the demo page end to end: a real Chromium (Debian's, through
// playwright-core), a local three-region rehearsal of real `auto-order serve` edges on
// loopback, real Postgres behind a TCP relay the test can cut, and the page served from
// another origin so CORS and preflights are real.
//
//   AUTO_ORDER_BIN=target/debug/auto-order node --test test/browser.test.mjs
//
// Environment: AUTO_ORDER_BIN (default <repo>/target/debug/auto-order), TEST_DATABASE_URL
// (a server to create a scratch database on; default postgres://postgres@127.0.0.1:5432/postgres),
// CHROMIUM (default /usr/bin/chromium).
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawn, execFileSync } from "node:child_process";
import { createServer } from "node:http";
import { createInterface } from "node:readline";
import net from "node:net";
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, extname } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";
import { schemaSource, SCHEMA } from "../scripts/gen-types.mjs";
import { demoCopy, DEMO_COPY } from "../scripts/bundle.mjs";
import { AutoOrderClient } from "../dist/index.js";

const repo = fileURLToPath(new URL("../../../", import.meta.url));
const BIN = process.env.AUTO_ORDER_BIN ?? join(repo, "target/debug/auto-order");
const SERVER_URL = process.env.TEST_DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/postgres";
const CHROMIUM = process.env.CHROMIUM ?? "/usr/bin/chromium";
const ASSETS = join(repo, "src/demo/assets");
const SCREENSHOT = join(repo, "docs/demo-page.png");
const REGIONS = ["iad", "lhr", "syd"];

/** A TCP relay to Postgres whose `cut()` drops every connection and refuses new ones. */
async function pgRelay(target) {
  const sockets = new Set();
  let open = true;
  const server = net.createServer((client) => {
    if (!open) return client.destroy();
    const upstream = net.connect(Number(target.port || 5432), target.hostname);
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on("error", () => {});
      s.on("close", () => sockets.delete(s));
    }
    client.on("close", () => upstream.destroy());
    upstream.on("close", () => client.destroy());
    client.pipe(upstream).pipe(client);
  });
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  return {
    port: server.address().port,
    cut() {
      open = false;
      for (const s of sockets) s.destroy();
    },
    close: () => {
      open = false;
      for (const s of sockets) s.destroy();
      return new Promise((r) => server.close(r));
    },
  };
}

/** Serves the demo page's files as the edge does (`/` and `/demo/*`), from another origin. */
async function pageServer() {
  const types = { ".html": "text/html", ".js": "text/javascript", ".css": "text/css" };
  const server = createServer((req, res) => {
    const path = new URL(req.url, "http://x").pathname;
    const file = path === "/" ? "index.html" : path.startsWith("/demo/") ? path.slice(6) : "";
    const full = join(ASSETS, file);
    if (!file || file.includes("..") || !existsSync(full)) return res.writeHead(404).end();
    res.writeHead(200, { "content-type": `${types[extname(file)]}; charset=utf-8` });
    res.end(readFileSync(full));
  });
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  return { origin: `http://127.0.0.1:${server.address().port}`, close: () => new Promise((r) => server.close(r)) };
}

/** Starts `auto-order serve` and resolves with its URL once it logs the port it bound. */
function startEdge(region, env) {
  const child = spawn(BIN, ["serve"], {
    env: { ...env, FLY_REGION: region, PRIMARY_REGION: REGIONS[0] },
    stdio: ["ignore", "pipe", "inherit"],
  });
  return new Promise((resolve, reject) => {
    const lines = createInterface({ input: child.stdout });
    let found = false;
    lines.on("line", (line) => {
      if (found) return; // keep draining so the edge never blocks on a full pipe
      try {
        const entry = JSON.parse(line);
        if (entry.fields?.message === "serving") {
          found = true;
          resolve({ region, child, url: `http://127.0.0.1:${entry.fields.port}` });
        }
      } catch {}
    });
    child.on("exit", (code) => found || reject(new Error(`${region} edge exited (${code}) before serving`)));
  });
}

async function waitFor(what, check, timeoutMs = 30_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      if (await check()) return;
    } catch {}
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

function psql(url, sql) {
  return execFileSync("psql", ["-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1", url, "-c", sql], {
    encoding: "utf8",
  }).trim();
}

describe("the demo page on a three-region rehearsal, through the client", () => {
  const dbName = `browser_${process.pid}_${Date.now()}`;
  const server = new URL(SERVER_URL);
  const dbUrl = Object.assign(new URL(SERVER_URL), { pathname: `/${dbName}` }).toString();
  const dirs = mkdtempSync(join(tmpdir(), "auto-order-browser-"));
  let relay, page, site, browser, edges = [];
  /** The requests the page sent to the edges: method, url, and their X-Sync-Token. */
  const sent = [];

  before(async () => {
    psql(SERVER_URL, `create database ${dbName}`);
    execFileSync(BIN, ["migrate"], { env: { ...process.env, DATABASE_URL: dbUrl }, stdio: "ignore" });
    relay = await pgRelay(server);
    site = await pageServer();
    // One dev-issuer key for all edges, as one Auth0 tenant would be.
    const keyDir = join(dirs, REGIONS[0]);
    execFileSync(BIN, ["token", "--sub", "setup"], { env: { ...process.env, DATA_DIR: keyDir }, stdio: "ignore" });
    const viaRelay = Object.assign(new URL(dbUrl), { host: `127.0.0.1:${relay.port}` }).toString();
    edges = await Promise.all(
      REGIONS.map((region) => {
        const dataDir = join(dirs, region);
        if (region !== REGIONS[0]) {
          mkdirSync(dataDir, { recursive: true });
          copyFileSync(join(keyDir, "dev-issuer-key.pk8"), join(dataDir, "dev-issuer-key.pk8"));
        }
        return startEdge(region, {
          PATH: process.env.PATH,
          DATABASE_URL: viaRelay,
          DATA_DIR: dataDir,
          PORT: "0",
          CORS_ORIGIN: site.origin,
          DEMO_PAGE: "true",
          RATE_LIMIT_MAX: "100000",
          LOG_LEVEL: "warn,auto_order::server=info",
        });
      }),
    );
    for (const edge of edges) {
      await waitFor(`${edge.region} healthy`, async () => (await fetch(`${edge.url}/api/health`)).ok);
    }
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
    });
    page = await browser.newPage({ viewport: { width: 1000, height: 640 } });
    page.on("request", (request) => {
      if (edges.some((e) => request.url().startsWith(e.url))) {
        sent.push({ method: request.method(), url: request.url(), token: request.headers()["x-sync-token"] });
      }
    });
  });

  after(async () => {
    await browser?.close();
    for (const edge of edges) edge.child.kill("SIGKILL");
    await relay?.close();
    await site?.close();
    rmSync(dirs, { recursive: true, force: true });
    try {
      psql(SERVER_URL, `drop database if exists ${dbName} with (force)`);
    } catch {}
  });

  test("the client's types match the OpenAPI document an edge serves", async () => {
    const doc = await (await fetch(`${edges[0].url}/api/openapi.json`)).json();
    assert.equal(
      readFileSync(SCHEMA, "utf8"),
      await schemaSource(doc),
      "src/schema.ts is stale: run `npm run gen:types -- <edge URL>` in clients/typescript",
    );
  });

  test("the client the binary serves to the demo page is the current build of src/", async () => {
    const served = await (await fetch(`${edges[0].url}/demo/auto-order-client.js`)).text();
    assert.equal(readFileSync(DEMO_COPY, "utf8"), served, "the binary embeds the committed copy");
    assert.equal(
      served,
      await demoCopy(),
      "src/demo/assets/auto-order-client.js is stale: run `npm run build` in clients/typescript and rebuild",
    );
  });

  const byName = (name) => page.locator("#products tr", { hasText: name });
  const edgeUrl = (region) => edges.find((e) => e.region === region).url;

  test("a product created at one edge is read at once at another, with the write's sync token", async () => {
    const edgesParam = edges.map((e) => `${e.region}=${e.url}`).join(",");
    await page.goto(`${site.origin}/?edges=${encodeURIComponent(edgesParam)}`);
    await page.click("text=Sign in with the dev issuer");
    await page.locator("#app").waitFor({ state: "visible" });
    assert.match(await page.textContent("#who"), /demo-user/);

    const created = page.waitForResponse((r) => r.request().method() === "POST" && r.url() === `${edgeUrl("iad")}/api/products`);
    await page.fill("#product-name", "Rolled oats");
    await page.fill("#product-unit", "1 kg");
    await page.fill("#product-qty", "2");
    await page.click("text=Add product");
    const response = await created;
    assert.equal(response.status(), 201);
    const token = await response.headerValue("x-sync-token"); // exposed through CORS
    assert.match(token ?? "", /^[0-9]+$/);
    assert.ok(response.request().headers()["idempotency-key"], "the create carried an Idempotency-Key");
    await byName("Rolled oats").waitFor();

    // Switch to another region: its first read must already list the product.
    const listed = page.waitForResponse((r) => r.url().startsWith(`${edgeUrl("lhr")}/api/products`));
    await page.selectOption("#edge", { label: "lhr" });
    const list = await (await listed).json();
    assert.ok(list.items.some((p) => p.name === "Rolled oats"), "lhr's first answer includes the write");
    const read = sent.find((s) => s.method === "GET" && s.url.startsWith(`${edgeUrl("lhr")}/api/products`));
    assert.equal(read.token, token, "the read carried the write's token");
    await byName("Rolled oats").waitFor({ timeout: 2000 });

    // A purchase recorded at lhr.
    const bought = page.waitForResponse((r) => r.request().method() === "POST" && r.url() === `${edgeUrl("lhr")}/api/orders`);
    await byName("Rolled oats").locator("text=Record purchase").click();
    assert.equal((await bought).status(), 201);
    await page.locator("#status", { hasText: "Recorded a purchase" }).waitFor();
  });

  const accessToken = async () =>
    (await page.evaluate(() => JSON.parse(sessionStorage.getItem("auto-order.demo.access-token")))).token;

  test("after a reload the page still shows it, reading with the session's token", async () => {
    // A product with a purchase history (through the client, from Node), so the page has a
    // prediction and a re-order to show.
    const access = await accessToken();
    const api = new AutoOrderClient({ baseUrl: edgeUrl("lhr"), getAccessToken: () => access });
    const coffee = await api.createProduct({ name: "Coffee beans", unit: "250 g", reorder_quantity: 1 });
    for (const daysAgo of [31, 17, 3]) {
      const orderedAt = new Date(Date.now() - daysAgo * 86_400_000).toISOString();
      await api.createOrder({ product_id: coffee.id, quantity: 1, ordered_at: orderedAt });
    }

    const before = sent.length;
    await page.reload();
    await byName("Rolled oats").waitFor({ timeout: 5000 });
    assert.equal(await byName("Coffee beans").locator(".prediction").textContent(), "in 11 days");
    assert.match(await page.textContent("#reorders"), /Coffee beans: buy 1, due in 11 days/);
    assert.equal(await page.inputValue("#edge"), edgeUrl("lhr"), "the chosen edge is kept");
    const reads = sent.slice(before).filter((s) => s.method === "GET");
    assert.ok(reads.length > 0 && reads.every((s) => /^[0-9]+$/.test(s.token ?? "")), "every read sends the token");

    // The screenshot in docs/ is rewritten only when the page looks different; the token
    // (a txid, different on every run) is replaced by a fixed one first.
    await page.evaluate(() => (document.getElementById("sync-token").textContent = "1234567"));
    const shot = await page.screenshot({ fullPage: true });
    if (!existsSync(SCREENSHOT) || !readFileSync(SCREENSHOT).equals(shot)) {
      writeFileSync(SCREENSHOT, shot);
      console.log(`updated ${SCREENSHOT}`);
    }
  });

  test("the page the edge itself serves works too (same origin, under its CSP)", async () => {
    const own = await browser.newPage();
    const problems = [];
    own.on("console", (m) => m.type() === "error" && problems.push(m.text()));
    own.on("pageerror", (e) => problems.push(String(e)));
    await own.goto(`${edgeUrl("iad")}/`);
    await own.click("text=Sign in with the dev issuer");
    await own.locator("#products tr", { hasText: "Coffee beans" }).waitFor({ timeout: 5000 });
    assert.deepEqual(problems, []);
    await own.close();
  });

  test("with the primary stopped, reads go on and a create says to try again", async () => {
    // Every edge's replica holds everything written so far (reads without a token come
    // from the replica), so what follows is served with no primary at all.
    const access = await accessToken();
    for (const edge of edges) {
      await waitFor(`${edge.region} has the product and the purchase`, async () => {
        const get = (path) => fetch(`${edge.url}${path}`, { headers: { authorization: `Bearer ${access}` } }).then((r) => r.json());
        const [products, orders] = await Promise.all([get("/api/products"), get("/api/orders")]);
        return products.items.some((p) => p.name === "Rolled oats") && orders.items.length === 4;
      });
    }
    relay.cut();

    await page.selectOption("#edge", { label: "syd" });
    await byName("Rolled oats").waitFor({ timeout: 10_000 });
    const status = await page.textContent("#status");
    assert.doesNotMatch(status, /failed/, "reads at syd go on");

    await page.fill("#product-name", "Offline cereal");
    await page.click("text=Add product");
    const shown = page.locator("#status.error", { hasText: "try again" });
    await shown.waitFor({ timeout: 30_000 });
    assert.match(await shown.textContent(), /Adding Offline cereal failed: .*unreachable.*try again/i);
    assert.equal(psql(dbUrl, "select count(*) from products where name = 'Offline cereal'"), "0");
  });
});
