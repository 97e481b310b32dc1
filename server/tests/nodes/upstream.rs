//! A provider that misbehaves at the TCP level: it reads a request and then never answers, or
//! resets the connection. It counts the connections it accepted and those still open, so a test
//! can tell that the proxy closed every connection it opened (nothing leaked).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::io::AsyncReadExt as _;
use tokio::net::{TcpListener, TcpStream};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Misbehaviour {
    /// Reads the request and keeps the connection open without a byte of answer.
    Hang,
    /// Reads the request's first bytes and resets the connection (RST).
    Reset,
}

#[derive(Default)]
struct Counts {
    accepted: AtomicUsize,
    open: AtomicUsize,
}

pub struct FaultyUpstream {
    pub addr: SocketAddr,
    counts: Arc<Counts>,
    task: tokio::task::JoinHandle<()>,
}

impl FaultyUpstream {
    pub async fn spawn(misbehaviour: Misbehaviour) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind a faulty upstream");
        let addr = listener.local_addr().unwrap();
        let counts = Arc::new(Counts::default());
        let task = tokio::spawn({
            let counts = counts.clone();
            async move {
                while let Ok((stream, _)) = listener.accept().await {
                    counts.accepted.fetch_add(1, Ordering::SeqCst);
                    counts.open.fetch_add(1, Ordering::SeqCst);
                    tokio::spawn(serve(stream, misbehaviour, counts.clone()));
                }
            }
        });
        Self { addr, counts, task }
    }

    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.counts.accepted.load(Ordering::SeqCst)
    }

    /// Connections the other side has not closed yet.
    pub fn open(&self) -> usize {
        self.counts.open.load(Ordering::SeqCst)
    }
}

impl Drop for FaultyUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(mut stream: TcpStream, misbehaviour: Misbehaviour, counts: Arc<Counts>) {
    let mut buffer = [0u8; 4096];
    match misbehaviour {
        Misbehaviour::Hang => {
            // Until the caller closes its side (read returns 0) or resets it.
            while matches!(stream.read(&mut buffer).await, Ok(n) if n > 0) {}
        }
        Misbehaviour::Reset => {
            let _ = stream.read(&mut buffer).await;
            let _ = stream.set_zero_linger();
        }
    }
    drop(stream);
    counts.open.fetch_sub(1, Ordering::SeqCst);
}
