//! The decision journal: one JSON object per line under `<state_dir>/journal/`, one
//! file per UTC day (`decisions-YYYY-MM-DD.jsonl`), files older than the retention
//! deleted when the day turns and at start, the whole bounded by `journal.max_bytes`
//! where set, and every line mirrored to standard output with `journal.stdout`.

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
    /// `none`, `scaled`, `skipped`, `failed`; `submitted` (written to disk before the
    /// target is sent), `in_flight` (an operation the cloud is carrying out).
    pub action: &'a str,
    /// Error or skip reason when the action was not taken.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// On a `scaled` line: the size the call was sent from. It differs from `current`
    /// where the cloud finished the call after the pass that sent it (an operation
    /// that takes minutes), and a later pass writes the line.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<u32>,
    /// The group the pool is a member of; the group's own line says how it was sized.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<&'a str>,
}

/// One journal line for a group: how it was sized and how its size was allocated. It
/// has `group` where a pool's line has `pool`.
#[derive(Debug, Clone, Serialize)]
pub struct GroupEntry<'a, M> {
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
    /// Per member: share, grant, what held it, refusals and spill-overs (the pass's
    /// member outcomes).
    pub members: &'a [M],
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

/// Where the journal goes and how much of it is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Days a file is kept.
    pub retention_days: u32,
    /// The most bytes the files may take together; `None`: bounded by days alone.
    pub max_bytes: Option<u64>,
    /// Whether every line also goes to standard output.
    pub stdout: bool,
}

impl Limits {
    /// From the configuration's `[journal]`.
    pub fn from_config(j: &capstan_config::Journal) -> Self {
        Self {
            retention_days: j.retention_days,
            max_bytes: j.max_bytes,
            stdout: j.stdout,
        }
    }
}

/// Appends entries and rotates by day, and by size within `max_bytes`: when the day's
/// file reaches half of it, the file becomes the day's earlier part
/// (`decisions-YYYY-MM-DD.1.jsonl`, replacing an older one) and a new file is begun;
/// then the oldest files are deleted until the journal fits. Lines are never split.
#[derive(Debug)]
pub struct Journal {
    dir: PathBuf,
    limits: Limits,
    open: Option<Open>,
    /// Bytes of the journal's files, as last counted plus what was written since.
    total: u64,
}

#[derive(Debug)]
struct Open {
    day: NaiveDate,
    file: BufWriter<File>,
    bytes: u64,
}

/// The journal file of `day`.
pub fn file_for(dir: &Path, day: NaiveDate) -> PathBuf {
    dir.join(format!("decisions-{}.jsonl", day.format("%Y-%m-%d")))
}

/// The earlier part of `day`'s file, once the size bound split it.
fn earlier_part(dir: &Path, day: NaiveDate) -> PathBuf {
    dir.join(format!("decisions-{}.1.jsonl", day.format("%Y-%m-%d")))
}

/// A journal file's day and part (0: the earlier part, 1: the day's current file), for
/// ordering oldest first; `None` for a file that is not the journal's.
fn parse_name(name: &str) -> Option<(NaiveDate, u8)> {
    let rest = name.strip_prefix("decisions-")?.strip_suffix(".jsonl")?;
    let (date, part) = match rest.strip_suffix(".1") {
        Some(date) => (date, 0),
        None => (rest, 1),
    };
    NaiveDate::parse_from_str(date, "%Y-%m-%d")
        .ok()
        .map(|d| (d, part))
}

impl Journal {
    /// Opens (creating) `dir` and deletes files past the retention and the size bound
    /// as of `now`.
    pub fn open(dir: PathBuf, limits: Limits, now: DateTime<Utc>) -> std::io::Result<Self> {
        std::fs::create_dir_all(&dir)?;
        let mut journal = Self {
            dir,
            limits,
            open: None,
            total: 0,
        };
        journal.expire(now.date_naive())?;
        Ok(journal)
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Changes the limits, e.g. after a reload; a smaller bound applies at the next write.
    pub fn set_limits(&mut self, limits: Limits) {
        self.limits = limits;
    }

    /// Writes one entry, to the file of the entry's day, and flushes it.
    pub fn write(&mut self, entry: &Entry<'_>) -> std::io::Result<()> {
        self.write_line(entry.at, entry, false)
    }

    /// Writes one entry and waits until it is on the disk (`fdatasync`): for an action
    /// about to be sent, whose record must outlive a crash right after it.
    pub fn write_durably(&mut self, entry: &Entry<'_>) -> std::io::Result<()> {
        self.write_line(entry.at, entry, true)
    }

    /// Writes one group's entry.
    pub fn write_group<M: Serialize>(&mut self, entry: &GroupEntry<'_, M>) -> std::io::Result<()> {
        self.write_line(entry.at, entry, false)
    }

    fn write_line(
        &mut self,
        at: DateTime<Utc>,
        entry: &impl Serialize,
        durable: bool,
    ) -> std::io::Result<()> {
        let mut line = serde_json::to_vec(entry)?;
        line.push(b'\n');
        // The disk first: a line on standard output is already on disk (a reader of the
        // stream that then looks at the files finds it). A failed disk write still goes
        // to standard output, where a log pipeline keeps it.
        let written = self.write_to_disk(at, &line, durable);
        if self.limits.stdout {
            // The same bytes as on disk; a closed stdout must not stop the journal.
            let mut out = std::io::stdout().lock();
            if let Err(e) = out.write_all(&line).and_then(|()| out.flush()) {
                tracing::debug!(error = %e, "journal line not written to stdout");
            }
        }
        written
    }

    fn write_to_disk(
        &mut self,
        at: DateTime<Utc>,
        line: &[u8],
        durable: bool,
    ) -> std::io::Result<()> {
        let day = at.date_naive();
        if self.open.as_ref().is_none_or(|o| o.day != day) {
            self.open_day(day)?;
            self.expire(day)?;
        }
        if let Some(max) = self.limits.max_bytes
            && self
                .open
                .as_ref()
                .is_some_and(|o| o.bytes > 0 && o.bytes + line.len() as u64 > max / 2)
        {
            // The day's file is half the bound: it becomes the day's earlier part.
            let earlier = earlier_part(&self.dir, day);
            self.open = None;
            std::fs::rename(file_for(&self.dir, day), &earlier)?;
            self.open_day(day)?;
            self.expire(day)?;
        }
        if let Some(o) = self.open.as_mut() {
            o.file.write_all(line)?;
            o.file.flush()?;
            if durable {
                o.file.get_ref().sync_data()?;
            }
            o.bytes += line.len() as u64;
            self.total += line.len() as u64;
        }
        if self.limits.max_bytes.is_some_and(|max| self.total > max) {
            self.expire(day)?;
        }
        Ok(())
    }

    fn open_day(&mut self, day: NaiveDate) -> std::io::Result<()> {
        let path = file_for(&self.dir, day);
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        let bytes = file.metadata()?.len();
        self.open = Some(Open {
            day,
            file: BufWriter::new(file),
            bytes,
        });
        Ok(())
    }

    /// Deletes files of days before `today - retention_days`, then, oldest first, files
    /// until the journal fits `max_bytes` (never the file being written); recounts the
    /// journal's size.
    fn expire(&mut self, today: NaiveDate) -> std::io::Result<()> {
        let oldest_kept =
            today.checked_sub_days(chrono::Days::new(u64::from(self.limits.retention_days)));
        let mut files = Vec::new();
        for entry in std::fs::read_dir(&self.dir)? {
            let entry = entry?;
            let path = entry.path();
            let Some(key) = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(parse_name)
            else {
                continue;
            };
            if oldest_kept.is_some_and(|oldest| key.0 < oldest) {
                std::fs::remove_file(&path)?;
                tracing::info!(file = %path.display(), "deleted journal file past retention");
                continue;
            }
            files.push((key, entry.metadata()?.len(), path));
        }
        files.sort_unstable();
        self.total = files.iter().map(|(_, len, _)| len).sum();
        let current = self.open.as_ref().map(|o| (o.day, 1));
        if let Some(max) = self.limits.max_bytes {
            for (key, len, path) in &files {
                if self.total <= max {
                    break;
                }
                if Some(*key) == current {
                    continue;
                }
                std::fs::remove_file(path)?;
                self.total -= len;
                tracing::info!(file = %path.display(), max_bytes = max, "deleted journal file over journal.max_bytes");
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn limits(retention_days: u32, max_bytes: Option<u64>) -> Limits {
        Limits {
            retention_days,
            max_bytes,
            stdout: false,
        }
    }

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
            from: Some(1),
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
        let mut j = Journal::open(jdir.clone(), limits(2, None), day(2)).unwrap();
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

    /// Journal bytes on disk.
    fn size(dir: &Path) -> u64 {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().metadata().unwrap().len())
            .sum()
    }

    #[test]
    fn max_bytes_bounds_the_journal_deleting_the_oldest_first_and_keeps_whole_lines() {
        let dir = tempfile::tempdir().unwrap();
        let jdir = dir.path().join("journal");
        let at = |d: u32, n: u32| Utc.with_ymd_and_hms(2026, 3, d, 0, 0, n % 60).unwrap();
        let line_len = serde_json::to_vec(&entry(at(1, 0))).unwrap().len() as u64 + 1;
        let max = 40 * line_len;
        let mut j = Journal::open(jdir.clone(), limits(90, Some(max)), at(1, 0)).unwrap();
        // Three days of 50 lines: more than the bound holds.
        for d in 1..=3 {
            for n in 0..50 {
                j.write(&entry(at(d, n))).unwrap();
                assert!(
                    size(&jdir) <= max,
                    "day {d} line {n}: {} > {max}",
                    size(&jdir)
                );
            }
        }
        // What is left is the newest: day 3's earlier part and its current file, whole
        // lines only, and nothing of days 1 and 2.
        let mut names: Vec<String> = std::fs::read_dir(&jdir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(
            names,
            ["decisions-2026-03-03.1.jsonl", "decisions-2026-03-03.jsonl"],
            "{names:?}"
        );
        let mut lines = 0;
        for name in &names {
            let text = std::fs::read_to_string(jdir.join(name)).unwrap();
            for l in text.lines() {
                serde_json::from_str::<serde_json::Value>(l).unwrap();
                lines += 1;
            }
        }
        assert!((20..=40).contains(&lines), "{lines} lines kept");
        assert!(size(&jdir) >= max / 2, "the bound is used, not emptied");

        // A reopened journal with a smaller bound trims at start, newest kept.
        drop(j);
        let j = Journal::open(jdir.clone(), limits(90, Some(max / 2)), at(3, 59)).unwrap();
        assert!(size(&jdir) <= max / 2, "{}", size(&jdir));
        assert!(file_for(&jdir, at(3, 0).date_naive()).exists());
        drop(j);
    }

    #[test]
    fn retention_counts_the_earlier_parts_of_a_day_too() {
        let dir = tempfile::tempdir().unwrap();
        let jdir = dir.path().join("journal");
        let day = |d: u32| Utc.with_ymd_and_hms(2026, 3, d, 12, 0, 0).unwrap();
        std::fs::create_dir_all(&jdir).unwrap();
        std::fs::write(earlier_part(&jdir, day(1).date_naive()), "old\n").unwrap();
        std::fs::write(file_for(&jdir, day(1).date_naive()), "old\n").unwrap();
        let _j = Journal::open(jdir.clone(), limits(2, None), day(4)).unwrap();
        assert_eq!(std::fs::read_dir(&jdir).unwrap().count(), 0);
    }
}
