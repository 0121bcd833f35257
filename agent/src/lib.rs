//! Capstan's agent: roles, coordination, aggregation, the planner, the actuator,
//! the journal and the HTTP server. The binary in `main.rs` is a thin CLI on top.

pub mod aggregate;
pub mod analysis;
pub use capstan_brain as brain;
pub mod build;
pub mod cli;
pub mod clock;
pub mod coordinator;
pub mod daemon;
pub mod decisions;
pub mod engine;
#[cfg(feature = "etcd")]
pub mod etcd;
pub mod history;
pub mod http;
pub mod ingest;
pub mod instrumented;
pub mod journal;
#[cfg(feature = "kubernetes")]
pub mod kubernetes;
pub mod leader;
pub mod metrics;
pub mod nab;
pub mod notices;
pub mod promql;
pub mod reporter;
pub mod rightsizing;
pub mod sdnotify;
pub mod simulate;
#[cfg(test)]
mod testutil;
#[cfg(feature = "tls")]
pub mod tls;
pub mod trace;
pub mod tune;
pub mod workload;
