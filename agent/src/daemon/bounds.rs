//! What a client may cost the agent's HTTP servers, enforced by the server and its
//! acceptor rather than by handlers: at most `agent.max_connections` connections open
//! at once on each listener (more are closed as they arrive, before any TLS handshake),
//! the first request on a new connection within `agent.request_timeout` (a connection
//! that sends nothing is closed), and every request's head within it too (hyper's
//! header timer, so a client sending a byte a second is cut off, and so is a kept-alive
//! connection left idle). A report's body has the same time, in the reports middleware.
//! The open-file limit is raised to its hard limit at start, and the connection limit
//! kept under it, so connections cannot take the descriptors the leader's own cloud and
//! coordinator calls need.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum_server::accept::Accept;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Descriptors kept free of connections for the agent's own files, cloud and
/// coordinator calls.
const RESERVED_FILES: u64 = 256;

/// The bounds of one listener.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    /// Connections open at once.
    pub max_connections: usize,
    /// Time to send a request's head (and the first request on a connection).
    pub request_timeout: Duration,
}

/// Raises this process's open-file soft limit to its hard limit, and returns how many
/// connections a listener may then hold: `wanted`, or fewer when the limit is low
/// (said in the log). `listeners` share the limit.
pub fn connections_within_file_limit(wanted: usize, listeners: usize) -> usize {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut limit = getrlimit(Resource::Nofile);
    if limit.current < limit.maximum {
        let raised = rustix::process::Rlimit {
            current: limit.maximum,
            maximum: limit.maximum,
        };
        match setrlimit(Resource::Nofile, raised) {
            Ok(()) => limit = raised,
            Err(e) => tracing::debug!(error = %e, "cannot raise the open-file limit"),
        }
    }
    let Some(files) = limit.current else {
        return wanted;
    };
    let per_listener = files.saturating_sub(RESERVED_FILES) / listeners.max(1) as u64;
    let allowed = usize::try_from(per_listener).unwrap_or(usize::MAX).max(16);
    if allowed < wanted {
        tracing::warn!(
            open_files = files,
            max_connections = wanted,
            allowed,
            "the open-file limit is too low for agent.max_connections; fewer connections are taken (raise LimitNOFILE)"
        );
        return allowed;
    }
    wanted
}

/// An acceptor that lets a connection through only while it holds one of a fixed
/// number of slots, for as long as the connection lives.
#[derive(Debug, Clone)]
pub struct Bounded<A> {
    inner: A,
    slots: Arc<Semaphore>,
    refused: Arc<AtomicU64>,
}

impl<A> Bounded<A> {
    /// At most `max` connections through `inner` at once.
    pub fn new(inner: A, max: usize) -> Self {
        Self {
            inner,
            slots: Arc::new(Semaphore::new(max)),
            refused: Arc::new(AtomicU64::new(0)),
        }
    }
}

/// A connection and the slot it holds.
#[derive(Debug)]
pub struct Slot<S> {
    inner: S,
    _slot: OwnedSemaphorePermit,
}

type Accepted<S, V> = Pin<Box<dyn Future<Output = io::Result<(Slot<S>, V)>> + Send>>;

impl<A, I, S> Accept<I, S> for Bounded<A>
where
    A: Accept<I, S>,
    A::Future: Send + 'static,
    A::Stream: Send + 'static,
    A::Service: Send + 'static,
{
    type Stream = Slot<A::Stream>;
    type Service = A::Service;
    type Future = Accepted<A::Stream, A::Service>;

    fn accept(&self, stream: I, service: S) -> Self::Future {
        // Without a slot the stream is dropped here: the connection closes at once.
        let Ok(slot) = self.slots.clone().try_acquire_owned() else {
            let n = self.refused.fetch_add(1, Ordering::Relaxed) + 1;
            if n.is_power_of_two() {
                tracing::warn!(
                    refused = n,
                    "connections refused: agent.max_connections are open"
                );
            }
            return Box::pin(std::future::ready(Err(io::Error::other(
                "too many connections (agent.max_connections)",
            ))));
        };
        let accepted = self.inner.accept(stream, service);
        Box::pin(async move {
            let (stream, service) = accepted.await?;
            Ok((
                Slot {
                    inner: stream,
                    _slot: slot,
                },
                service,
            ))
        })
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Slot<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Slot<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// A server on `listener` within `bounds`, its connections accepted by `inner` (TLS,
/// or nothing) once they hold a slot; stopped through `handle`.
pub fn server<A>(
    listener: std::net::TcpListener,
    inner: A,
    bounds: Bounds,
    handle: axum_server::Handle<SocketAddr>,
) -> io::Result<axum_server::Server<SocketAddr, Bounded<A>>> {
    let mut server = axum_server::from_tcp(listener)?
        .acceptor(Bounded::new(inner, bounds.max_connections))
        .first_request_timeout(bounds.request_timeout)
        .handle(handle);
    server
        .http_builder()
        .http1()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(bounds.request_timeout);
    Ok(server)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_connection_limit_stays_under_the_open_file_limit() {
        let files = rustix::process::getrlimit(rustix::process::Resource::Nofile);
        let n = connections_within_file_limit(usize::MAX, 2);
        // Raised to the hard limit, then kept under it.
        match files.maximum {
            Some(hard) => {
                let room = usize::try_from(hard.saturating_sub(RESERVED_FILES) / 2).unwrap();
                assert_eq!(n, room.max(16));
            }
            None => assert_eq!(n, usize::MAX),
        }
        assert_eq!(connections_within_file_limit(64, 1), 64);
    }
}
