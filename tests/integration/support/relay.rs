//! A TCP relay between an edge and Postgres that can be cut (connection refused, live
//! connections dropped) and restored on the same port, and that can add latency.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
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
    /// Per connection, in the order they were opened: how many times the client spoke after
    /// the server (or first), i.e. the round trips it waited for.
    turns: Arc<Mutex<Vec<Arc<AtomicU64>>>>,
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
            turns: Default::default(),
        };
        relay.acceptor = Some(relay.accept_loop(listener));
        relay
    }

    /// A database URL that goes through the relay.
    pub fn url_for(&self, db_url: &str) -> String {
        db_url.replace("127.0.0.1:5432", &self.addr.to_string())
    }

    fn accept_loop(&self, listener: TcpListener) -> JoinHandle<()> {
        let (upstream, inner, latency, turns) = (
            self.upstream.clone(),
            self.inner.clone(),
            self.latency_us.clone(),
            self.turns.clone(),
        );
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let latency = latency.clone();
                let upstream = *upstream.lock().unwrap();
                let counted = Arc::new(AtomicU64::new(0));
                turns.lock().unwrap().push(counted.clone());
                let pipe = tokio::spawn(async move {
                    if let Ok(server) = TcpStream::connect(upstream).await {
                        let (client_rx, client_tx) = client.into_split();
                        let (server_rx, server_tx) = server.into_split();
                        // Who sent the last chunk: the client's next one after the server's
                        // is a new round trip.
                        let server_spoke = Arc::new(AtomicBool::new(true));
                        let client_side = Turns {
                            count: Some(counted),
                            server_spoke: server_spoke.clone(),
                        };
                        let server_side = Turns {
                            count: None,
                            server_spoke,
                        };
                        let _ = tokio::try_join!(
                            forward(client_rx, server_tx, latency.clone(), client_side),
                            forward(server_rx, client_tx, latency, server_side),
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

    /// The round trips each connection opened so far has waited for, in opening order.
    pub fn round_trips(&self) -> Vec<u64> {
        self.turns
            .lock()
            .unwrap()
            .iter()
            .map(|t| t.load(Ordering::SeqCst))
            .collect()
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
/// One direction's part in counting round trips.
struct Turns {
    /// Counts the client's turns (the client-to-server direction only).
    count: Option<Arc<AtomicU64>>,
    server_spoke: Arc<AtomicBool>,
}

impl Turns {
    fn chunk(&self) {
        match &self.count {
            Some(count) => {
                if self.server_spoke.swap(false, Ordering::SeqCst) {
                    count.fetch_add(1, Ordering::SeqCst);
                }
            }
            None => self.server_spoke.store(true, Ordering::SeqCst),
        }
    }
}

async fn forward(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    latency_us: Arc<AtomicU64>,
    turns: Turns,
) -> io::Result<()> {
    let (queue, mut queued) = mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
    let read = async move {
        let mut buf = vec![0; 16 * 1024];
        loop {
            let n = from.read(&mut buf).await?;
            if n == 0 {
                return Ok(()); // the end: dropping `queue` lets the writer finish
            }
            turns.chunk();
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
