//! The brain: pure decision code. Nothing in this crate does I/O, reads a clock or
//! draws random numbers; time comes in as an argument. The daemon, `capstan plan`,
//! `capstan simulate` and `capstan tune` all drive this same code (the agent
//! re-exports it as `capstan::brain`).
//!
//! It is a crate of its own so that its hot loops (the planner, the budget allocator,
//! the forecasters) are built at full speed while the rest of the agent, whose code
//! mostly waits on I/O, is built for size: a node keeps fewer code pages resident.

pub mod anomaly;
pub mod budget;
pub mod emergency;
pub mod flap;
pub mod fleet;
pub mod forecast;
pub mod group;
pub mod planner;
pub mod predictive;
pub mod reason;
pub mod scale_in;
pub mod schedule;
pub mod simulate;
pub mod spot;
pub mod steps;

#[cfg(test)]
mod budget_tests;
#[cfg(test)]
mod fleet_tests;
#[cfg(test)]
mod group_tests;
#[cfg(test)]
mod planner_tests;

pub use planner::{
    Decision, History, MetricSample, Observed, Policy, TargetSpec, on_demand_share, plan,
};
pub use reason::{Direction, Reason};
