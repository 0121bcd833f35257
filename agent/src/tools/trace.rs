//! `timestamp,value` CSV traces (NAB's format) for `capstan forecast`, `detect`,
//! `simulate` and the benchmarks: reading, inferring the step, and putting a trace on a
//! regular grid the way the forecast baselines' protocol does (timestamps rounded to
//! the nearest grid point from the first one, duplicates averaged, gaps linearly
//! interpolated, ends held).

use std::path::Path;

use anyhow::{Context, bail};
use chrono::NaiveDateTime;

/// One row of a trace.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    /// When.
    pub at: NaiveDateTime,
    /// The value (may be NaN when the file says so).
    pub value: f64,
}

fn parse_time(s: &str) -> Option<NaiveDateTime> {
    let s = s.trim().trim_matches('"');
    [
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M",
        "%Y-%m-%dT%H:%M",
    ]
    .iter()
    .find_map(|f| NaiveDateTime::parse_from_str(s, f).ok())
    .or_else(|| {
        chrono::DateTime::parse_from_rfc3339(s)
            .ok()
            .map(|d| d.naive_utc())
    })
}

/// Parses CSV text with a `timestamp,value` header (more columns are ignored). Errors
/// name the line.
pub fn parse_csv(name: &str, text: &str) -> anyhow::Result<Vec<Point>> {
    let mut lines = text.lines().enumerate();
    let Some((_, header)) = lines.next() else {
        bail!("{name}: empty file; expected a `timestamp,value` header");
    };
    let cols: Vec<String> = header
        .split(',')
        .map(|c| c.trim().trim_matches('"').to_ascii_lowercase())
        .collect();
    let (Some(ti), Some(vi)) = (
        cols.iter().position(|c| c == "timestamp"),
        cols.iter().position(|c| c == "value"),
    ) else {
        bail!("{name}:1: the header must name `timestamp` and `value` columns, found `{header}`");
    };
    let mut points = Vec::new();
    for (i, line) in lines {
        if line.trim().is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split(',').collect();
        let field = |k: usize| fields.get(k).copied().unwrap_or("");
        let at = parse_time(field(ti)).with_context(|| {
            format!(
                "{name}:{}: `{}` is not a timestamp (e.g. 2014-07-01 00:00:00)",
                i + 1,
                field(ti)
            )
        })?;
        let raw = field(vi).trim().trim_matches('"');
        let value = if raw.is_empty() || raw.eq_ignore_ascii_case("nan") {
            f64::NAN
        } else {
            raw.parse::<f64>()
                .with_context(|| format!("{name}:{}: `{raw}` is not a number", i + 1))?
        };
        points.push(Point { at, value });
    }
    if points.is_empty() {
        bail!("{name}: no rows after the header");
    }
    Ok(points)
}

/// Reads a CSV file.
pub fn read_csv(path: &Path) -> anyhow::Result<Vec<Point>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    parse_csv(&path.display().to_string(), &text)
}

/// The most common positive spacing between consecutive timestamps, in seconds,
/// rounded to whole minutes when a minute or more (CloudWatch series jitter).
pub fn infer_step(points: &[Point]) -> Option<i64> {
    let mut times: Vec<NaiveDateTime> = points.iter().map(|p| p.at).collect();
    times.sort_unstable();
    let mut counts = std::collections::BTreeMap::<i64, usize>::new();
    for w in times.windows(2) {
        let mut d = (w[1] - w[0]).num_seconds();
        if d >= 60 {
            d = (d + 30) / 60 * 60;
        }
        if d > 0 {
            *counts.entry(d).or_default() += 1;
        }
    }
    counts
        .into_iter()
        .max_by_key(|(d, n)| (*n, -*d))
        .map(|(d, _)| d)
}

/// A trace on a regular grid.
#[derive(Debug, Clone, PartialEq)]
pub struct Regular {
    /// The first grid point.
    pub start: NaiveDateTime,
    /// Seconds between points.
    pub step: i64,
    /// One value per grid point.
    pub values: Vec<f64>,
    /// Grid points that had no row and were interpolated.
    pub filled: usize,
}

impl Regular {
    /// The time of grid point `i`.
    pub fn time(&self, i: usize) -> NaiveDateTime {
        self.start + chrono::Duration::seconds(self.step * i64::try_from(i).unwrap_or(i64::MAX))
    }
}

/// Puts `points` on a grid of `step` seconds from the first timestamp.
pub fn regularize(points: &[Point], step: i64) -> Regular {
    let start = points[0].at;
    let step = step.max(1);
    let index = |p: &Point| {
        let s = (p.at - start).num_milliseconds() as f64 / 1000.0 / step as f64;
        s.round() as i64
    };
    let last = points.iter().map(index).max().unwrap_or(0).max(0);
    let n = usize::try_from(last + 1).unwrap_or(0);
    let mut sum = vec![0.0; n];
    let mut count = vec![0u32; n];
    for p in points.iter().filter(|p| p.value.is_finite()) {
        if let Ok(k) = usize::try_from(index(p)) {
            sum[k] += p.value;
            count[k] += 1;
        }
    }
    let mut values: Vec<f64> = sum
        .iter()
        .zip(&count)
        .map(|(s, c)| if *c > 0 { s / f64::from(*c) } else { f64::NAN })
        .collect();
    let filled = values.iter().filter(|v| v.is_nan()).count();
    interpolate(&mut values);
    Regular {
        start,
        step,
        values,
        filled,
    }
}

/// Fills NaN runs linearly between their neighbours and holds the ends.
fn interpolate(values: &mut [f64]) {
    let known: Vec<usize> = (0..values.len())
        .filter(|&i| values[i].is_finite())
        .collect();
    let (Some(&first), Some(&last)) = (known.first(), known.last()) else {
        return;
    };
    let head = values[first];
    values[..first].fill(head);
    let tail = values[last];
    values[last + 1..].fill(tail);
    for w in known.windows(2) {
        let (a, b) = (w[0], w[1]);
        for i in a + 1..b {
            let f = (i - a) as f64 / (b - a) as f64;
            values[i] = values[a] + f * (values[b] - values[a]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_nab_rows_and_names_bad_lines() {
        let pts = parse_csv(
            "t.csv",
            "timestamp,value\n2014-07-01 00:00:00,10844\n2014-07-01 00:30:00,8127.5\n",
        )
        .unwrap();
        assert_eq!(pts.len(), 2);
        assert_eq!(pts[1].value, 8127.5);
        let err = parse_csv("t.csv", "timestamp,value\n2014-07-01 00:00:00,x\n").unwrap_err();
        assert!(
            err.to_string().contains("t.csv:2: `x` is not a number"),
            "{err}"
        );
        let err = parse_csv("t.csv", "time,v\n").unwrap_err();
        assert!(err.to_string().contains("t.csv:1:"), "{err}");
    }

    #[test]
    fn regularizes_like_the_baselines_protocol() {
        let text = "timestamp,value\n2014-01-01 00:00:00,1\n2014-01-01 00:05:10,3\n2014-01-01 00:04:50,5\n2014-01-01 00:20:00,10\n2014-01-01 00:25:00,10\n";
        let pts = parse_csv("t", text).unwrap();
        assert_eq!(infer_step(&pts), Some(300));
        let r = regularize(&pts, 300);
        // 00:05:10 and 00:04:50 both round to 00:05 and average to 4; 00:10 and 00:15
        // are interpolated between 4 and 10.
        assert_eq!(r.values, vec![1.0, 4.0, 6.0, 8.0, 10.0, 10.0]);
        assert_eq!(r.filled, 2);
        assert_eq!(r.time(4).to_string(), "2014-01-01 00:20:00");
    }
}
