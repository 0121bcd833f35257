//! What outlives a pass: each pool's decision state (`memory.rs`), its demand and
//! usage a minute (`demand.rs`), and the journal of decisions (`journal.rs`).

pub mod demand;
pub mod journal;
pub mod memory;
