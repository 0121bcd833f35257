//! The brain: pure decision code. Nothing in this tree does I/O, reads a clock or
//! draws random numbers; time comes in as an argument. The daemon, `capstan plan`
//! and (later) `capstan simulate` all drive this same code.

pub mod anomaly;
pub mod budget;
pub mod emergency;
pub mod flap;
pub mod fleet;
pub mod forecast;
pub mod group;
pub mod planner;
pub mod predictive;
pub mod schedule;
pub mod spot;

#[cfg(test)]
mod budget_tests;
#[cfg(test)]
mod fleet_tests;
#[cfg(test)]
mod group_tests;
#[cfg(test)]
mod planner_tests;

pub use planner::{
    Decision, Direction, History, MetricSample, Observed, Policy, Reason, TargetSpec,
    on_demand_share, plan,
};
