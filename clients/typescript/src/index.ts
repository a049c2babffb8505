/**
 * `@auto-order/client`: the typed client of the Auto-Order edge API.
 *
 * ```ts
 * import { AutoOrderClient, storageSyncTokens } from "@auto-order/client";
 * const api = new AutoOrderClient({
 *   baseUrl: "https://api.example.com",
 *   getAccessToken: () => auth0.getTokenSilently(),
 *   syncTokens: storageSyncTokens(), // reloads keep reading this session's writes
 * });
 * const created = await api.createProduct({ name: "Coffee" });
 * await api.getProduct(created.id); // at any edge: includes the create
 * ```
 */
export { AutoOrderClient } from "./client.js";
export type {
  ClientOptions,
  ListOrdersQuery,
  ListProductsQuery,
  NewOrder,
  NewProduct,
  Order,
  OrderPage,
  OrderPatch,
  Prediction,
  Product,
  ProductPage,
  ProductPatch,
  Reorders,
  RetryPolicy,
  TokenProvider,
} from "./client.js";
export { ApiError, type ErrorCode } from "./errors.js";
export {
  memorySyncTokens,
  storageSyncTokens,
  type StorageLike,
  type SyncTokenStore,
} from "./sync-tokens.js";
export type { components, paths } from "./schema.js";
