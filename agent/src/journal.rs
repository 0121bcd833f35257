//! The decision journal: one JSON object per line under `<state_dir>/journal/`, one
//! file per UTC day (`decisions-YYYY-MM-DD.jsonl`), files older than the retention
//! deleted when the day turns and at start.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;

use crate::brain::{MetricSample, Reason};

/// One journal line: a decision with its inputs, reasons and what became of it.
#[derive(Debug, Clone, Serialize)]
pub struct Entry<'a> {
    /// When the pass ran.
    pub at: DateTime<Utc>,
    /// The node that decided.
    pub node_id: &'a str,
    /// Pool.
    pub pool: &'a str,
    /// Nodes before.
    pub current: u32,
    /// Nodes decided.
    pub desired: u32,
    /// The on-demand share of `desired`.
    pub on_demand: u32,
    /// The spot share of `desired`.
    pub spot: u32,
    /// The pool's tier.
    pub tier: &'a str,
    /// Cost per hour of `desired`.
    pub hourly_cost: f64,
    /// Cost per hour of the whole fleet as planned this pass.
    pub fleet_hourly_cost: f64,
    /// The fleet ceiling, if any.
    pub budget_ceiling: Option<f64>,
    /// Target label and sample per target.
    pub inputs: Vec<Input<'a>>,
    /// Why.
    pub reasons: &'a [Reason],
    /// The same reasons in words, e.g. "capped by budget: 12 → 9 (basic tier, …)".
    pub explain: Vec<String>,
    /// `none`, `scaled`, `skipped` or `failed`.
    pub action: &'a str,
    /// Error or skip reason when the action was not taken.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// The group the pool is a member of; the group's own line says how it was sized.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<&'a str>,
}

/// One journal line for a group: how it was sized and how its size was allocated. It
/// has `group` where a pool's line has `pool`.
#[derive(Debug, Clone, Serialize)]
pub struct GroupEntry<'a> {
    /// When the pass ran.
    pub at: DateTime<Utc>,
    /// The node that decided.
    pub node_id: &'a str,
    /// Group.
    pub group: &'a str,
    /// `cheapest`, `spread` or `priority`.
    pub strategy: &'a str,
    /// Nodes its members held.
    pub current: u32,
    /// The size its targets ask for.
    pub desired: u32,
    /// What its members were given (after the budget and spill-overs).
    pub granted: u32,
    /// Target label and sample per target, over all members.
    pub inputs: Vec<Input<'a>>,
    /// Per member: share, grant, what held it, refusals and spill-overs.
    pub members: &'a [crate::engine::MemberOutcome],
    /// Why the group's size is what it is.
    pub reasons: &'a [Reason],
    /// The same reasons in words.
    pub explain: Vec<String>,
}

/// One target's input to a decision.
#[derive(Debug, Clone, Serialize)]
pub struct Input<'a> {
    /// Metric label.
    pub metric: &'a str,
    /// Target value.
    pub target: f64,
    /// The sample, absent when unavailable.
    pub sample: Option<MetricSample>,
    /// The demand forecast `predictive.horizon` ahead, when the pool forecasts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub forecast: Option<f64>,
    /// The forecast's trailing-day MASE, once a day has been scored.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mase: Option<f64>,
}

/// Appends entries and rotates by day.
#[derive(Debug)]
pub struct Journal {
    dir: PathBuf,
    retention_days: u32,
    open: Option<(NaiveDate, BufWriter<File>)>,
}

/// The journal file of `day`.
pub fn file_for(dir: &Path, day: NaiveDate) -> PathBuf {
    dir.join(format!("decisions-{}.jsonl", day.format("%Y-%m-%d")))
}

impl Journal {
    /// Opens (creating) `dir` and deletes files past the retention as of `now`.
    pub fn open(dir: PathBuf, retention_days: u32, now: DateTime<Utc>) -> std::io::Result<Self> {
        std::fs::create_dir_all(&dir)?;
        let journal = Self {
            dir,
            retention_days,
            open: None,
        };
        journal.expire(now.date_naive())?;
        Ok(journal)
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Changes the retention, e.g. after a reload.
    pub fn set_retention_days(&mut self, days: u32) {
        self.retention_days = days;
    }

    /// Writes one entry, to the file of the entry's day, and flushes it.
    pub fn write(&mut self, entry: &Entry<'_>) -> std::io::Result<()> {
        self.write_line(entry.at, entry)
    }

    /// Writes one group's entry.
    pub fn write_group(&mut self, entry: &GroupEntry<'_>) -> std::io::Result<()> {
        self.write_line(entry.at, entry)
    }

    fn write_line(&mut self, at: DateTime<Utc>, entry: &impl Serialize) -> std::io::Result<()> {
        let day = at.date_naive();
        if self.open.as_ref().is_none_or(|(d, _)| *d != day) {
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(file_for(&self.dir, day))?;
            self.open = Some((day, BufWriter::new(file)));
            self.expire(day)?;
        }
        if let Some((_, w)) = self.open.as_mut() {
            serde_json::to_writer(&mut *w, entry)?;
            w.write_all(b"\n")?;
            w.flush()?;
        }
        Ok(())
    }

    /// Deletes journal files of days before `today - retention_days`.
    fn expire(&self, today: NaiveDate) -> std::io::Result<()> {
        let Some(oldest_kept) =
            today.checked_sub_days(chrono::Days::new(u64::from(self.retention_days)))
        else {
            return Ok(());
        };
        for entry in std::fs::read_dir(&self.dir)? {
            let path = entry?.path();
            let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            let Some(date) = name
                .strip_prefix("decisions-")
                .and_then(|n| n.strip_suffix(".jsonl"))
            else {
                continue;
            };
            if let Ok(day) = NaiveDate::parse_from_str(date, "%Y-%m-%d")
                && day < oldest_kept
            {
                std::fs::remove_file(&path)?;
                tracing::info!(file = %path.display(), "deleted journal file past retention");
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn entry(at: DateTime<Utc>) -> Entry<'static> {
        Entry {
            at,
            node_id: "n",
            pool: "p",
            current: 1,
            desired: 2,
            on_demand: 2,
            spot: 0,
            tier: "premium",
            hourly_cost: 0.0,
            fleet_hourly_cost: 0.0,
            budget_ceiling: None,
            inputs: vec![],
            reasons: &[],
            explain: vec![],
            action: "scaled",
            detail: None,
            group: None,
        }
    }

    #[test]
    fn rotates_daily_and_deletes_past_retention() {
        let dir = tempfile::tempdir().unwrap();
        let jdir = dir.path().join("journal");
        let day = |d: u32| Utc.with_ymd_and_hms(2026, 3, d, 12, 0, 0).unwrap();
        std::fs::create_dir_all(&jdir).unwrap();
        std::fs::write(file_for(&jdir, day(1).date_naive()), "old\n").unwrap();
        std::fs::write(jdir.join("unrelated.txt"), "keep").unwrap();
        let mut j = Journal::open(jdir.clone(), 2, day(2)).unwrap();
        j.write(&entry(day(2))).unwrap();
        j.write(&entry(day(2))).unwrap();
        assert!(
            file_for(&jdir, day(1).date_naive()).exists(),
            "day 1 is within 2 days of day 2"
        );
        j.write(&entry(day(4))).unwrap();
        assert!(
            !file_for(&jdir, day(1).date_naive()).exists(),
            "day 1 is past retention on day 4"
        );
        assert!(jdir.join("unrelated.txt").exists());
        let lines = std::fs::read_to_string(file_for(&jdir, day(2).date_naive())).unwrap();
        assert_eq!(lines.lines().count(), 2);
        let v: serde_json::Value = serde_json::from_str(lines.lines().next().unwrap()).unwrap();
        assert_eq!(v["pool"], "p");
        assert_eq!(v["desired"], 2);
        assert!(file_for(&jdir, day(4).date_naive()).exists());
    }
}
