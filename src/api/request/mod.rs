//! What a handler takes from a request and checks before any work: the extractors (JSON
//! body, query, path id, `Idempotency-Key`, `If-None-Match`), field validation, paging
//! parameters and cursors, and the 503 of data routes before the first sync.

pub mod extract;
pub mod paging;
pub mod ready;
pub mod validate;
