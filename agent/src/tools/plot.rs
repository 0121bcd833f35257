//! The offline commands' SVG figures: `capstan simulate --svg` (a window of the run:
//! demand, each policy's ready capacity, the forecast, the saturated minutes shaded)
//! and `capstan tune --svg` (the frontier: node-hours against saturated minutes, one
//! point per candidate).
//!
//! Plain SVG text, no dependency: axes with round ticks (dates on the time axis), a
//! legend, and a title that names the trace by its file name.

use std::fmt::Write as _;

use chrono::{DateTime, Duration, Timelike, Utc};

/// Width and height of every figure, and the plot area's margins.
const W: f64 = 1200.0;
const H: f64 = 460.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 30.0;
const TOP: f64 = 76.0;
const BOTTOM: f64 = 50.0;

/// Text for an SVG text node or attribute.
pub fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Round tick values covering `lo..=hi`, at most about `most` of them: steps of 1, 2
/// or 5 × 10^k.
pub fn ticks(lo: f64, hi: f64, most: usize) -> Vec<f64> {
    if !(lo.is_finite() && hi.is_finite()) || hi <= lo || most == 0 {
        return vec![lo];
    }
    let raw = (hi - lo) / most as f64;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * mag);
    let first = (lo / step).ceil() as i64;
    let last = (hi / step).floor() as i64;
    (first..=last).map(|i| i as f64 * step).collect()
}

/// A tick label: thousands separated, no needless decimals.
fn label(v: f64) -> String {
    if v.abs() >= 1000.0 || v.fract() == 0.0 {
        let n = v.round() as i64;
        let digits = n.unsigned_abs().to_string();
        let mut out = String::new();
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i).is_multiple_of(3) {
                out.push(',');
            }
            out.push(c);
        }
        if n < 0 { format!("-{out}") } else { out }
    } else {
        format!("{v:.2}")
            .trim_end_matches('0')
            .trim_end_matches('.')
            .to_owned()
    }
}

/// The plot area: maps data to pixels.
struct Frame {
    x: (f64, f64),
    y: (f64, f64),
}

impl Frame {
    fn px(&self, v: f64) -> f64 {
        let (lo, hi) = self.x;
        LEFT + (W - LEFT - RIGHT) * ((v - lo) / (hi - lo).max(f64::MIN_POSITIVE)).clamp(0.0, 1.0)
    }

    fn py(&self, v: f64) -> f64 {
        let (lo, hi) = self.y;
        H - BOTTOM
            - (H - TOP - BOTTOM) * ((v - lo) / (hi - lo).max(f64::MIN_POSITIVE)).clamp(0.0, 1.0)
    }

    /// The axes, the y grid with its labels, and the axis titles.
    fn axes(&self, out: &mut String, y_title: &str, x_title: &str) {
        let (x0, x1, y0, y1) = (LEFT, W - RIGHT, H - BOTTOM, TOP);
        for t in ticks(self.y.0, self.y.1, 6) {
            let y = self.py(t);
            let _ = writeln!(
                out,
                r##"<line x1="{x0}" y1="{y:.1}" x2="{x1}" y2="{y:.1}" stroke="#e4e4e4"/><text x="{lx}" y="{ty:.1}" text-anchor="end">{l}</text>"##,
                lx = x0 - 6.0,
                ty = y + 4.0,
                l = label(t)
            );
        }
        let _ = write!(
            out,
            r##"<line x1="{x0}" y1="{y0}" x2="{x1}" y2="{y0}" stroke="#666"/><line x1="{x0}" y1="{y0}" x2="{x0}" y2="{y1}" stroke="#666"/>
<text x="16" y="{my}" transform="rotate(-90 16 {my})" text-anchor="middle">{yt}</text>
<text x="{mx}" y="{xy}" text-anchor="middle">{xt}</text>
"##,
            my = (y0 + y1) / 2.0,
            mx = (x0 + x1) / 2.0,
            xy = H - 8.0,
            yt = escape(y_title),
            xt = escape(x_title),
        );
    }

    /// A tick on the x axis at data value `v` with `text` under it.
    fn x_tick(&self, out: &mut String, v: f64, text: &str) {
        let x = self.px(v);
        let _ = writeln!(
            out,
            r##"<line x1="{x:.1}" y1="{y0}" x2="{x:.1}" y2="{y1}" stroke="#666"/><text x="{x:.1}" y="{ty}" text-anchor="middle">{t}</text>"##,
            y0 = H - BOTTOM,
            y1 = H - BOTTOM + 5.0,
            ty = H - BOTTOM + 19.0,
            t = escape(text)
        );
    }
}

fn header(title: &str) -> String {
    format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">
<rect width="100%" height="100%" fill="white"/>
<text x="{LEFT}" y="24" font-size="15">{}</text>
"##,
        escape(title)
    )
}

/// The attribute that dashes a stroke, or nothing.
fn dash(dashed: bool) -> &'static str {
    if dashed {
        r#" stroke-dasharray="4 3""#
    } else {
        ""
    }
}

/// The legend along the top, in up to two rows: (colour, text, dashed) entries.
fn legend(out: &mut String, entries: &[(&str, &str, bool)]) {
    let (mut x, mut y) = (LEFT, 42.0);
    for (colour, text, dashed) in entries {
        let width = 44.0 + 6.3 * text.chars().count() as f64;
        if x > LEFT && x + width > W - RIGHT {
            (x, y) = (LEFT, y + 17.0);
        }
        let dash = dash(*dashed);
        let _ = writeln!(
            out,
            r##"<line x1="{x}" y1="{y}" x2="{x2}" y2="{y}" stroke="{colour}" stroke-width="3"{dash}/><text x="{tx}" y="{ty}">{t}</text>"##,
            x2 = x + 22.0,
            tx = x + 28.0,
            ty = y + 4.0,
            t = escape(text)
        );
        x += width;
    }
}

/// One line of a time plot.
#[derive(Debug)]
pub struct Line<'a> {
    /// Legend text.
    pub label: String,
    /// Stroke colour.
    pub colour: &'a str,
    /// Dashed.
    pub dashed: bool,
    /// One value a minute (`None`: a gap).
    pub values: Vec<Option<f64>>,
}

/// A time plot of `lines` over the minutes `from..to` of a run that started at
/// `start`. `shade`: minutes to shade (a run's saturated minutes), with its colour and
/// legend text.
pub fn time_plot(
    title: &str,
    start: DateTime<Utc>,
    window: std::ops::Range<usize>,
    lines: &[Line<'_>],
    shade: Option<(&[bool], &str, &str)>,
) -> String {
    let (from, to) = (window.start, window.end.max(window.start + 1));
    let top = lines
        .iter()
        .flat_map(|l| l.values.get(from..to).unwrap_or_default())
        .flatten()
        .copied()
        .filter(|v| v.is_finite())
        .fold(0.0_f64, f64::max);
    let top = ticks(0.0, top.max(1.0) * 1.05, 6)
        .last()
        .map_or(1.0, |t| if *t >= top * 1.02 { *t } else { top * 1.05 })
        .max(1.0);
    let frame = Frame {
        x: (from as f64, (to - 1).max(from + 1) as f64),
        y: (0.0, top),
    };
    let mut out = header(title);
    let mut entries: Vec<(&str, &str, bool)> = lines
        .iter()
        .map(|l| (l.colour, l.label.as_str(), l.dashed))
        .collect();
    if let Some((minutes, colour, text)) = shade {
        entries.push((colour, text, false));
        // One rectangle per run of shaded minutes.
        let mut m = from;
        while m < to {
            if minutes.get(m).copied().unwrap_or(false) {
                let begin = m;
                while m < to && minutes.get(m).copied().unwrap_or(false) {
                    m += 1;
                }
                let (x0, x1) = (frame.px(begin as f64), frame.px(m as f64));
                let _ = writeln!(
                    out,
                    r#"<rect x="{x0:.1}" y="{TOP}" width="{w:.1}" height="{h}" fill="{colour}" fill-opacity="0.25"/>"#,
                    w = (x1 - x0).max(1.0),
                    h = H - TOP - BOTTOM
                );
            } else {
                m += 1;
            }
        }
    }
    frame.axes(&mut out, "demand", "time (UTC)");
    // Date ticks: the smallest round step that leaves at most ten.
    let span = (to - from) as i64;
    let step = [60, 120, 180, 360, 720, 1440, 2880, 10_080, 20_160, 43_200]
        .into_iter()
        .find(|s| span / s <= 10)
        .unwrap_or(span.max(1));
    let at = |m: i64| start + Duration::minutes(m);
    // The first tick: a whole step of UTC time (midnight for steps of days).
    let align = step.min(1440);
    let opened = start.timestamp().div_euclid(60) + from as i64;
    let mut m = from as i64 + (align - opened.rem_euclid(align)) % align;
    while m < to as i64 {
        let t = at(m);
        let text = if step >= 1440 {
            t.format("%a %b %-d").to_string()
        } else if t.hour() == 0 {
            t.format("%b %-d").to_string()
        } else {
            t.format("%H:%M").to_string()
        };
        frame.x_tick(&mut out, m as f64, &text);
        m += step;
    }
    let stride = (to - from).div_ceil(3000).max(1);
    for l in lines {
        let mut d = String::new();
        let mut pen = false;
        for i in (from..to).step_by(stride) {
            match l.values.get(i).copied().flatten() {
                Some(v) if v.is_finite() => {
                    let _ = write!(
                        d,
                        "{}{:.1},{:.1} ",
                        if pen { "L" } else { "M" },
                        frame.px(i as f64),
                        frame.py(v)
                    );
                    pen = true;
                }
                _ => pen = false,
            }
        }
        let dash = dash(l.dashed);
        let _ = writeln!(
            out,
            r#"<path d="{d}" fill="none" stroke="{}" stroke-width="1.4"{dash}/>"#,
            l.colour
        );
    }
    legend(&mut out, &entries);
    out.push_str("</svg>\n");
    out
}

/// The `width`-minute window of `len` minutes with the most `marked` minutes (the
/// earliest such); the one holding `peak` when none is marked.
pub fn busiest_window(marked: &[bool], width: usize, peak: usize) -> std::ops::Range<usize> {
    let len = marked.len();
    if width >= len {
        return 0..len;
    }
    let mut count = marked[..width].iter().filter(|m| **m).count();
    let (mut best, mut best_at) = (count, 0);
    for s in 1..=len - width {
        count += usize::from(marked[s + width - 1]);
        count -= usize::from(marked[s - 1]);
        if count > best {
            (best, best_at) = (count, s);
        }
    }
    if best == 0 {
        // Centred on the peak, inside the run.
        best_at = peak.saturating_sub(width / 2).min(len - width);
    }
    best_at..best_at + width
}

/// One candidate on the frontier.
#[derive(Debug, Clone, Copy)]
pub struct Point {
    /// Saturated (under-provisioned) minutes.
    pub saturated_minutes: u64,
    /// Node-hours.
    pub node_hours: f64,
    /// Scales on the forecast.
    pub predictive: bool,
}

/// The points no other point of `points` beats on both axes (no more saturated minutes
/// and fewer node-hours), by saturated minutes.
pub fn pareto(points: &[Point]) -> Vec<Point> {
    let mut sorted: Vec<Point> = points.to_vec();
    sorted.sort_by(|a, b| {
        a.saturated_minutes
            .cmp(&b.saturated_minutes)
            .then(a.node_hours.total_cmp(&b.node_hours))
    });
    let mut out: Vec<Point> = Vec::new();
    for p in sorted {
        if out.last().is_none_or(|l| p.node_hours < l.node_hours) {
            out.push(p);
        }
    }
    out
}

const REACTIVE: &str = "#2f6db5";
const PREDICTIVE: &str = "#e07b00";

/// The frontier of a tuning run: node-hours against saturated minutes (a log scale
/// when they span decades), reactive-only and forecasting candidates in two colours,
/// each arm's Pareto line, the SLO as a dashed line, the chosen and the current policy
/// marked.
pub fn frontier(
    title: &str,
    points: &[Point],
    slo_minutes: u64,
    chosen: Option<(Point, &str)>,
    current: (Point, &str),
) -> String {
    let all = points
        .iter()
        .chain(chosen.iter().map(|c| &c.0))
        .chain([&current.0]);
    let (lo, hi, fewest, most) = all.fold(
        (f64::MAX, 0.0_f64, slo_minutes, slo_minutes),
        |(lo, hi, fewest, most), p| {
            (
                lo.min(p.node_hours),
                hi.max(p.node_hours),
                fewest.min(p.saturated_minutes),
                most.max(p.saturated_minutes),
            )
        },
    );
    let (lo, hi) = if lo <= hi { (lo, hi) } else { (0.0, 1.0) };
    let pad = ((hi - lo) * 0.05).max(1.0);
    // Minutes span decades on most traces (a low target saturates nothing, a high one
    // thousands): log(1 + m) from 0 then, else a linear axis around the points.
    let log = most >= 100 && most > 20 * fewest.max(1);
    let sx = |m: u64| {
        if log {
            (1.0 + m as f64).log10()
        } else {
            m as f64
        }
    };
    // A margin on each side, so that no point sits on the axis.
    let x = if log {
        (-0.04 * sx(most), sx(most) * 1.04)
    } else {
        let spread = ((most - fewest) as f64 * 0.08).max(1.0);
        (fewest as f64 - spread, most as f64 + spread)
    };
    let frame = Frame {
        x,
        y: ((lo - pad).max(0.0), hi + pad),
    };
    let mut out = header(title);
    frame.axes(
        &mut out,
        "node-hours",
        if log {
            "saturated minutes (log scale): the metric above the saturation line on the ready nodes"
        } else {
            "saturated minutes: the metric above the saturation line on the ready nodes"
        },
    );
    if log {
        let mut decade = 0_u64;
        while decade <= most {
            frame.x_tick(&mut out, sx(decade), &label(decade as f64));
            decade = (decade * 10).max(1);
        }
    } else {
        for t in ticks(frame.x.0, frame.x.1, 10) {
            if t.fract() == 0.0 && t >= 0.0 {
                frame.x_tick(&mut out, t, &label(t));
            }
        }
    }
    let x = frame.px(sx(slo_minutes));
    let _ = writeln!(
        out,
        r##"<line x1="{x:.1}" y1="{TOP}" x2="{x:.1}" y2="{y}" stroke="#888" stroke-dasharray="6 4"/><text x="{tx:.1}" y="{ty}" fill="#555">SLO {slo_minutes} min</text>"##,
        y = H - BOTTOM,
        tx = x + 4.0,
        ty = TOP + 12.0,
    );
    // Forecasting candidates as rings, reactive ones as dots drawn after them: a
    // policy of each arm at the same point shows both.
    for (predictive, colour) in [(true, PREDICTIVE), (false, REACTIVE)] {
        let arm: Vec<Point> = points
            .iter()
            .filter(|p| p.predictive == predictive)
            .copied()
            .collect();
        let line: Vec<String> = pareto(&arm)
            .iter()
            .map(|p| {
                format!(
                    "{:.1},{:.1}",
                    frame.px(sx(p.saturated_minutes)),
                    frame.py(p.node_hours)
                )
            })
            .collect();
        if !line.is_empty() {
            let _ = writeln!(
                out,
                r#"<polyline points="{}" fill="none" stroke="{colour}" stroke-width="1.2" stroke-opacity="0.7"/>"#,
                line.join(" ")
            );
        }
        let look = if predictive {
            format!(r#"r="5" fill="none" stroke="{colour}" stroke-width="1.6""#)
        } else {
            format!(r#"r="3" fill="{colour}""#)
        };
        for p in &arm {
            let _ = writeln!(
                out,
                r#"<circle cx="{:.1}" cy="{:.1}" {look}/>"#,
                frame.px(sx(p.saturated_minutes)),
                frame.py(p.node_hours)
            );
        }
    }
    let mark = |out: &mut String, p: &Point, text: &str, square: bool| {
        let (x, y) = (frame.px(sx(p.saturated_minutes)), frame.py(p.node_hours));
        if square {
            let _ = write!(
                out,
                r##"<rect x="{:.1}" y="{:.1}" width="14" height="14" fill="none" stroke="#000" stroke-width="1.5"/>"##,
                x - 7.0,
                y - 7.0
            );
        } else {
            let _ = write!(
                out,
                r##"<circle cx="{x:.1}" cy="{y:.1}" r="8" fill="none" stroke="#000" stroke-width="2"/>"##
            );
        }
        // Labels go left of points on the right half, so they stay inside.
        let (tx, anchor) = if x > W / 2.0 {
            (x - 12.0, "end")
        } else {
            (x + 12.0, "start")
        };
        let _ = writeln!(
            out,
            r#"<text x="{tx:.1}" y="{:.1}" text-anchor="{anchor}">{}</text>"#,
            y + 4.0 + if square { 14.0 } else { 0.0 },
            escape(text)
        );
    };
    if let Some((p, text)) = chosen {
        mark(&mut out, &p, text, false);
    }
    mark(&mut out, &current.0, current.1, true);
    legend(
        &mut out,
        &[
            (REACTIVE, "reactive-only (dots)", false),
            (PREDICTIVE, "forecast-and-scale (rings)", false),
            (
                "#000",
                "○ chosen (cheapest within the SLO), □ current",
                false,
            ),
        ],
    );
    out.push_str("</svg>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn ticks_are_round_and_cover_the_range() {
        assert_eq!(
            ticks(0.0, 100.0, 5),
            vec![0.0, 20.0, 40.0, 60.0, 80.0, 100.0]
        );
        assert_eq!(
            ticks(66_000.0, 84_000.0, 6),
            vec![70_000.0, 75_000.0, 80_000.0]
        );
        let t = ticks(0.0, 0.37, 4);
        assert_eq!(t.first(), Some(&0.0));
        assert!(t.len() <= 5 && t.last().unwrap() <= &0.37);
        assert_eq!(ticks(5.0, 5.0, 4), vec![5.0], "an empty range");
        assert_eq!(label(83_111.4), "83,111");
        assert_eq!(label(0.25), "0.25");
        assert_eq!(label(-1200.0), "-1,200");
    }

    #[test]
    fn the_busiest_window_holds_the_most_marked_minutes_or_else_the_peak() {
        let mut marked = vec![false; 100];
        for m in [10, 40, 41, 42, 90] {
            marked[m] = true;
        }
        assert_eq!(busiest_window(&marked, 10, 0), 33..43);
        assert_eq!(busiest_window(&[false; 100], 10, 97), 90..100);
        assert_eq!(busiest_window(&[false; 100], 10, 50), 45..55);
        assert_eq!(
            busiest_window(&marked, 500, 0),
            0..100,
            "a window past the run"
        );
    }

    #[test]
    fn the_pareto_line_keeps_only_points_nothing_beats() {
        let p = |m, h| Point {
            saturated_minutes: m,
            node_hours: h,
            predictive: false,
        };
        let line = pareto(&[
            p(5, 100.0),
            p(0, 120.0),
            p(3, 110.0),
            p(4, 115.0),
            p(9, 100.0),
        ]);
        let got: Vec<(u64, f64)> = line
            .iter()
            .map(|p| (p.saturated_minutes, p.node_hours))
            .collect();
        assert_eq!(got, vec![(0, 120.0), (3, 110.0), (5, 100.0)]);
    }

    #[test]
    fn a_week_of_the_time_plot_has_day_ticks_both_capacities_and_shading() {
        let start = Utc.with_ymd_and_hms(2014, 7, 1, 0, 0, 0).unwrap();
        let n = 20 * 1440;
        let demand: Vec<Option<f64>> = (0..n).map(|m| Some(1000.0 + (m % 1440) as f64)).collect();
        let mut saturated = vec![false; n];
        saturated[9 * 1440 + 5..9 * 1440 + 65].fill(true);
        let window = busiest_window(&saturated, 7 * 1440, 0);
        let lines = [
            Line {
                label: "demand".into(),
                colour: "#222",
                dashed: false,
                values: demand.clone(),
            },
            Line {
                label: "policy capacity".into(),
                colour: "#2a7",
                dashed: false,
                values: demand.iter().map(|d| d.map(|d| d * 1.2)).collect(),
            },
            Line {
                label: "best reactive capacity".into(),
                colour: "#26b",
                dashed: false,
                values: demand.iter().map(|d| d.map(|d| d * 1.3)).collect(),
            },
        ];
        let svg = time_plot(
            "nyc_taxi.csv <3m>",
            start,
            window,
            &lines,
            Some((&saturated, "#d33", "saturated")),
        );
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>\n"));
        assert!(svg.contains("nyc_taxi.csv &lt;3m&gt;"), "escaped title");
        for text in [
            "policy capacity",
            "best reactive capacity",
            "saturated",
            "time (UTC)",
        ] {
            assert!(svg.contains(text), "{text}");
        }
        // Seven days from day 3 (the window ends with the hour of shading): a tick per
        // day, named by weekday and date.
        let day_ticks = svg.matches("Jul ").count();
        assert!((6..=8).contains(&day_ticks), "{day_ticks} day ticks");
        assert!(svg.contains("Fri Jul 4"), "{svg}");
        // One shaded run, an hour wide.
        assert_eq!(svg.matches("fill-opacity=\"0.25\"").count(), 1);
        // The y axis has a scale up to above the highest line.
        assert!(
            svg.contains(">3,000<") || svg.contains(">4,000<"),
            "y ticks"
        );
    }

    #[test]
    fn the_frontier_draws_both_arms_and_marks_the_chosen_and_current_policies() {
        let p = |m, h, predictive| Point {
            saturated_minutes: m,
            node_hours: h,
            predictive,
        };
        let points = [
            p(0, 900.0, false),
            p(4, 800.0, false),
            p(2, 780.0, true),
            p(600, 500.0, true),
        ];
        let svg = frontier(
            "tune: taxi",
            &points,
            4,
            Some((points[2], "chosen: target 66")),
            (p(3, 830.0, true), "current"),
        );
        assert_eq!(svg.matches(&format!("fill=\"{REACTIVE}\"")).count(), 2);
        assert_eq!(
            svg.matches(&format!(
                "fill=\"none\" stroke=\"{PREDICTIVE}\" stroke-width=\"1.6\""
            ))
            .count(),
            2
        );
        assert_eq!(svg.matches("<polyline").count(), 2);
        for text in [
            "SLO 4 min",
            "chosen: target 66",
            "current",
            ">0<",
            ">1<",
            ">10<",
            ">100<",
        ] {
            assert!(svg.contains(text), "{text}: {svg}");
        }
    }
}
