//! A TCP proxy of the tests' own, between `ferry` and a database, for network
//! faults: `cut` drops every open connection mid-stream (as a lost network
//! does), `down` refuses new connections until `up` (a side that is
//! unreachable). Written by hand: it is a test fixture of a few lines over
//! tokio's `copy_bidirectional`, and no crate offers the fault switches.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::net::{TcpListener, TcpStream};
use tokio::task::AbortHandle;

pub struct Proxy {
    pub port: u16,
    down: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<AbortHandle>>>,
    /// Connections cut so far.
    pub cuts: Arc<AtomicU64>,
    accept: AbortHandle,
}

impl Proxy {
    /// A proxy on a free loopback port forwarding to `127.0.0.1:upstream`.
    pub async fn start(upstream: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("proxy bind");
        let port = listener.local_addr().expect("proxy address").port();
        let down = Arc::new(AtomicBool::new(false));
        let conns: Arc<Mutex<Vec<AbortHandle>>> = Arc::default();
        let (d, c) = (down.clone(), conns.clone());
        let accept = tokio::spawn(async move {
            loop {
                let Ok((mut client, _)) = listener.accept().await else {
                    continue;
                };
                if d.load(Ordering::SeqCst) {
                    drop(client); // refused: closed at once
                    continue;
                }
                let task = tokio::spawn(async move {
                    if let Ok(mut server) = TcpStream::connect(("127.0.0.1", upstream)).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
                let mut list = c.lock().expect("proxy connections");
                list.retain(|h| !h.is_finished());
                list.push(task.abort_handle());
            }
        })
        .abort_handle();
        Proxy {
            port,
            down,
            conns,
            cuts: Arc::default(),
            accept,
        }
    }

    /// Drop every open connection (both directions, mid-stream).
    pub fn cut(&self) -> usize {
        let list: Vec<AbortHandle> = std::mem::take(&mut *self.conns.lock().expect("proxy"));
        let n = list.iter().filter(|h| !h.is_finished()).count();
        for h in list {
            h.abort();
        }
        self.cuts.fetch_add(n as u64, Ordering::SeqCst);
        n
    }

    /// Unreachable: open connections are cut and new ones refused until [`Proxy::up`].
    pub fn down(&self) {
        self.down.store(true, Ordering::SeqCst);
        self.cut();
    }

    pub fn up(&self) {
        self.down.store(false, Ordering::SeqCst);
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        let list = self.conns.lock().expect("proxy");
        list.iter().filter(|h| !h.is_finished()).count()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut();
    }
}
