//! A small TCP proxy on 127.0.0.1 in front of a store server, to make the
//! store slow or hung on demand: it passes bytes through, or holds each
//! chunk it reads for a fixed delay before forwarding it, or stalls
//! (accepts connections, reads nothing and forwards nothing) until it is
//! told to pass again. It can also forget the connections open at one
//! moment, as a firewall or NAT that dropped them would: they carry nothing
//! more, without a reset, while new connections pass.
//!
//! Dropping the proxy stops it and closes every connection it carries.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU8, AtomicU64, Ordering},
    },
    time::Duration,
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{
        TcpListener, TcpStream,
        tcp::{OwnedReadHalf, OwnedWriteHalf},
    },
    task::{JoinHandle, JoinSet},
};

/// What the proxy does with the bytes it reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Forward at once.
    Pass = 0,
    /// Hold each chunk read (either direction) for the proxy's delay.
    Slow = 1,
    /// Forward nothing (the chunk already read is held until the mode
    /// changes).
    Stall = 2,
}

/// The handle that switches a running proxy's mode; cheap to clone and
/// usable from any thread.
#[derive(Debug, Clone)]
pub(crate) struct ProxyControl(Arc<ControlState>);

#[derive(Debug)]
struct ControlState {
    mode: AtomicU8,
    /// Bumped by [`ProxyControl::forget_open`]; a connection accepted at an
    /// earlier value forwards nothing more.
    epoch: AtomicU64,
}

impl ProxyControl {
    /// Switches the mode for every connection, the open ones included.
    pub(crate) fn set(&self, mode: Mode) {
        self.0.mode.store(mode as u8, Ordering::SeqCst);
    }

    /// Forwards nothing more, ever, on the connections open now, and
    /// neither closes nor resets them; connections opened later go by the
    /// mode.
    pub(crate) fn forget_open(&self) {
        self.0.epoch.fetch_add(1, Ordering::SeqCst);
    }

    fn get(&self) -> Mode {
        match self.0.mode.load(Ordering::SeqCst) {
            1 => Mode::Slow,
            2 => Mode::Stall,
            _ => Mode::Pass,
        }
    }

    fn epoch(&self) -> u64 {
        self.0.epoch.load(Ordering::SeqCst)
    }

    /// Whether a connection accepted at `epoch` still forwards, and how.
    fn mode_for(&self, epoch: u64) -> Mode {
        if self.epoch() == epoch {
            self.get()
        } else {
            Mode::Stall
        }
    }
}

/// A running proxy.
#[derive(Debug)]
pub(crate) struct SlowProxy {
    port: u16,
    control: ProxyControl,
    task: JoinHandle<()>,
}

impl SlowProxy {
    /// Listens on a free 127.0.0.1 port and forwards to `upstream` (a
    /// 127.0.0.1 port), adding `delay` per chunk in [`Mode::Slow`].
    pub(crate) async fn start(upstream: u16, delay: Duration) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let control = ProxyControl(Arc::new(ControlState {
            mode: AtomicU8::new(Mode::Pass as u8),
            epoch: AtomicU64::new(0),
        }));
        let shared = control.clone();
        let task = tokio::spawn(async move {
            // Dropping the set (when the task is aborted) aborts every pipe.
            let mut pipes = JoinSet::new();
            while let Ok((client, _)) = listener.accept().await {
                while pipes.try_join_next().is_some() {}
                let control = shared.clone();
                let epoch = control.epoch();
                pipes.spawn(async move {
                    let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)).await else {
                        return;
                    };
                    let _ = client.set_nodelay(true);
                    let _ = server.set_nodelay(true);
                    let (client_read, client_write) = client.into_split();
                    let (server_read, server_write) = server.into_split();
                    tokio::join!(
                        pump(client_read, server_write, &control, epoch, delay),
                        pump(server_read, client_write, &control, epoch, delay),
                    );
                });
            }
        });
        Ok(Self {
            port,
            control,
            task,
        })
    }

    /// The port to connect to instead of the server's.
    pub(crate) fn port(&self) -> u16 {
        self.port
    }

    /// The handle that switches the mode.
    pub(crate) fn control(&self) -> ProxyControl {
        self.control.clone()
    }
}

impl Drop for SlowProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Copies one direction of a connection accepted at `epoch` until either
/// side closes.
async fn pump(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    control: &ProxyControl,
    epoch: u64,
    delay: Duration,
) {
    let mut buf = vec![0_u8; 16 * 1024];
    loop {
        // A stalled proxy reads nothing new either.
        while control.mode_for(epoch) == Mode::Stall {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        loop {
            match control.mode_for(epoch) {
                Mode::Pass => break,
                Mode::Slow => {
                    tokio::time::sleep(delay).await;
                    break;
                }
                Mode::Stall => tokio::time::sleep(Duration::from_millis(5)).await,
            }
        }
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}
