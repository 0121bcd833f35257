//! Targeted scale-in: which of a pool's nodes leave when its plan lowers it, how many
//! may drain at once, and when no scale-in may start at all.
//!
//! [`choose`] ranks the candidates, one pick at a time (each pick changes the counts
//! the next one sees):
//! 1. never a node that reports `protected`; the leader's own node only when no other
//!    is left;
//! 2. first, nodes the cloud marks unhealthy, under an interruption notice, or with no
//!    reporting agent (dead or not yet joined): they serve least;
//! 3. then a node of the market (on-demand or spot) that is over its planned share;
//! 4. then by `select`: the lowest reading of the pool's driving target
//!    (`least-busy`), the latest boot (`newest`) or the earliest (`oldest`);
//! 5. last, zone balance: the zone with the most nodes left;
//! 6. and the id, so the choice is the same on every leader.

pub use capstan_config::raw::ScaleInSelect as Select;
use chrono::{DateTime, Utc};

/// What the leader knows of one in-service node of the pool.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    /// The instance id (= the reporting node's id).
    pub id: String,
    /// Its zone, when the cloud says.
    pub zone: Option<String>,
    /// Bought as spot.
    pub spot: bool,
    /// The cloud marks it unhealthy.
    pub unhealthy: bool,
    /// Its report carries an interruption notice.
    pub interrupted: bool,
    /// No agent reports from it.
    pub silent: bool,
    /// Its agent reports `protected` (never chosen).
    pub protected: bool,
    /// The leader runs on it.
    pub leader: bool,
    /// Its own reading of the pool's driving target, when it reports one.
    pub busy: Option<f64>,
    /// When it booted, by its own report.
    pub booted: Option<DateTime<Utc>>,
}

/// Why a node was chosen: the first rule that set it apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// The cloud marks it unhealthy.
    Unhealthy,
    /// It is under an interruption notice.
    Interrupted,
    /// No agent reports from it.
    Silent,
    /// Its market was over its planned share.
    MarketOverShare,
    /// By `select` (and zone balance on a tie).
    Selected,
    /// The leader's own node, as no other was left.
    LeaderLast,
}

impl Rule {
    /// The name as reasons write it.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Unhealthy => "unhealthy",
            Self::Interrupted => "interrupted",
            Self::Silent => "silent",
            Self::MarketOverShare => "market_over_share",
            Self::Selected => "selected",
            Self::LeaderLast => "leader_last",
        }
    }
}

/// One node chosen to leave, with the facts behind the choice.
#[derive(Debug, Clone, PartialEq)]
pub struct Chosen {
    /// The node as the leader saw it.
    pub node: Candidate,
    /// The rule that chose it.
    pub rule: Rule,
    /// Nodes in its zone when it was chosen (itself included).
    pub zone_nodes: u32,
}

/// How many nodes of each market are over their planned share: in service now less
/// planned, each at least 0.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Excess {
    /// On-demand nodes over the plan.
    pub on_demand: u32,
    /// Spot nodes over the plan.
    pub spot: u32,
}

impl Excess {
    /// From the in-service counts and the planned split.
    pub const fn of(
        on_demand_now: u32,
        spot_now: u32,
        on_demand_planned: u32,
        spot_planned: u32,
    ) -> Self {
        Self {
            on_demand: on_demand_now.saturating_sub(on_demand_planned),
            spot: spot_now.saturating_sub(spot_planned),
        }
    }

    fn over(&self, spot: bool) -> bool {
        if spot {
            self.spot > 0
        } else {
            self.on_demand > 0
        }
    }

    fn take(&mut self, spot: bool) {
        let n = if spot {
            &mut self.spot
        } else {
            &mut self.on_demand
        };
        *n = n.saturating_sub(1);
    }
}

/// Chooses up to `count` of `candidates` to leave, in the order above. Fewer when too
/// few are eligible (protected nodes never are).
pub fn choose(
    candidates: &[Candidate],
    count: usize,
    excess: Excess,
    select: Select,
) -> Vec<Chosen> {
    let mut left: Vec<&Candidate> = candidates.iter().filter(|c| !c.protected).collect();
    let mut zones: std::collections::BTreeMap<Option<&str>, u32> =
        std::collections::BTreeMap::new();
    for c in candidates {
        *zones.entry(c.zone.as_deref()).or_default() += 1;
    }
    let mut excess = excess;
    let mut out = Vec::with_capacity(count.min(left.len()));
    while out.len() < count && !left.is_empty() {
        let mut best = 0;
        for i in 1..left.len() {
            if better(left[i], left[best], &excess, &zones, select) {
                best = i;
            }
        }
        let c = left.swap_remove(best);
        let zone_nodes = zones.get(&c.zone.as_deref()).copied().unwrap_or(0);
        let rule = if c.leader {
            Rule::LeaderLast
        } else if c.unhealthy {
            Rule::Unhealthy
        } else if c.interrupted {
            Rule::Interrupted
        } else if c.silent {
            Rule::Silent
        } else if excess.over(c.spot) {
            Rule::MarketOverShare
        } else {
            Rule::Selected
        };
        excess.take(c.spot);
        if let Some(n) = zones.get_mut(&c.zone.as_deref()) {
            *n = n.saturating_sub(1);
        }
        out.push(Chosen {
            node: c.clone(),
            rule,
            zone_nodes,
        });
    }
    out
}

/// Whether `a` leaves before `b`.
fn better(
    a: &Candidate,
    b: &Candidate,
    excess: &Excess,
    zones: &std::collections::BTreeMap<Option<&str>, u32>,
    select: Select,
) -> bool {
    use std::cmp::Ordering;
    let failing = |c: &Candidate| c.unhealthy || c.interrupted || c.silent;
    let zone = |c: &Candidate| zones.get(&c.zone.as_deref()).copied().unwrap_or(0);
    let selected = match select {
        // Lower first; a node with no reading after those with one.
        Select::LeastBusy => match (a.busy, b.busy) {
            (Some(x), Some(y)) => x.total_cmp(&y),
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (None, None) => Ordering::Equal,
        },
        Select::Newest => match (a.booted, b.booted) {
            (Some(x), Some(y)) => y.cmp(&x),
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (None, None) => Ordering::Equal,
        },
        Select::Oldest => match (a.booted, b.booted) {
            (Some(x), Some(y)) => x.cmp(&y),
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (None, None) => Ordering::Equal,
        },
    };
    let order = a
        .leader
        .cmp(&b.leader)
        .then(failing(b).cmp(&failing(a)))
        .then(excess.over(b.spot).cmp(&excess.over(a.spot)))
        .then(selected)
        .then(zone(b).cmp(&zone(a)))
        .then(a.id.cmp(&b.id));
    order == Ordering::Less
}

/// Whether scale-in must wait: more than `halt_when_unready` (a fraction) of the
/// pool's `nodes` in-service nodes are unready or not reporting. A pool with no node
/// has nothing to remove anyway.
pub fn halted(unready: u32, nodes: u32, halt_when_unready: f64) -> bool {
    nodes > 0 && f64::from(unready) > halt_when_unready * f64::from(nodes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn node(id: &str, busy: f64) -> Candidate {
        Candidate {
            id: id.into(),
            zone: Some("a".into()),
            spot: false,
            unhealthy: false,
            interrupted: false,
            silent: false,
            protected: false,
            leader: false,
            busy: Some(busy),
            booted: None,
        }
    }

    fn ids(chosen: &[Chosen]) -> Vec<&str> {
        chosen.iter().map(|c| c.node.id.as_str()).collect()
    }

    #[test]
    fn the_least_busy_leave_after_the_failing_and_before_the_leader() {
        let mut nodes = vec![
            node("i-1", 80.0),
            node("i-2", 10.0),
            node("i-3", 40.0),
            node("i-4", 5.0),
            node("i-5", 90.0),
        ];
        nodes[0].unhealthy = true;
        nodes[3].leader = true;
        nodes[1].protected = true;
        let chosen = choose(&nodes, 3, Excess::default(), Select::LeastBusy);
        assert_eq!(ids(&chosen), ["i-1", "i-3", "i-5"]);
        assert_eq!(chosen[0].rule, Rule::Unhealthy);
        assert_eq!(chosen[1].rule, Rule::Selected);
        // Everyone else first; then the leader; never the protected one.
        let all = choose(&nodes, 10, Excess::default(), Select::LeastBusy);
        assert_eq!(ids(&all), ["i-1", "i-3", "i-5", "i-4"]);
        assert_eq!(all[3].rule, Rule::LeaderLast);
    }

    #[test]
    fn the_market_over_its_share_goes_first_then_the_fullest_zone() {
        let mut nodes = vec![
            node("od-a", 10.0),
            node("spot-a", 50.0),
            node("spot-b", 50.0),
            node("spot-b2", 50.0),
        ];
        for n in &mut nodes[1..] {
            n.spot = true;
        }
        nodes[0].zone = Some("c".into());
        nodes[2].zone = Some("b".into());
        nodes[3].zone = Some("b".into());
        // Two spot nodes too many: both spot, though the on-demand one is less busy;
        // zone b (two nodes) before zone a (one).
        let chosen = choose(&nodes, 2, Excess::of(1, 3, 1, 1), Select::LeastBusy);
        assert_eq!(ids(&chosen), ["spot-b", "spot-a"]);
        assert_eq!(chosen[0].rule, Rule::MarketOverShare);
        assert_eq!(chosen[0].zone_nodes, 2);
        // Then a and b hold one spot node each: the tie goes by id.
        assert_eq!(chosen[1].zone_nodes, 1);
    }

    #[test]
    fn newest_and_oldest_go_by_boot_time_and_unknown_last() {
        let t = |h: i64| DateTime::<Utc>::from_timestamp(1_800_000_000 + h * 3600, 0);
        let mut nodes = vec![node("i-1", 0.0), node("i-2", 0.0), node("i-3", 0.0)];
        nodes[0].booted = t(1);
        nodes[1].booted = t(5);
        assert_eq!(
            ids(&choose(&nodes, 3, Excess::default(), Select::Newest)),
            ["i-2", "i-1", "i-3"]
        );
        assert_eq!(
            ids(&choose(&nodes, 3, Excess::default(), Select::Oldest)),
            ["i-1", "i-2", "i-3"]
        );
    }

    #[test]
    fn halts_above_the_unready_share_only() {
        assert!(!halted(1, 3, 0.45));
        assert!(halted(2, 3, 0.45));
        assert!(!halted(0, 0, 0.0));
        assert!(halted(1, 10, 0.0));
    }

    fn candidate() -> impl Strategy<Value = Candidate> {
        (
            0u32..3,
            any::<bool>(),
            prop::bool::weighted(0.1),
            prop::bool::weighted(0.1),
            prop::bool::weighted(0.1),
            prop::bool::weighted(0.15),
            prop::option::of(0.0f64..100.0),
        )
            .prop_map(
                |(zone, spot, unhealthy, interrupted, silent, protected, busy)| Candidate {
                    id: String::new(),
                    zone: Some(format!("z{zone}")),
                    spot,
                    unhealthy,
                    interrupted,
                    silent,
                    protected,
                    leader: false,
                    busy,
                    booted: None,
                },
            )
    }

    fn pool() -> impl Strategy<Value = (Vec<Candidate>, usize, usize, Excess)> {
        (
            prop::collection::vec(candidate(), 1..20),
            0usize..25,
            0usize..20,
            0u32..6,
            0u32..6,
        )
            .prop_map(|(mut nodes, count, leader, od, spot)| {
                for (i, n) in nodes.iter_mut().enumerate() {
                    n.id = format!("i-{i:02}");
                }
                let leader = leader % nodes.len();
                nodes[leader].leader = true;
                (
                    nodes,
                    count,
                    leader,
                    Excess {
                        on_demand: od,
                        spot,
                    },
                )
            })
    }

    proptest! {
        #[test]
        fn choices_respect_every_rule((nodes, count, leader, excess) in pool()) {
            let chosen = choose(&nodes, count, excess, Select::LeastBusy);
            let eligible = nodes.iter().filter(|n| !n.protected).count();
            // As many as asked, or every eligible node; each once; never protected.
            prop_assert_eq!(chosen.len(), count.min(eligible));
            let mut seen = std::collections::BTreeSet::new();
            for c in &chosen {
                prop_assert!(seen.insert(c.node.id.clone()));
                prop_assert!(!c.node.protected);
            }
            // The leader only once every other eligible node is chosen.
            if chosen.iter().any(|c| c.node.id == nodes[leader].id) {
                prop_assert_eq!(chosen.len(), eligible);
                prop_assert_eq!(chosen.last().map(|c| c.rule), Some(Rule::LeaderLast));
            }
            // A failing node is never left behind for a healthy one.
            let failing = |n: &Candidate| n.unhealthy || n.interrupted || n.silent;
            let healthy_chosen = chosen.iter().any(|c| !c.node.leader && !failing(&c.node));
            if healthy_chosen {
                for n in nodes.iter().filter(|n| !n.protected && !n.leader && failing(n)) {
                    prop_assert!(seen.contains(&n.id), "{} left behind", n.id);
                }
            }
            // Among healthy non-leader nodes of one market and zone, a busier one is
            // never chosen over a less busy one when neither market was over its share.
            if excess == Excess::default() {
                for c in chosen.iter().filter(|c| c.rule == Rule::Selected) {
                    for n in nodes.iter().filter(|n| {
                        !n.protected && !n.leader && !failing(n) && !seen.contains(&n.id)
                    }) {
                        if let (Some(x), Some(y)) = (c.node.busy, n.busy) {
                            prop_assert!(x <= y, "{} ({x}) chosen over {} ({y})", c.node.id, n.id);
                        }
                    }
                }
            }
            // Deterministic: the same input, the same choice.
            prop_assert_eq!(&chosen, &choose(&nodes, count, excess, Select::LeastBusy));
        }

        #[test]
        fn the_market_over_its_share_is_taken_first(
            (nodes, count, _leader, excess) in pool()
        ) {
            let chosen = choose(&nodes, count, excess, Select::LeastBusy);
            // Until a market's excess is used up, no healthy node of the other market
            // (that is not over) is chosen while one of the over market is left.
            let mut left = excess;
            for (k, c) in chosen.iter().enumerate() {
                if c.rule == Rule::Selected {
                    let rest: Vec<&Candidate> = nodes
                        .iter()
                        .filter(|n| !n.protected && !n.leader)
                        .filter(|n| !chosen[..=k].iter().any(|p| p.node.id == n.id))
                        .collect();
                    prop_assert!(
                        !rest.iter().any(|n| left.over(n.spot)),
                        "{} chosen by select while a node of an over-share market was left",
                        c.node.id
                    );
                }
                left.take(c.node.spot);
            }
        }
    }
}
