//! `capstan forecast` and `capstan detect` over a `timestamp,value` trace: the trace is
//! put on its regular grid (its most common step), run through the forecaster or the
//! detector, and each input row gets the result of its grid point.

use chrono::NaiveDateTime;

use crate::brain::anomaly::{Detector, Verdict};
use crate::brain::forecast::{ForecastConfig, Forecaster};
use crate::tools::trace::{self, Point, Regular};

/// A trace on its grid, with what the forecaster needs to know about the grid.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// The grid.
    pub grid: Regular,
    /// Points per day.
    pub steps_per_day: usize,
}

/// Grids `points` at their most common step.
pub fn prepare(points: &[Point]) -> anyhow::Result<Prepared> {
    let step = trace::infer_step(points)
        .ok_or_else(|| anyhow::anyhow!("the trace needs at least two distinct timestamps"))?;
    let grid = trace::regularize(points, step);
    let steps_per_day = usize::try_from((86_400 / step).max(1)).unwrap_or(1);
    Ok(Prepared {
        grid,
        steps_per_day,
    })
}

fn grid_index(grid: &Regular, at: NaiveDateTime) -> usize {
    let s = (at - grid.start).num_milliseconds() as f64 / 1000.0 / grid.step as f64;
    usize::try_from(s.round() as i64)
        .unwrap_or(0)
        .min(grid.values.len().saturating_sub(1))
}

/// For every row: the forecast of its value made `horizon` earlier, `None` during the
/// forecaster's warm-up.
pub fn forecast(
    points: &[Point],
    horizon: std::time::Duration,
) -> anyhow::Result<Vec<Option<f64>>> {
    let p = prepare(points)?;
    let step = u64::try_from(p.grid.step).unwrap_or(1).max(1);
    let h = usize::try_from(horizon.as_secs().div_ceil(step).max(1)).unwrap_or(1);
    let mut f = Forecaster::new(ForecastConfig {
        steps_per_day: p.steps_per_day,
        horizon: h,
    });
    let warm = f.config().warm_up();
    let mut on_grid = Vec::with_capacity(p.grid.values.len());
    for v in &p.grid.values {
        let expected = f.expected().filter(|_| f.seen() >= warm);
        on_grid.push(expected);
        f.observe(*v);
    }
    Ok(points
        .iter()
        .map(|pt| on_grid[grid_index(&p.grid, pt.at)])
        .collect())
}

/// For every row: the detector's verdict on its grid point (one step ahead).
pub fn detect(points: &[Point], threshold: f64) -> anyhow::Result<Vec<Verdict>> {
    let p = prepare(points)?;
    let mut d = Detector::new(
        ForecastConfig {
            steps_per_day: p.steps_per_day,
            horizon: 1,
        },
        threshold,
    );
    let on_grid: Vec<Verdict> = p.grid.values.iter().map(|v| d.observe(*v)).collect();
    Ok(points
        .iter()
        .map(|pt| on_grid[grid_index(&p.grid, pt.at)])
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_row_gets_a_result_and_warm_up_is_empty() {
        let mut text = String::from("timestamp,value\n");
        let start =
            NaiveDateTime::parse_from_str("2024-01-01 00:00:00", "%Y-%m-%d %H:%M:%S").unwrap();
        for i in 0..48 * 4 {
            let at = start + chrono::Duration::minutes(30 * i);
            let v = if i == 48 * 3 + 5 {
                999.0
            } else {
                10.0 + (i % 48) as f64
            };
            text += &format!("{},{v}\n", at.format("%Y-%m-%d %H:%M:%S"));
        }
        let points = trace::parse_csv("t", &text).unwrap();
        let f = forecast(&points, std::time::Duration::from_secs(1800)).unwrap();
        assert_eq!(f.len(), points.len());
        assert!(f[..96].iter().all(Option::is_none), "two days of warm-up");
        assert!(f[96..].iter().all(Option::is_some));
        let d = detect(&points, 2.5).unwrap();
        assert_eq!(d.len(), points.len());
        assert!(d[48 * 3 + 5].anomaly);
        assert!(d.iter().all(|v| (0.0..=1.0).contains(&v.score)));
    }
}
