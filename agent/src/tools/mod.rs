//! The offline commands' engines, on traces and history rather than a live fleet:
//! `trace.rs` (`timestamp,value` CSVs on a regular grid), `analysis.rs` (`capstan
//! forecast`, `detect`), `simulate.rs` (`capstan simulate`), `tune.rs` (`capstan
//! tune`), `plot.rs` (their SVG figures), `rightsizing.rs` (`capstan rightsizing`) and
//! `nab.rs` (NAB's scoring rules, for the `nab_score` bench).

pub mod analysis;
pub mod nab;
pub mod plot;
pub mod rightsizing;
pub mod simulate;
pub mod trace;
pub mod tune;
