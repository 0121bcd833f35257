//! Fitting a plan to the sizes a pool can hold: a GKE node pool across `z` zones holds
//! multiples of `z` (each zone's group gets the same size). Planned here, within the
//! pool's max and the money left under the ceiling, so what the cloud is asked for is
//! what was planned and never rounds above either.

use crate::budget::Prices;
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

/// Fits a split plan to a pool whose two parts are sized apart, each in multiples of
/// its own step (a GKE pool over an on-demand node pool in `steps.0` zones and a spot
/// one in `steps.1`). The on-demand part goes one step down or up, and the spot part
/// fills the rest of the plan's size, one step down or up: of those sizes within the
/// pool's min and max (above max: within the size planned), the cheapest that is
/// affordable under `room`, holds the planned size and keeps the planned on-demand
/// nodes (the spot policy's floor); else the cheapest affordable that holds the size;
/// else the largest affordable; with none affordable, the cheapest (the min is the one
/// thing the budget cannot cut). Without prices nothing costs anything and the
/// smallest such size wins. With no such size the plan is left as it is. Returns the
/// change in cost per hour.
pub fn fit_parts(
    plan: &mut PoolPlan,
    steps: (u32, u32),
    prices: Option<&Prices>,
    room: &mut Option<f64>,
) -> f64 {
    let (a, b) = (steps.0.max(1), steps.1.max(1));
    let (od, spot, total) = (plan.on_demand, plan.spot, plan.desired);
    if od.is_multiple_of(a) && spot.is_multiple_of(b) {
        return 0.0;
    }
    let max = if plan.above_max {
        total
    } else {
        plan.bounds.max
    };
    let cost =
        |o: u32, s: u32| prices.map_or(0.0, |p| f64::from(o) * p.on_demand + f64::from(s) * p.spot);
    let before = cost(od, spot);
    let mut candidates = Vec::with_capacity(4);
    for o in [od / a * a, od.div_ceil(a).saturating_mul(a)] {
        let rest = total.saturating_sub(o);
        for s in [rest / b * b, rest.div_ceil(b).saturating_mul(b)] {
            let n = o.saturating_add(s);
            if n >= plan.bounds.min && n <= max && !candidates.contains(&(o, s)) {
                candidates.push((o, s));
            }
        }
    }
    let affordable = |&(o, s): &(u32, u32)| room.is_none_or(|r| cost(o, s) - before <= r + 1e-9);
    let holds = |&(o, s): &(u32, u32)| o + s >= total;
    // The cheapest, then the smallest.
    let cheapest = |sizes: &mut dyn Iterator<Item = (u32, u32)>| {
        sizes.min_by(|x, y| {
            cost(x.0, x.1)
                .total_cmp(&cost(y.0, y.1))
                .then((x.0 + x.1).cmp(&(y.0 + y.1)))
        })
    };
    let within = || candidates.iter().copied().filter(affordable);
    let chosen = cheapest(&mut within().filter(|c| holds(c) && c.0 >= od))
        .or_else(|| cheapest(&mut within().filter(holds)))
        .or_else(|| within().max_by_key(|&(o, s)| (o + s, o)))
        .or_else(|| cheapest(&mut candidates.iter().copied()));
    let Some((o, s)) = chosen else {
        return 0.0;
    };
    let delta = cost(o, s) - before;
    plan.on_demand = o;
    plan.spot = s;
    plan.desired = o + s;
    plan.hourly_cost += delta;
    if let Some(r) = room.as_mut() {
        *r = (*r - delta).max(0.0);
    }
    plan.reasons.push(Reason::SteppedParts {
        from: (od, spot),
        to: (o, s),
        steps: (a, b),
    });
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

    fn split_plan(od: u32, spot: u32, min: u32, max: u32, prices: &Prices) -> PoolPlan {
        let mut p = plan(od + spot, spot, min, max, 0.0);
        p.hourly_cost = f64::from(od) * prices.on_demand + f64::from(spot) * prices.spot;
        p
    }

    const PRICES: Prices = Prices {
        on_demand: 3.0,
        spot: 1.0,
    };

    #[test]
    fn each_part_to_its_own_step_keeping_the_on_demand_floor() {
        // On-demand node pool in 3 zones, spot in 2: 1 + 2 → 3 + 0 holds 3 nodes and
        // keeps the on-demand node.
        let mut p = split_plan(1, 2, 1, 10, &PRICES);
        let delta = fit_parts(&mut p, (3, 2), Some(&PRICES), &mut None);
        assert_eq!((p.on_demand, p.spot, p.desired), (3, 0, 3));
        assert!((delta - 4.0).abs() < 1e-9 && (p.hourly_cost - 9.0).abs() < 1e-9);
        assert_eq!(
            p.reasons,
            vec![Reason::SteppedParts {
                from: (1, 2),
                to: (3, 0),
                steps: (3, 2)
            }]
        );
        // Too dear for the money left: spot holds the size instead (0 + 4, 1 cheaper).
        let mut room = Some(2.0);
        let mut p = split_plan(1, 2, 1, 10, &PRICES);
        fit_parts(&mut p, (3, 2), Some(&PRICES), &mut room);
        assert_eq!((p.on_demand, p.spot), (0, 4));
        assert_eq!(room, Some(3.0));
        // Not past max: 5 + 5 in steps of 3 would be 6 + 6; max 9 leaves 3 + 6 and
        // 6 + 3, and the one that keeps the on-demand nodes wins.
        let mut p = split_plan(5, 5, 1, 9, &PRICES);
        fit_parts(&mut p, (3, 3), Some(&PRICES), &mut None);
        assert_eq!((p.on_demand, p.spot), (6, 3));
        // Already multiples: nothing changes, no reason.
        let mut p = split_plan(3, 4, 1, 10, &PRICES);
        assert_eq!(fit_parts(&mut p, (3, 2), Some(&PRICES), &mut None), 0.0);
        assert!(p.reasons.is_empty());
        // No size fits between min and max: left as planned.
        let mut p = split_plan(1, 1, 2, 2, &PRICES);
        fit_parts(&mut p, (3, 3), Some(&PRICES), &mut None);
        assert_eq!((p.on_demand, p.spot), (1, 1));
    }

    proptest! {
        /// Over sizes, both parts' zones and prices: each part a multiple of its step,
        /// never above max, never under min, never costing more than the money left
        /// when a size within it exists, and the hourly cost the parts' prices.
        #[test]
        fn fitted_parts_stay_within_max_the_ceiling_and_min(
            min in 0_u32..20,
            span in 0_u32..40,
            at in 0_u32..40,
            spot_share in 0.0_f64..1.0,
            steps in (1_u32..5, 1_u32..5),
            on_demand in 0.01_f64..10.0,
            spot_price in 0.01_f64..10.0,
            room in proptest::option::of(0.0_f64..30.0),
        ) {
            let prices = Prices { on_demand, spot: spot_price };
            let max = min + span;
            let desired = (min + at).min(max).max(1);
            prop_assume!(desired >= min && desired <= max);
            let spot = (f64::from(desired) * spot_share) as u32;
            let mut p = split_plan(desired - spot, spot, min, max, &prices);
            let before = p.hourly_cost;
            let mut left = room;
            let delta = fit_parts(&mut p, steps, Some(&prices), &mut left);
            prop_assert_eq!(p.on_demand + p.spot, p.desired);
            prop_assert!(p.desired <= max);
            prop_assert!((p.hourly_cost - before - delta).abs() < 1e-6);
            let cost = f64::from(p.on_demand) * on_demand + f64::from(p.spot) * spot_price;
            prop_assert!((p.hourly_cost - cost).abs() < 1e-6);
            if p.reasons.is_empty() {
                prop_assert_eq!((p.on_demand, p.spot), (desired - spot, spot));
            } else {
                prop_assert_eq!(p.on_demand % steps.0, 0);
                prop_assert_eq!(p.spot % steps.1, 0);
                prop_assert!(p.desired >= min);
                prop_assert!(p.desired.abs_diff(desired) < steps.0 + steps.1);
            }
            // Over the money left only for the min: the size with both parts
            // rounded down (no dearer than the plan while spot is no dearer than
            // on-demand) is under it.
            if let Some(r) = room
                && delta > r + 1e-6
                && spot_price <= on_demand
            {
                let o = (desired - spot) / steps.0 * steps.0;
                let low = o + (desired - o) / steps.1 * steps.1;
                prop_assert!(low < min, "{} over the {} left", delta, r);
            }
        }
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
            prop_assume!(desired >= min && desired <= max);
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
