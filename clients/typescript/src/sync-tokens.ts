/**
 * The session's latest sync token (`X-Sync-Token`): the txid of the newest write this
 * session made, as a decimal string. Every read sends it, so any edge answers with at least
 * that write. Tokens only move forward: an older token (a slow answer arriving late, another
 * tab's older write) never replaces a newer one.
 */
export interface SyncTokenStore {
  /** The newest token seen in this session, if any. */
  current(): string | undefined;
  /** Records `token` if it is newer than the current one. */
  advance(token: string): void;
}

/** Keeps the token in memory only (lost on reload). */
export function memorySyncTokens(): SyncTokenStore {
  let latest: string | undefined;
  return {
    current: () => latest,
    advance(token) {
      latest = newer(latest, token);
    },
  };
}

/** The part of the Web Storage API the store needs (`sessionStorage`, `localStorage`). */
export interface StorageLike {
  getItem(key: string): string | null;
  setItem(key: string, value: string): void;
}

/**
 * Keeps the token in a Web Storage area, by default `sessionStorage`: a reload, and a tab
 * opened from this one, keep reading at least this session's writes. The stored value is
 * re-read on every call, so writes made by another page of the same storage count too.
 */
export function storageSyncTokens(
  storage: StorageLike = globalThis.sessionStorage,
  key = "auto-order.sync-token",
): SyncTokenStore {
  const read = (): string | undefined => {
    try {
      const value = storage.getItem(key);
      return value !== null && isToken(value) ? value : undefined;
    } catch {
      return undefined; // storage disabled (privacy mode): behave as empty
    }
  };
  return {
    current: read,
    advance(token) {
      const next = newer(read(), token);
      if (next === undefined) return;
      try {
        storage.setItem(key, next);
      } catch {
        // Quota or privacy mode: the token is still sent by this page's later calls only
        // through what storage holds; nothing better to do.
      }
    },
  };
}

/** True for what the API issues: an unsigned decimal integer. */
export function isToken(value: string): boolean {
  return /^[0-9]{1,20}$/.test(value);
}

/** The newer of two tokens (numeric comparison; a malformed candidate is ignored). */
export function newer(current: string | undefined, candidate: string): string | undefined {
  const trimmed = candidate.trim();
  if (!isToken(trimmed)) return current;
  if (current === undefined) return trimmed;
  return BigInt(trimmed) > BigInt(current) ? trimmed : current;
}
