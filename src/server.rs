//! The axum application: routes, middleware, start-up and graceful shutdown.
