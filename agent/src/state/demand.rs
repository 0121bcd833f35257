//! Per-pool demand history, one point a minute, for the forecaster to warm up from
//! after a restart.
//!
//! [`HistoryStore`] is the interface; [`FileHistory`] keeps one append-only CSV per
//! pool under `<state_dir>/history/` (`minute,demand per target...`, minutes since the
//! epoch) and compacts it to the retention window when it is loaded. A cluster
//! coordinator's store (etcd) implements the same trait.

use std::io::Write;
use std::path::{Path, PathBuf};

/// One minute of a pool's demand, one value per target (`None`: no readings).
pub type Minute = (i64, Vec<Option<f64>>);

/// Where pool histories live.
pub trait HistoryStore: Send + Sync + std::fmt::Debug {
    /// The points of `pool` at or after `since` (minutes since the epoch), oldest first.
    fn load(&self, pool: &str, since: i64) -> std::io::Result<Vec<Minute>>;
    /// Appends one point.
    fn append(&self, pool: &str, minute: &Minute) -> std::io::Result<()>;
}

/// One CSV file per pool under a directory.
#[derive(Debug)]
pub struct FileHistory {
    dir: PathBuf,
}

impl FileHistory {
    /// A store under `dir`, created if missing.
    pub fn open(dir: impl Into<PathBuf>) -> std::io::Result<Self> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir)?;
        Ok(Self { dir })
    }

    fn file(&self, pool: &str) -> PathBuf {
        // Pool names are letters, digits, '-', '_' and '.' (validated), never a path.
        self.dir.join(format!("{pool}.csv"))
    }
}

pub(crate) fn parse_line(line: &str) -> Option<Minute> {
    let mut fields = line.split(',');
    let minute = fields.next()?.trim().parse().ok()?;
    let values = fields
        .map(|f| {
            let f = f.trim();
            if f.is_empty() {
                None
            } else {
                f.parse::<f64>().ok().filter(|v| v.is_finite())
            }
        })
        .collect();
    Some((minute, values))
}

pub(crate) fn format_line(m: &Minute) -> String {
    let mut line = m.0.to_string();
    for v in &m.1 {
        line.push(',');
        if let Some(v) = v {
            line.push_str(&v.to_string());
        }
    }
    line.push('\n');
    line
}

impl HistoryStore for FileHistory {
    fn load(&self, pool: &str, since: i64) -> std::io::Result<Vec<Minute>> {
        let path = self.file(pool);
        let (mut points, total) = read_points(&path)?;
        points.retain(|(m, _)| *m >= since);
        if points.len() < total {
            compact(&path, &points)?;
        }
        Ok(points)
    }

    fn append(&self, pool: &str, minute: &Minute) -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.file(pool))?;
        f.write_all(format_line(minute).as_bytes())
    }
}

/// The points of a history file, oldest first, one per minute, and the number of lines
/// it has (torn or foreign lines are skipped, not fatal). A missing file has none.
fn read_points(path: &Path) -> std::io::Result<(Vec<Minute>, usize)> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), 0)),
        Err(e) => return Err(e),
    };
    let mut points: Vec<Minute> = text.lines().filter_map(parse_line).collect();
    points.sort_by_key(|(m, _)| *m);
    points.dedup_by_key(|(m, _)| *m);
    Ok((points, text.lines().count()))
}

/// The points of `pool` in the file store under `dir`, oldest first, without
/// compacting the file (for reports, which may run as another user than the agent).
pub fn read_only(dir: &Path, pool: &str) -> std::io::Result<Vec<Minute>> {
    Ok(read_points(&dir.join(format!("{pool}.csv")))?.0)
}

/// Rewrites `path` with `points`, atomically.
fn compact(path: &Path, points: &[Minute]) -> std::io::Result<()> {
    let tmp = path.with_extension("csv.tmp");
    let mut text = String::with_capacity(points.len() * 24);
    for p in points {
        text.push_str(&format_line(p));
    }
    std::fs::write(&tmp, text)?;
    std::fs::rename(tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appends_reloads_and_compacts_to_the_window() {
        let dir = tempfile::tempdir().unwrap();
        let h = FileHistory::open(dir.path().join("history")).unwrap();
        for m in 0..10 {
            h.append("web", &(m, vec![Some(m as f64 * 1.5), None]))
                .unwrap();
        }
        std::fs::OpenOptions::new()
            .append(true)
            .open(dir.path().join("history/web.csv"))
            .unwrap()
            .write_all(b"garbage line\n11,2")
            .unwrap();
        let back = h.load("web", 5).unwrap();
        assert_eq!(back.len(), 6, "{back:?}");
        assert_eq!(back[0], (5, vec![Some(7.5), None]));
        assert_eq!(back[5], (11, vec![Some(2.0)]));
        let text = std::fs::read_to_string(dir.path().join("history/web.csv")).unwrap();
        assert_eq!(text.lines().count(), 6, "compacted:\n{text}");
        assert!(h.load("nobody", 0).unwrap().is_empty());
    }
}
