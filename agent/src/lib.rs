//! Capstan's agent. The folders are the architecture:
//!
//! - `daemon/`: `capstan run`'s process: the loop and its signals, setup, this node's
//!   collectors, workload scrapes and interruption notices;
//! - `pass/`: one planning pass: observe → decide (`brain`) → act, and the leader's
//!   tick around it;
//! - `cluster/`: coordinators (who leads), reports from nodes to the leader;
//! - `state/`: what outlives a pass: decision state, demand history, the journal;
//! - `telemetry/`: metrics, the HTTP endpoints, systemd notification;
//! - `tools/`: the offline commands (forecast, detect, simulate, tune, rightsizing);
//! - `cli/`: the `capstan` command line; the binary in `main.rs` is a thin shell on it.

pub use capstan_brain as brain;
pub mod build;
pub mod cli;
pub mod clock;
pub mod cluster;
pub mod daemon;
#[cfg(test)]
mod layout_tests;
pub mod net;
pub mod pass;
pub mod state;
pub mod telemetry;
#[cfg(test)]
mod testutil;
pub mod tools;
