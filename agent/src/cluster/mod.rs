//! The cluster plane: who leads, and how nodes' reports reach the leader.
//!
//! - `coordinator.rs`: the `Coordinator` trait, the `Claim` it publishes, and
//!   `Standalone`; `etcd.rs` and `kubernetes.rs` are the elected ones, each with the
//!   stores that keep decision state and demand history where the next leader reads it;
//! - `reporter.rs`: a node sending its report to the leader; `tls.rs`: mutual TLS for
//!   those reports;
//! - `identity.rs`: which node a report comes from (per-node HMAC tokens);
//! - `ingest.rs`: the leader's checks of each report and its node table;
//!   `aggregate.rs`: the table's fresh reports as one sample per pool and target.

pub mod aggregate;
pub mod coordinator;
#[cfg(feature = "etcd")]
pub mod etcd;
pub mod identity;
pub mod ingest;
#[cfg(feature = "kubernetes")]
pub mod kubernetes;
pub mod reporter;
#[cfg(feature = "tls")]
pub mod tls;
