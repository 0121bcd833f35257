//! Capstan's agent: roles, coordination, aggregation, the planner, the actuator,
//! the journal and the HTTP server. The binary in `main.rs` is a thin CLI on top.

pub mod brain;
