//! What the agent says about itself: its metrics (`metrics/`, every series declared
//! once), its status (`status.rs`: the `/v1/status` document, readiness and the loop's
//! heartbeat, shared between the loop and the HTTP server in `daemon/http.rs`), and
//! systemd's notification protocol (`sdnotify.rs`).

pub mod metrics;
pub mod redact;
pub mod sdnotify;
pub mod status;
