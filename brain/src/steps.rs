//! Fitting a plan to the sizes a pool can hold: a GKE node pool across `z` zones holds
//! multiples of `z` (each zone's group gets the same size). Planned here, within the
//! pool's max and the money left under the ceiling, so what the cloud is asked for is
//! what was planned and never rounds above either.

use crate::fleet::PoolPlan;
use crate::reason::Reason;

/// Fits `plan` to a multiple of `step`: the next multiple up when it stays within the
/// pool's max (above max, within the size planned) and within `room` (money per hour
/// left under the ceiling, consumed); else the multiple below, when it is at least the
/// pool's min; else up, when it is within max (the min is the one thing the budget
/// cannot cut). With no multiple of `step` between min and max the plan is left as it
/// is. Extra nodes are on-demand; nodes taken off come off spot first. Returns the
/// change in cost per hour.
pub fn fit(plan: &mut PoolPlan, step: u32, room: &mut Option<f64>) -> f64 {
    let from = plan.desired;
    if step <= 1 || from.is_multiple_of(step) {
        return 0.0;
    }
    let up = (from / step).saturating_add(1).saturating_mul(step);
    let down = from / step * step;
    let max = if plan.above_max {
        from
    } else {
        plan.bounds.max
    };
    let per_node = plan.hourly_cost / f64::from(from);
    let extra = f64::from(up - from) * per_node;
    let affordable = room.is_none_or(|r| extra <= r + 1e-9);
    let to = if up <= max && affordable {
        up
    } else if down >= plan.bounds.min {
        down
    } else if up <= max {
        up
    } else {
        return 0.0;
    };
    if to > from {
        plan.on_demand += to - from;
    } else {
        let off = from - to;
        let from_spot = off.min(plan.spot);
        plan.spot -= from_spot;
        plan.on_demand -= off - from_spot;
    }
    let delta = f64::from(to) * per_node - plan.hourly_cost;
    plan.desired = to;
    plan.hourly_cost = f64::from(to) * per_node;
    if let Some(r) = room.as_mut() {
        *r = (*r - delta).max(0.0);
    }
    plan.reasons.push(Reason::Stepped { from, to, step });
    delta
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schedule::Bounds;
    use proptest::prelude::*;

    fn plan(desired: u32, spot: u32, min: u32, max: u32, price: f64) -> PoolPlan {
        PoolPlan {
            current: desired,
            desired,
            on_demand: desired - spot,
            spot,
            hourly_cost: f64::from(desired) * price,
            recommendation: None,
            bounds: Bounds { min, max },
            schedules: Vec::new(),
            emergency: false,
            above_max: false,
            frozen_until: None,
            reasons: Vec::new(),
        }
    }

    #[test]
    fn up_within_max_and_money_else_down() {
        // 3 zones: 7 → 9 when it fits.
        let mut p = plan(7, 2, 1, 10, 1.0);
        assert_eq!(fit(&mut p, 3, &mut None), 2.0);
        assert_eq!((p.desired, p.on_demand, p.spot), (9, 7, 2));
        // …not past max: down to 6, spot first.
        let mut p = plan(7, 2, 1, 8, 1.0);
        fit(&mut p, 3, &mut None);
        assert_eq!((p.desired, p.on_demand, p.spot), (6, 5, 1));
        // …nor past the money left: down.
        let mut room = Some(1.5);
        let mut p = plan(7, 0, 1, 10, 1.0);
        fit(&mut p, 3, &mut room);
        assert_eq!((p.desired, room), (6, Some(2.5)));
        // The min wins over the budget, never over max.
        let mut p = plan(2, 0, 2, 4, 1.0);
        fit(&mut p, 3, &mut Some(0.0));
        assert_eq!(p.desired, 3);
        let mut p = plan(2, 0, 2, 2, 1.0);
        fit(&mut p, 3, &mut None);
        assert_eq!(p.desired, 2, "no multiple of 3 in [2, 2]: left as planned");
        assert!(p.reasons.is_empty());
    }

    proptest! {
        /// Over sizes, zones and prices: the fitted plan is a multiple of the step
        /// within one step of the plan, never above max, never costs more than the
        /// money left, and never under min when a multiple fits between min and max.
        #[test]
        fn a_fitted_plan_stays_within_max_the_ceiling_and_min(
            min in 0_u32..20,
            span in 0_u32..40,
            at in 0_u32..40,
            spot_share in 0.0_f64..1.0,
            step in 1_u32..6,
            price in 0.01_f64..10.0,
            room in proptest::option::of(0.0_f64..30.0),
        ) {
            let max = min + span;
            let desired = (min + at).min(max).max(1);
            prop_assume!(desired >= min);
            let spot = (f64::from(desired) * spot_share) as u32;
            let mut p = plan(desired, spot, min, max, price);
            let mut left = room;
            let before = p.hourly_cost;
            let delta = fit(&mut p, step, &mut left);
            prop_assert!(p.desired <= max);
            prop_assert_eq!(p.on_demand + p.spot, p.desired);
            prop_assert!((p.hourly_cost - before - delta).abs() < 1e-6);
            if let Some(r) = room {
                prop_assert!(delta <= r + 1e-6 || p.desired < desired || desired < min.div_ceil(step.max(1)) * step);
            }
            prop_assert!(p.desired.abs_diff(desired) < step);
            let fits = (min..=max).any(|n| n % step == 0 && n > 0) || min == 0;
            if fits && step > 1 {
                prop_assert_eq!(p.desired % step, 0);
                prop_assert!(p.desired >= min);
            }
        }
    }
}
