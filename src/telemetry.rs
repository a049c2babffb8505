//! Tracing subscriber set-up.
