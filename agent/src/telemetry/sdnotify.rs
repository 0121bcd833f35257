//! The systemd notification protocol (`sd_notify(3)`), spoken directly: one datagram
//! per message to the socket named in `NOTIFY_SOCKET`. With `Type=notify` the agent
//! says `READY=1` once it serves and runs its loop, `WATCHDOG=1` from the main loop at
//! half of `WatchdogSec`, `STATUS=...` for `systemctl status`, and `STOPPING=1` on the
//! way out. Outside systemd (no `NOTIFY_SOCKET`) every call does nothing.

use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

/// A connection to the service manager, or nothing.
#[derive(Debug)]
pub struct Notifier {
    target: Option<(UnixDatagram, SocketAddr)>,
    watchdog: Option<Duration>,
}

impl Notifier {
    /// From `NOTIFY_SOCKET`, `WATCHDOG_USEC` and `WATCHDOG_PID` as systemd sets them.
    pub fn from_env() -> Self {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        Self::new(
            var("NOTIFY_SOCKET").as_deref(),
            var("WATCHDOG_USEC").as_deref(),
            var("WATCHDOG_PID").as_deref(),
        )
    }

    /// From the values of those variables.
    pub fn new(
        socket: Option<&str>,
        watchdog_usec: Option<&str>,
        watchdog_pid: Option<&str>,
    ) -> Self {
        let target = socket.and_then(|s| {
            let addr = socket_addr(s)
                .map_err(|e| tracing::warn!(socket = s, error = %e, "NOTIFY_SOCKET is unusable"))
                .ok()?;
            let sock = UnixDatagram::unbound()
                .map_err(|e| tracing::warn!(error = %e, "cannot open a notify socket"))
                .ok()?;
            Some((sock, addr))
        });
        let for_us = watchdog_pid.is_none_or(|pid| pid.parse() == Ok(std::process::id()));
        let watchdog = watchdog_usec
            .and_then(|u| u.parse::<u64>().ok())
            .filter(|u| *u > 0 && for_us)
            .map(Duration::from_micros);
        Self { target, watchdog }
    }

    /// Whether a service manager listens.
    pub const fn enabled(&self) -> bool {
        self.target.is_some()
    }

    /// How often to ping the watchdog: half its timeout, when systemd set one.
    pub fn watchdog_interval(&self) -> Option<Duration> {
        self.watchdog.map(|w| w / 2)
    }

    /// Sends `state` (newline-separated `KEY=VALUE` lines). Failures are logged once
    /// per call and never stop the agent.
    pub fn notify(&self, state: &str) {
        if let Some((sock, addr)) = &self.target
            && let Err(e) = sock.send_to_addr(state.as_bytes(), addr)
        {
            tracing::warn!(error = %e, "cannot notify the service manager");
        }
    }

    /// `READY=1` with a status line.
    pub fn ready(&self, status: &str) {
        self.notify(&format!("READY=1\nSTATUS={status}"));
    }

    /// `WATCHDOG=1`.
    pub fn watchdog(&self) {
        if self.watchdog.is_some() {
            self.notify("WATCHDOG=1");
        }
    }

    /// `STATUS=...`.
    pub fn status(&self, status: &str) {
        self.notify(&format!("STATUS={status}"));
    }

    /// `STOPPING=1`.
    pub fn stopping(&self) {
        self.notify("STOPPING=1\nSTATUS=stopping");
    }
}

fn socket_addr(s: &str) -> std::io::Result<SocketAddr> {
    if let Some(name) = s.strip_prefix('@') {
        use std::os::linux::net::SocketAddrExt;
        SocketAddr::from_abstract_name(name.as_bytes())
    } else {
        SocketAddr::from_pathname(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outside_systemd_nothing_happens() {
        let n = Notifier::new(None, None, None);
        assert!(!n.enabled());
        assert_eq!(n.watchdog_interval(), None);
        n.ready("x");
        n.watchdog();
    }

    #[test]
    fn messages_reach_the_socket_and_the_watchdog_runs_at_half_its_timeout() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let listener = UnixDatagram::bind(&path).unwrap();
        listener
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let pid = std::process::id().to_string();
        let n = Notifier::new(path.to_str(), Some("30000000"), Some(&pid));
        assert_eq!(n.watchdog_interval(), Some(Duration::from_secs(15)));
        n.ready("serving");
        n.watchdog();
        let mut buf = [0u8; 256];
        let len = listener.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"READY=1\nSTATUS=serving");
        let len = listener.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"WATCHDOG=1");
    }

    #[test]
    fn a_watchdog_meant_for_another_process_is_ignored() {
        let n = Notifier::new(None, Some("30000000"), Some("1"));
        assert_eq!(n.watchdog_interval(), None);
    }

    #[test]
    fn abstract_socket_names_are_understood() {
        let name = format!("capstan-test-{}", std::process::id());
        use std::os::linux::net::SocketAddrExt;
        let listener =
            UnixDatagram::bind_addr(&SocketAddr::from_abstract_name(name.as_bytes()).unwrap())
                .unwrap();
        listener
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let n = Notifier::new(Some(&format!("@{name}")), None, None);
        n.status("hello");
        let mut buf = [0u8; 64];
        let len = listener.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"STATUS=hello");
    }
}
