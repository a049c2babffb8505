// The demo page: everything goes through the TypeScript client (auto-order-client.js).
// `?edges=iad=http://host:port,lhr=...` lists the edges to choose from (default: this one).
import { AutoOrderClient, ApiError, storageSyncTokens } from "./auto-order-client.js";

const $ = (id) => document.getElementById(id);
const TOKEN_KEY = "auto-order.demo.access-token";
const EDGE_KEY = "auto-order.demo.edge";
const syncTokens = storageSyncTokens(sessionStorage);

const edges = parseEdges(new URLSearchParams(location.search).get("edges"));
for (const edge of edges) $("edge").add(new Option(edge.name, edge.url));
$("edge").value = sessionStorage.getItem(EDGE_KEY) ?? edges[0].url;
if ($("edge").selectedIndex < 0) $("edge").selectedIndex = 0;

let client = makeClient();

function parseEdges(param) {
  if (!param) return [{ name: "this edge", url: location.origin }];
  return param.split(",").map((entry) => {
    const [name, url] = entry.includes("=") ? entry.split("=", 2) : [entry, entry];
    return { name, url };
  });
}

function makeClient() {
  return new AutoOrderClient({
    baseUrl: $("edge").value,
    getAccessToken: () => session()?.token ?? "",
    syncTokens,
    retry: { maxRetries: 1, maxDelayMs: 5000 },
    onRetry: (error, _attempt, delayMs) =>
      say(`${error.message} Retrying in ${Math.round(delayMs / 1000)} s…`),
  });
}

function session() {
  try {
    const s = JSON.parse(sessionStorage.getItem(TOKEN_KEY) ?? "null");
    return s && s.exp > Date.now() / 1000 + 30 ? s : null;
  } catch {
    return null;
  }
}

function claims(token) {
  try {
    const b64 = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    return JSON.parse(atob(b64));
  } catch {
    return {};
  }
}

function keep(token) {
  const { sub = "?", exp = Date.now() / 1000 + 3600 } = claims(token);
  sessionStorage.setItem(TOKEN_KEY, JSON.stringify({ token, sub, exp }));
}

function say(text, isError = false) {
  $("status").textContent = text;
  $("status").className = isError ? "error" : "";
}

/** What to tell the user about a failed action. */
function explain(action, error) {
  if (!(error instanceof ApiError)) return `${action} failed: ${error}`;
  if (error.retryable) return `${action} failed: ${error.message} Please try again in a moment.`;
  if (error.code === "invalid_token") return `${action} failed: please sign in again (${error.message}).`;
  if (error.field) return `${action} failed: ${error.field}: ${error.message}`;
  return `${action} failed: ${error.message}`;
}

function relativeDay(iso) {
  const days = Math.round((Date.parse(iso) - Date.now()) / 86_400_000);
  if (days === 0) return "today";
  return days > 0 ? `in ${days} day${days === 1 ? "" : "s"}` : `${-days} day${days === -1 ? "" : "s"} ago`;
}

function cell(text, className) {
  const td = document.createElement("td");
  td.textContent = text;
  if (className) td.className = className;
  return td;
}

async function render() {
  const s = session();
  $("sign-in").hidden = !!s;
  $("app").hidden = !s;
  $("sign-out").hidden = !s;
  $("who").textContent = s ? `signed in as ${s.sub}` : "";
  if (!s) return;
  try {
    const [page, due] = await Promise.all([client.listProducts({ limit: 100 }), client.reorders(14)]);
    const predictions = await Promise.all(page.items.map((p) => client.prediction(p.id)));
    const rows = page.items.map((product, i) => {
      const tr = document.createElement("tr");
      tr.dataset.productId = product.id;
      const next = predictions[i].prediction;
      tr.append(
        cell(product.name, "name"),
        cell(product.unit ?? ""),
        cell(String(product.reorder_quantity)),
        next ? cell(relativeDay(next.next_purchase_at), "prediction") : cell("not enough purchases yet", "prediction muted"),
      );
      const td = document.createElement("td");
      const qty = Object.assign(document.createElement("input"), { type: "number", min: 1, value: 1 });
      qty.setAttribute("aria-label", `Quantity of ${product.name}`);
      const buy = Object.assign(document.createElement("button"), { textContent: "Record purchase" });
      buy.addEventListener("click", () => recordPurchase(product, Number(qty.value)));
      td.append(qty, buy);
      tr.append(td);
      return tr;
    });
    $("products").replaceChildren(...rows);
    $("reorders").replaceChildren(
      ...due.items.map((item) => {
        const li = document.createElement("li");
        li.textContent = `${item.name}: buy ${item.reorder_quantity}, ${item.overdue ? "overdue since" : "due"} ${relativeDay(item.next_purchase_at)}`;
        if (item.overdue) li.className = "overdue";
        return li;
      }),
    );
    if (due.items.length === 0) $("reorders").replaceChildren(Object.assign(document.createElement("li"), { textContent: "Nothing due.", className: "muted" }));
    $("sync-token").textContent = syncTokens.current() ?? "none";
  } catch (error) {
    say(explain("Loading", error), true);
  }
}

async function recordPurchase(product, quantity) {
  say(`Recording a purchase of ${product.name}…`);
  try {
    await client.createOrder({ product_id: product.id, quantity });
    say(`Recorded a purchase of ${quantity} × ${product.name}.`);
    await render();
  } catch (error) {
    say(explain("Recording the purchase", error), true);
  }
}

$("add-product").addEventListener("submit", async (event) => {
  event.preventDefault();
  const name = $("product-name").value.trim();
  const unit = $("product-unit").value.trim();
  say(`Adding ${name}…`);
  try {
    await client.createProduct({
      name,
      unit: unit || null,
      reorder_quantity: Number($("product-qty").value) || 1,
    });
    $("add-product").reset();
    say(`Added ${name}.`);
    await render();
  } catch (error) {
    say(explain(`Adding ${name}`, error), true);
  }
});

$("sign-in-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  say("Signing in…");
  try {
    const response = await fetch(new URL("/demo/sign-in", $("edge").value), {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ user: $("user").value }),
    });
    const body = await response.json().catch(() => ({}));
    if (response.status === 404) throw new Error("this edge has no dev issuer (Auth0 is configured): paste an access token instead");
    if (!response.ok) throw new Error(body?.error?.message ?? `HTTP ${response.status}`);
    keep(body.access_token);
    say("");
    await render();
  } catch (error) {
    say(`Sign-in failed: ${error.message ?? error}`, true);
  }
});

$("paste-token-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  keep($("pasted-token").value.trim());
  $("pasted-token").value = "";
  say("");
  await render();
});

$("sign-out").addEventListener("click", async () => {
  sessionStorage.removeItem(TOKEN_KEY);
  say("Signed out.");
  await render();
});

$("edge").addEventListener("change", async () => {
  sessionStorage.setItem(EDGE_KEY, $("edge").value);
  client = makeClient();
  say(`Reading from ${$("edge").selectedOptions[0].text}.`);
  await render();
});

render();
