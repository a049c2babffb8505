//! A TCP relay between an edge and Postgres that can be cut (connection refused, live
//! connections dropped) and restored on the same port, and that can add latency.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

pub struct Relay {
    pub addr: SocketAddr,
    /// Where new connections go (re-pointed as a leader proxy would after a failover).
    upstream: Arc<Mutex<SocketAddr>>,
    inner: Arc<Mutex<Vec<JoinHandle<()>>>>,
    acceptor: Option<JoinHandle<()>>,
    /// The one-way delay, in microseconds, added to every chunk in both directions.
    latency_us: Arc<AtomicU64>,
}

impl Relay {
    /// Starts relaying a fresh loopback port to `upstream`.
    pub async fn start(upstream: SocketAddr) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind relay");
        let addr = listener.local_addr().unwrap();
        let mut relay = Relay {
            addr,
            upstream: Arc::new(Mutex::new(upstream)),
            inner: Default::default(),
            acceptor: None,
            latency_us: Default::default(),
        };
        relay.acceptor = Some(relay.accept_loop(listener));
        relay
    }

    /// A database URL that goes through the relay.
    pub fn url_for(&self, db_url: &str) -> String {
        db_url.replace("127.0.0.1:5432", &self.addr.to_string())
    }

    fn accept_loop(&self, listener: TcpListener) -> JoinHandle<()> {
        let (upstream, inner, latency) = (
            self.upstream.clone(),
            self.inner.clone(),
            self.latency_us.clone(),
        );
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let latency = latency.clone();
                let upstream = *upstream.lock().unwrap();
                let pipe = tokio::spawn(async move {
                    if let Ok(server) = TcpStream::connect(upstream).await {
                        let (client_rx, client_tx) = client.into_split();
                        let (server_rx, server_tx) = server.into_split();
                        let _ = tokio::try_join!(
                            forward(client_rx, server_tx, latency.clone()),
                            forward(server_rx, client_tx, latency),
                        );
                    }
                });
                inner.lock().unwrap().push(pipe);
            }
        })
    }

    /// Holds every chunk, in each direction, for `delay` before passing it on (a round trip
    /// gets twice `delay`). Applies to chunks arriving from now on, on live connections too;
    /// `Duration::ZERO` turns it off.
    pub fn set_latency(&self, delay: Duration) {
        self.latency_us
            .store(delay.as_micros() as u64, Ordering::Relaxed);
    }

    /// Sends new connections to `upstream` from now on (live ones stay where they are).
    pub fn set_upstream(&self, upstream: SocketAddr) {
        *self.upstream.lock().unwrap() = upstream;
    }

    /// Refuses new connections and drops the live ones.
    pub fn cut(&mut self) {
        if let Some(a) = self.acceptor.take() {
            a.abort();
        }
        for pipe in self.inner.lock().unwrap().drain(..) {
            pipe.abort();
        }
    }

    /// Listens again on the same port (once the aborted acceptor has let go of it).
    pub async fn restore(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(5);
        let listener = loop {
            match TcpListener::bind(self.addr).await {
                Ok(listener) => break listener,
                Err(e) if Instant::now() > deadline => panic!("rebind relay: {e}"),
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            }
        };
        self.acceptor = Some(self.accept_loop(listener));
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.cut();
    }
}

/// Copies `from` to `to`, delivering each chunk once the latency in force when it arrived
/// has passed (a delay line: chunks queue up, the throughput is not limited). Ends when
/// `from` reaches its end (then shuts `to` down) or either side fails.
async fn forward(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    latency_us: Arc<AtomicU64>,
) -> io::Result<()> {
    let (queue, mut queued) = mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
    let read = async move {
        let mut buf = vec![0; 16 * 1024];
        loop {
            let n = from.read(&mut buf).await?;
            if n == 0 {
                return Ok(()); // the end: dropping `queue` lets the writer finish
            }
            let due = Instant::now() + Duration::from_micros(latency_us.load(Ordering::Relaxed));
            if queue.send((due, buf[..n].to_vec())).is_err() {
                return Ok(());
            }
        }
    };
    let write = async move {
        while let Some((due, chunk)) = queued.recv().await {
            tokio::time::sleep_until(due).await;
            to.write_all(&chunk).await?;
        }
        to.shutdown().await
    };
    tokio::try_join!(read, write).map(drop)
}
