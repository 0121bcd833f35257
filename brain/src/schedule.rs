//! Scheduled bounds: cron windows, each in its own IANA time zone, that replace a
//! pool's `min` and `max` while active.
//!
//! A window is active from each time its cron expression fires, in its time zone, for
//! `duration` of real (elapsed) time. Firing times follow croner's daylight-saving
//! rules: a time that falls in a spring-forward gap fires right after the gap, and a
//! time repeated by a fall-back fires once, at its first occurrence. So "08:00 every
//! weekday in Europe/Stockholm" is 07:00 UTC in winter and 06:00 UTC in summer, and a
//! window never starts twice in one night.
//!
//! Overlapping windows combine field by field, whatever their order in the file: the
//! highest `min` of the active windows that set one, and the highest `max` of those
//! that set one. The rule never lets one window take away capacity another grants. If
//! the combined `min` ends above the combined `max`, `max` is raised to it.
//!
//! Pure: time comes in as an argument.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use capstan_config::Schedule;

/// A pool's bounds for one pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bounds {
    /// Floor.
    pub min: u32,
    /// Ceiling.
    pub max: u32,
}

/// One active window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActiveWindow {
    /// The schedule's name.
    pub name: String,
    /// When this activation started.
    pub since: DateTime<Utc>,
    /// When it ends.
    pub until: DateTime<Utc>,
    /// Its `min`, if it sets one.
    pub min: Option<u32>,
    /// Its `max`, if it sets one.
    pub max: Option<u32>,
}

/// The last time `schedule` fired at or before `now`.
fn last_firing(schedule: &Schedule, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let local = now.with_timezone(&schedule.timezone);
    let fired = schedule.cron.find_previous_occurrence(&local, true).ok()?;
    Some(fired.with_timezone(&Utc))
}

/// `fired`, if the window it opened still covers `now`.
fn covering(
    schedule: &Schedule,
    fired: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    let duration = chrono::Duration::from_std(schedule.duration).ok()?;
    (now < fired + duration).then_some(fired)
}

/// One pass's view of the calendar. Pools of a fleet often share a schedule (the same
/// business hours on many pools); a cron expression in a time zone is evaluated once
/// per pass, however many pools carry it, which is most of a schedule's cost.
#[derive(Debug)]
pub struct Firings<'a> {
    now: DateTime<Utc>,
    /// The last firing at or before `now`, by cron expression and time zone.
    last: HashMap<(&'a str, &'static str), Option<DateTime<Utc>>>,
}

impl<'a> Firings<'a> {
    /// The calendar at `now`.
    pub fn new(now: DateTime<Utc>) -> Self {
        Self {
            now,
            last: HashMap::new(),
        }
    }

    /// The windows of `schedules` active now, in config order.
    pub fn active(&mut self, schedules: &'a [Schedule]) -> Vec<ActiveWindow> {
        let now = self.now;
        schedules
            .iter()
            .filter_map(|s| {
                let key = (s.cron.pattern.as_str(), s.timezone.name());
                let fired = *self.last.entry(key).or_insert_with(|| last_firing(s, now));
                let since = covering(s, fired?, now)?;
                Some(ActiveWindow {
                    name: s.name.clone(),
                    since,
                    until: since + chrono::Duration::from_std(s.duration).ok()?,
                    min: s.min,
                    max: s.max,
                })
            })
            .collect()
    }
}

/// The bounds a pool with `base` bounds has while `windows` are active (see the module
/// documentation for how overlapping windows combine).
pub fn bounds(base: Bounds, windows: &[ActiveWindow]) -> Bounds {
    let min = windows
        .iter()
        .filter_map(|w| w.min)
        .max()
        .unwrap_or(base.min);
    let max = windows
        .iter()
        .filter_map(|w| w.max)
        .max()
        .unwrap_or(base.max);
    Bounds {
        min,
        max: max.max(min),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use std::time::Duration;

    fn schedule(name: &str, cron: &str, tz: &str, hours: u64, min: Option<u32>) -> Schedule {
        Schedule {
            name: name.to_owned(),
            cron: cron.parse().unwrap(),
            timezone: tz.parse().unwrap(),
            duration: Duration::from_secs(hours * 3600),
            min,
            max: None,
        }
    }

    fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, 0).unwrap()
    }

    /// The start of the activation of one schedule that covers `now`, if one does:
    /// each schedule on its own, the reference the pass's calendar must agree with.
    fn active_since(schedule: &Schedule, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        covering(schedule, last_firing(schedule, now)?, now)
    }

    fn is_active(s: &Schedule, at: DateTime<Utc>) -> bool {
        active_since(s, at).is_some()
    }

    /// Business hours, 08:00 for 10 h, checked on the days either side of a transition:
    /// the window follows local time, so its UTC start moves by an hour.
    fn business_hours_follow_local_time(
        tz: &str,
        before: (i32, u32, u32),
        after: (i32, u32, u32),
        utc_start_before: u32,
        utc_start_after: u32,
    ) {
        let s = schedule("business-hours", "0 8 * * *", tz, 10, Some(10));
        for ((y, m, d), start) in [(before, utc_start_before), (after, utc_start_after)] {
            assert!(
                !is_active(&s, utc(y, m, d, start - 1, 59)),
                "{tz} {y}-{m}-{d}: active a minute before 08:00 local"
            );
            assert_eq!(
                active_since(&s, utc(y, m, d, start, 0)),
                Some(utc(y, m, d, start, 0)),
                "{tz} {y}-{m}-{d}: starts at 08:00 local = {start}:00 UTC"
            );
            assert!(is_active(&s, utc(y, m, d, start + 9, 59)));
            assert!(
                !is_active(&s, utc(y, m, d, start + 10, 0)),
                "{tz} {y}-{m}-{d}: lasts 10 h of real time"
            );
        }
    }

    /// One pass's calendar evaluates a shared cron expression once, and still gives
    /// each schedule its own window: the same expression in another time zone fires at
    /// another instant, and the same firing with a shorter duration may have ended.
    #[test]
    fn a_pass_calendar_gives_each_schedule_its_own_window() {
        let schedules = [
            schedule("long", "0 8 * * *", "Europe/Stockholm", 10, Some(3)),
            schedule("short", "0 8 * * *", "Europe/Stockholm", 1, Some(4)),
            schedule("tokyo", "0 8 * * *", "Asia/Tokyo", 10, Some(5)),
            schedule("hourly", "0 * * * *", "Europe/Stockholm", 2, Some(6)),
        ];
        for hour in 0..24 {
            for minute in [0, 1, 59] {
                let now = utc(2026, 3, 29, hour, minute);
                let mut calendar = Firings::new(now);
                // Twice over, as two pools carrying the same schedules.
                for _ in 0..2 {
                    let windows = calendar.active(&schedules);
                    let expected: Vec<&str> = schedules
                        .iter()
                        .filter(|s| is_active(s, now))
                        .map(|s| s.name.as_str())
                        .collect();
                    let names: Vec<&str> = windows.iter().map(|w| w.name.as_str()).collect();
                    assert_eq!(names, expected, "at {now}");
                    for w in &windows {
                        let s = schedules.iter().find(|s| s.name == w.name).unwrap();
                        assert_eq!(Some(w.since), active_since(s, now), "{} at {now}", w.name);
                    }
                }
            }
        }
    }

    #[test]
    fn stockholm_spring_forward() {
        // 2026-03-29 02:00 CET → 03:00 CEST.
        business_hours_follow_local_time("Europe/Stockholm", (2026, 3, 28), (2026, 3, 29), 7, 6);
    }

    #[test]
    fn stockholm_fall_back() {
        // 2026-10-25 03:00 CEST → 02:00 CET.
        business_hours_follow_local_time("Europe/Stockholm", (2026, 10, 24), (2026, 10, 25), 6, 7);
    }

    #[test]
    fn new_york_spring_forward() {
        // 2026-03-08 02:00 EST → 03:00 EDT.
        business_hours_follow_local_time("America/New_York", (2026, 3, 7), (2026, 3, 8), 13, 12);
    }

    #[test]
    fn new_york_fall_back() {
        // 2026-11-01 02:00 EDT → 01:00 EST.
        business_hours_follow_local_time("America/New_York", (2026, 10, 31), (2026, 11, 1), 12, 13);
    }

    #[test]
    fn a_window_in_the_spring_gap_starts_right_after_it() {
        // 02:30 does not exist in Stockholm on 2026-03-29; it fires at 03:00 CEST = 01:00 UTC.
        let s = schedule("night", "30 2 * * *", "Europe/Stockholm", 1, Some(3));
        assert!(!is_active(&s, utc(2026, 3, 29, 0, 59)));
        assert_eq!(
            active_since(&s, utc(2026, 3, 29, 1, 30)),
            Some(utc(2026, 3, 29, 1, 0))
        );
        assert!(!is_active(&s, utc(2026, 3, 29, 2, 0)), "one hour long");
        // The day before it fired at 02:30 CET = 01:30 UTC.
        assert_eq!(
            active_since(&s, utc(2026, 3, 28, 1, 45)),
            Some(utc(2026, 3, 28, 1, 30))
        );
    }

    #[test]
    fn a_window_in_the_repeated_hour_starts_once() {
        // 01:30 happens twice in New York on 2026-11-01 (EDT 05:30 UTC, EST 06:30 UTC).
        let s = schedule("batch", "30 1 * * *", "America/New_York", 1, Some(3));
        assert_eq!(
            active_since(&s, utc(2026, 11, 1, 5, 45)),
            Some(utc(2026, 11, 1, 5, 30))
        );
        assert!(
            !is_active(&s, utc(2026, 11, 1, 6, 45)),
            "the repeated 01:30 EST does not start the window again"
        );
    }

    #[test]
    fn weekday_windows_skip_weekends() {
        let s = schedule("business-hours", "0 8 * * MON-FRI", "UTC", 10, Some(10));
        assert!(is_active(&s, utc(2026, 11, 27, 9, 0)), "Friday");
        assert!(!is_active(&s, utc(2026, 11, 28, 9, 0)), "Saturday");
        assert!(is_active(&s, utc(2026, 11, 30, 17, 59)), "Monday");
    }

    #[test]
    fn a_window_spans_midnight() {
        let s = schedule("nightly", "0 22 * * *", "UTC", 4, Some(5));
        assert_eq!(
            active_since(&s, utc(2026, 11, 28, 1, 0)),
            Some(utc(2026, 11, 27, 22, 0))
        );
        assert!(!is_active(&s, utc(2026, 11, 28, 2, 0)));
    }

    #[test]
    fn overlapping_windows_take_the_highest_min_and_max_in_any_order() {
        let base = Bounds { min: 2, max: 20 };
        let w = |name: &str, min: Option<u32>, max: Option<u32>| ActiveWindow {
            name: name.to_owned(),
            since: utc(2026, 1, 1, 0, 0),
            until: utc(2026, 1, 1, 1, 0),
            min,
            max,
        };
        let business = w("business", Some(10), None);
        let weekend = w("weekend", Some(1), Some(5));
        let peak = w("peak", Some(15), Some(30));
        assert_eq!(bounds(base, &[]), base);
        assert_eq!(
            bounds(base, &[business.clone(), weekend.clone()]),
            Bounds { min: 10, max: 10 },
            "max is raised to the combined min"
        );
        assert_eq!(
            bounds(base, &[weekend.clone(), business.clone()]),
            bounds(base, &[business.clone(), weekend.clone()])
        );
        assert_eq!(
            bounds(base, std::slice::from_ref(&weekend)),
            Bounds { min: 1, max: 5 },
            "a window may lower both bounds"
        );
        assert_eq!(
            bounds(base, &[business, weekend, peak]),
            Bounds { min: 15, max: 30 }
        );
    }
}
