//! The HTTP/1.1 server beneath the router: accepting connections, their time limits, and
//! the drain at shutdown. Owns what `axum::serve` leaves open to an anonymous client.
//!
//! # Limits (see [`ConnectionLimits`])
//! - **Header read timeout**: a connection must deliver a complete request head within
//!   `HTTP_HEADER_TIMEOUT_MS` of starting to wait for one, or it is closed. hyper starts that
//!   timer whenever a connection waits for a request, the first one or the next one on a
//!   kept-alive connection, so the same bound is the **idle keep-alive timeout**. Without
//!   it (axum::serve runs hyper without a timer) 200 connections that never finish their
//!   headers were all still open a minute later.
//! - **Connection cap**: at most `HTTP_MAX_CONNECTIONS` open at once. At the cap the loop
//!   stops accepting; new connections wait in the kernel's backlog until one closes, so
//!   memory and file descriptors stay bounded whatever the clients do.
//! - **Request head and read buffer**: a request head may be at most [`MAX_REQUEST_HEAD`]
//!   (else 431 and the connection is closed), and a connection's read buffer grows to about
//!   [`MAX_READ_BUFFER`] (hyper's default is about 400 KiB: a full set of connections
//!   sending huge heads could hold 400 MiB, most of a 512 MB machine).
//! - **Drain deadline**: on shutdown the listener closes, every connection finishes the
//!   request it is serving (keep-alive off), and whatever is still open after
//!   `SHUTDOWN_TIMEOUT_MS` is cut. The deadline is shorter than fly.toml's `kill_timeout`,
//!   so the process still gets to stop its sync engine cleanly; a drain without one waited
//!   on a half-sent request until Fly's SIGKILL.
//!
//! HTTP/1.1 only, as before (axum's default features): Fly's proxy talks HTTP/1.1 to the
//! app.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tower::Service;

/// Largest request head (request line and headers): a token is at most 8 KiB.
pub const MAX_REQUEST_HEAD: usize = 32 * 1024;

/// Largest read buffer of a connection (hyper's bound is approximate: a read may fill the
/// capacity it has); a body streams through it.
pub const MAX_READ_BUFFER: usize = 64 * 1024;

/// The per-connection limits, from the configuration.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// A request head must arrive within this; also the idle keep-alive timeout.
    pub header_read_timeout: Duration,
    /// Connections open at once.
    pub max_connections: usize,
    /// How long the drain at shutdown may take before open connections are cut.
    pub drain_timeout: Duration,
}

/// Serves `app` on `listener` until `shutdown` completes, then drains (bounded).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()>,
) {
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let graceful = GracefulShutdown::new();
    // Cancelled when the drain deadline passes: the connections still open are dropped.
    let cut = CancellationToken::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_header_size(MAX_REQUEST_HEAD)
        .max_buf_size(MAX_READ_BUFFER)
        .keep_alive(true);
    tokio::pin!(shutdown);

    loop {
        let permit = tokio::select! {
            permit = permits.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    if !is_connection_error(&e) {
                        // Out of file descriptors and the like: wait instead of spinning.
                        tracing::error!(error = %e, "accept failed");
                        tokio::select! {
                            () = tokio::time::sleep(Duration::from_secs(1)) => {}
                            () = &mut shutdown => break,
                        }
                    }
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
            request.extensions_mut().insert(ConnectInfo(peer));
            app.clone().call(request)
        });
        let connection = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
        let cut = cut.clone();
        tokio::spawn(async move {
            tokio::select! {
                // A client that goes away or times out is not an error of the server.
                result = connection => {
                    if let Err(e) = result {
                        tracing::debug!(error = %e, "connection closed with an error");
                    }
                }
                () = cut.cancelled() => {}
            }
            drop(permit);
        });
    }

    drop(listener);
    let open = graceful.count();
    tracing::info!(open, "draining connections");
    if tokio::time::timeout(limits.drain_timeout, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            drain_timeout_ms = limits.drain_timeout.as_millis() as u64,
            "drain deadline passed; cutting the connections still open"
        );
        cut.cancel();
    }
}

/// Errors of one connection being accepted (the client reset it, …): the next accept
/// works.
fn is_connection_error(e: &std::io::Error) -> bool {
    use std::io::ErrorKind;
    matches!(
        e.kind(),
        ErrorKind::ConnectionRefused | ErrorKind::ConnectionAborted | ErrorKind::ConnectionReset
    )
}

/// The address a listener bound (0 when unknown).
pub fn port(listener: &TcpListener) -> u16 {
    listener.local_addr().map_or(0, |a: SocketAddr| a.port())
}
