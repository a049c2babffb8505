//! A TCP relay between an edge and Postgres that can be cut (connection refused, live
//! connections dropped) and restored on the same port.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

pub struct Relay {
    pub addr: SocketAddr,
    upstream: SocketAddr,
    inner: Arc<Mutex<Vec<JoinHandle<()>>>>,
    acceptor: Option<JoinHandle<()>>,
}

impl Relay {
    /// Starts relaying a fresh loopback port to `upstream`.
    pub async fn start(upstream: SocketAddr) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind relay");
        let addr = listener.local_addr().unwrap();
        let mut relay = Relay {
            addr,
            upstream,
            inner: Default::default(),
            acceptor: None,
        };
        relay.acceptor = Some(relay.accept_loop(listener));
        relay
    }

    /// A database URL that goes through the relay.
    pub fn url_for(&self, db_url: &str) -> String {
        db_url.replace("127.0.0.1:5432", &self.addr.to_string())
    }

    fn accept_loop(&self, listener: TcpListener) -> JoinHandle<()> {
        let (upstream, inner) = (self.upstream, self.inner.clone());
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let pipe = tokio::spawn(async move {
                    if let Ok(mut server) = TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
                inner.lock().unwrap().push(pipe);
            }
        })
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

    /// Listens again on the same port.
    pub async fn restore(&mut self) {
        let listener = TcpListener::bind(self.addr).await.expect("rebind relay");
        self.acceptor = Some(self.accept_loop(listener));
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.cut();
    }
}
