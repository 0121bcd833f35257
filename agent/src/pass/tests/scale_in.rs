//! Targeted scale-in on the leader, against the recording fake: which node is chosen,
//! its drain followed through its reports, exactly that instance removed; protection,
//! the leader's own node, timeouts, the unready halt, and a new leader carrying on.

use super::*;
use capstan_collectors::{DrainState, DrainStatus};
use capstan_providers::{Health, Instance};

use crate::state::memory::{DrainPhase, Memory};

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 7, 10, 0, 0).unwrap()
}

fn config(scale_in: &str) -> Pool {
    let text = format!(
        r#"
        [[pool]]
        name = "web"
        provider = {{ type = "dry-run", initial = 4 }}
        min = 1
        max = 10
        targets = [{{ metric = "cpu.utilization", value = 50 }}]
        scale_in = {{ {scale_in} }}
    "#
    );
    capstan_config::from_str("t.toml".as_ref(), &text, std::iter::empty())
        .unwrap()
        .pools
        .remove(0)
}

fn instance(id: &str, zone: &str) -> Instance {
    Instance {
        id: id.into(),
        lifecycle: Lifecycle::InService,
        health: Health::Healthy,
        instance_type: None,
        zone: Some(zone.into()),
        market: Market::OnDemand,
    }
}

/// A pool of four instances, i-1 … i-4, in two zones.
fn four() -> Arc<FakeProvider> {
    Arc::new(FakeProvider::new(PoolDescription {
        steps: Default::default(),
        min: 1,
        max: 10,
        desired: 4,
        instances: vec![
            instance("i-1", "a"),
            instance("i-2", "a"),
            instance("i-3", "b"),
            instance("i-4", "b"),
        ],
    }))
}

/// Reports of the given nodes (id, cpu), each with its drain state when given.
fn reports(nodes: &[(&str, f64, Option<DrainState>)], at: DateTime<Utc>) -> Vec<NodeReport> {
    nodes
        .iter()
        .map(|(id, cpu, drain)| {
            let mut r = crate::testutil::cpu_report(id, "web", *cpu, at);
            r.drain = drain.map(|state| DrainStatus {
                state,
                detail: None,
            });
            r
        })
        .collect()
}

struct Run {
    pool: PoolRuntime,
    claim: tokio::sync::watch::Receiver<Claim>,
    node: Option<&'static str>,
    heard_since: Option<DateTime<Utc>>,
}

impl Run {
    fn new(config: Pool, f: Arc<FakeProvider>) -> Self {
        Self {
            pool: PoolRuntime::new(config, f),
            claim: leader(),
            node: None,
            heard_since: None,
        }
    }

    async fn pass(&mut self, reports: &[NodeReport], at: DateTime<Utc>) -> PassOutcome {
        let refs: Vec<&NodeReport> = reports.iter().collect();
        let budget = no_budget();
        let mut out = fleet_pass(
            std::slice::from_mut(&mut self.pool),
            &mut [],
            &refs,
            &budget,
            Turn {
                node: self.node,
                heard_since: self.heard_since,
                ..Turn::new(&self.claim, Mode::Act, at, SECOND)
            },
        )
        .await;
        out.pools.remove(0).unwrap()
    }

    /// What the leader answers this pool's nodes now.
    fn asked(&self) -> std::collections::HashMap<String, capstan_collectors::ReportAnswer> {
        let mut out = std::collections::HashMap::new();
        crate::pass::scale_in::answer_drains(
            &self.pool.config.name,
            &self.pool.memory.drains,
            &mut out,
        );
        out
    }

    fn phases(&self) -> Vec<(String, DrainPhase)> {
        self.pool
            .memory
            .drains
            .iter()
            .map(|d| (d.node.clone(), d.phase))
            .collect()
    }
}

fn kinds(out: &PassOutcome) -> Vec<String> {
    out.reasons
        .iter()
        .map(|r| {
            serde_json::to_value(r).unwrap()["kind"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .filter(|k| {
            k.contains("drain")
                || k.contains("scale_in")
                || k == "removed"
                || k.contains("protected")
                || k.contains("awaiting")
        })
        .collect()
}

/// Four idle nodes, i-1 the least busy.
fn idle() -> [(&'static str, f64, Option<DrainState>); 4] {
    [
        ("i-1", 5.0, None),
        ("i-2", 10.0, None),
        ("i-3", 10.0, None),
        ("i-4", 10.0, None),
    ]
}

/// [`idle`], with i-1 saying it drained.
fn i1_drained() -> [(&'static str, f64, Option<DrainState>); 4] {
    let mut nodes = idle();
    nodes[0].2 = Some(DrainState::Drained);
    nodes
}

/// A leader that chose i-1 (the least busy of [`idle`]) and died; the next leader, a
/// second later, with the decision state the first saved.
async fn i1_draining_then_handed_over(f: &Arc<FakeProvider>) -> (Run, DateTime<Utc>) {
    let mut run = Run::new(config("max_draining = 1"), f.clone());
    let idle = idle();
    let at = past_the_window(&mut run, &idle).await;
    run.pass(&reports(&idle, at), at).await;
    assert_eq!(run.phases(), [("i-1".to_owned(), DrainPhase::Draining)]);
    let mut next = Run::new(config("max_draining = 1"), f.clone());
    next.pool.memory = Memory::decode(&run.pool.memory.encode()).unwrap();
    (next, at + chrono::Duration::seconds(1))
}

/// The first pass records the pool's size as a recommendation (a fresh leader waits
/// out the scale-down window); passes after the window may shrink it.
async fn past_the_window(run: &mut Run, busy: &[(&str, f64, Option<DrainState>)]) -> DateTime<Utc> {
    let out = run.pass(&reports(busy, t0()), t0()).await;
    assert_eq!(out.action, Action::None);
    t0() + chrono::Duration::seconds(301)
}

#[tokio::test]
async fn a_shrink_drains_the_least_busy_node_then_removes_exactly_it() {
    let f = four();
    let mut run = Run::new(
        config("max_draining = 1, drain_timeout = \"5m\""),
        f.clone(),
    );
    let idle = [
        ("i-1", 30.0, None),
        ("i-2", 10.0, None),
        ("i-3", 20.0, None),
        ("i-4", 25.0, None),
    ];
    let mut at = past_the_window(&mut run, &idle).await;

    // The plan wants 2 of 4: one drains at a time, the least busy first.
    let out = run.pass(&reports(&idle, at), at).await;
    assert_eq!(out.action, Action::Draining, "{:?}", out.detail);
    assert_eq!(kinds(&out), ["chosen_for_scale_in"]);
    assert_eq!(run.phases(), [("i-2".to_owned(), DrainPhase::Draining)]);
    assert!(!run.pool.unmatched);
    let asked = run.asked();
    let order = asked["i-2"].drain.as_ref().unwrap();
    assert_eq!(order.pool, "web");
    assert_eq!(order.deadline, at + chrono::Duration::minutes(5));
    assert_eq!(asked.len(), 1, "only the chosen node is asked");
    assert!(f.remove_calls().is_empty() && f.apply_calls().is_empty());

    // Its agent says it drains, then that it drained: exactly it is removed.
    at += chrono::Duration::seconds(1);
    let draining = [
        ("i-1", 30.0, None),
        ("i-2", 10.0, Some(DrainState::Draining)),
        ("i-3", 20.0, None),
        ("i-4", 25.0, None),
    ];
    let out = run.pass(&reports(&draining, at), at).await;
    assert_eq!(out.action, Action::Draining);
    assert_eq!(kinds(&out), ["drain_started"]);
    at += chrono::Duration::seconds(1);
    let drained = [
        ("i-1", 30.0, None),
        ("i-2", 10.0, Some(DrainState::Drained)),
        ("i-3", 20.0, None),
        ("i-4", 25.0, None),
    ];
    let out = run.pass(&reports(&drained, at), at).await;
    assert_eq!(out.action, Action::Scaled, "{:?}", out.detail);
    assert_eq!(kinds(&out), ["drained", "removed"]);
    assert_eq!(f.remove_calls(), [vec!["i-2".to_owned()]]);
    assert!(f.apply_calls().is_empty(), "no desired capacity was sent");
    assert!(run.pool.memory.drains.is_empty());
    // The removal is a scale event: 4 to 3.
    assert_eq!(run.pool.memory.last_target.unwrap().capacity, 3);

    // Still one too many: the next least busy is chosen, from the fuller zone b.
    at += chrono::Duration::seconds(1);
    let rest = [
        ("i-1", 30.0, None),
        ("i-3", 20.0, None),
        ("i-4", 25.0, None),
    ];
    let out = run.pass(&reports(&rest, at), at).await;
    assert_eq!(kinds(&out), ["chosen_for_scale_in"]);
    assert_eq!(run.phases(), [("i-3".to_owned(), DrainPhase::Draining)]);
}

#[tokio::test]
async fn an_agent_that_may_not_act_chooses_no_node_and_asks_no_drain() {
    let f = four();
    let mut run = Run::new(config("max_draining = 1"), f.clone());
    let idle = idle();
    let at = past_the_window(&mut run, &idle).await;
    // Its lease is not confirmed (here: it no longer leads).
    run.claim = tokio::sync::watch::channel(Claim::default()).1;
    let out = run.pass(&reports(&idle, at), at).await;
    assert_eq!(out.action, Action::Skipped, "{:?}", out.detail);
    assert!(run.pool.memory.drains.is_empty());
    assert!(run.asked().is_empty());
    assert!(f.remove_calls().is_empty() && f.apply_calls().is_empty());
}

#[tokio::test]
async fn protected_nodes_are_never_chosen_and_the_leaders_own_node_goes_last() {
    let f = four();
    let mut run = Run::new(config("max_draining = 4"), f.clone());
    run.node = Some("i-1");
    let idle = [
        ("i-1", 1.0, None),
        ("i-2", 2.0, None),
        ("i-3", 30.0, None),
        ("i-4", 40.0, None),
    ];
    let at = past_the_window(&mut run, &idle).await;
    let mut rs = reports(&idle, at);
    rs[1].protected = true;
    let out = run.pass(&rs, at).await;
    // Two must go: not i-2 (protected), not i-1 (the leader) while others can.
    let mut chosen: Vec<String> = run.phases().into_iter().map(|(n, _)| n).collect();
    chosen.sort();
    assert_eq!(chosen, ["i-3", "i-4"], "{:?}", out.reasons);
    assert!(kinds(&out).contains(&"protected_node_skipped".to_owned()));
}

#[tokio::test]
async fn a_drain_past_its_deadline_is_removed_or_kept_as_on_timeout_says() {
    for (on_timeout, removed) in [("remove", true), ("keep", false)] {
        let f = four();
        let mut run = Run::new(
            config(&format!(
                "max_draining = 1, drain_timeout = \"10s\", on_timeout = \"{on_timeout}\""
            )),
            f.clone(),
        );
        let idle = [
            ("i-1", 5.0, None),
            ("i-2", 10.0, None),
            ("i-3", 10.0, None),
            ("i-4", 10.0, None),
        ];
        let mut at = past_the_window(&mut run, &idle).await;
        run.pass(&reports(&idle, at), at).await;
        assert_eq!(run.phases(), [("i-1".to_owned(), DrainPhase::Draining)]);
        // Its agent drains and drains, past the deadline.
        at += chrono::Duration::seconds(11);
        let stuck = [
            ("i-1", 5.0, Some(DrainState::Draining)),
            ("i-2", 10.0, None),
            ("i-3", 10.0, None),
            ("i-4", 10.0, None),
        ];
        let out = run.pass(&reports(&stuck, at), at).await;
        let k = kinds(&out);
        assert!(k.contains(&"drain_timed_out".to_owned()), "{k:?}");
        if removed {
            assert_eq!(f.remove_calls(), [vec!["i-1".to_owned()]]);
        } else {
            assert!(f.remove_calls().is_empty());
            // Kept: asked to undo its drain, and another node is chosen instead.
            let asked = run.asked();
            assert!(asked["i-1"].undrain.is_some(), "{asked:?}");
            assert!(asked.values().filter(|a| a.drain.is_some()).count() == 1);
            // Once its reports carry no drain, it is forgotten.
            at += chrono::Duration::seconds(1);
            run.pass(&reports(&idle, at), at).await;
            assert!(!run.phases().iter().any(|(n, _)| n == "i-1"));
        }
    }
}

#[tokio::test]
async fn no_node_is_chosen_while_too_many_are_unready_and_a_silent_one_goes_without_a_drain() {
    let f = four();
    let mut run = Run::new(config("max_draining = 4"), f.clone());
    let all = [
        ("i-1", 5.0, None),
        ("i-2", 5.0, None),
        ("i-3", 5.0, None),
        ("i-4", 5.0, None),
    ];
    let at = past_the_window(&mut run, &all).await;
    // Two of four unhealthy at the cloud (50 % > 45 %): the shrink waits.
    let mut sick = f.describe().await.unwrap();
    sick.instances[1].health = Health::Unhealthy;
    sick.instances[2].health = Health::Unhealthy;
    f.set_description(sick);
    let out = run.pass(&reports(&all, at), at).await;
    assert_eq!(
        kinds(&out),
        ["scale_in_halted_unready"],
        "{:?}",
        out.reasons
    );
    assert_eq!(out.action, Action::Draining);
    assert!(run.pool.memory.drains.is_empty() && f.remove_calls().is_empty());
    // All healthy, one silent of four (25 %): it is chosen first and removed at once,
    // with no drain to wait for.
    f.set_description(four().describe().await.unwrap());
    let three = [("i-1", 5.0, None), ("i-2", 5.0, None), ("i-3", 5.0, None)];
    let at = at + chrono::Duration::seconds(1);
    let out = run.pass(&reports(&three, at), at).await;
    let chosen = out
        .reasons
        .iter()
        .find_map(|r| match r {
            Reason::ChosenForScaleIn(c) if c.node == "i-4" => Some((c.rule.clone(), c.deadline)),
            _ => None,
        })
        .expect("i-4 chosen");
    assert_eq!(chosen, ("silent".to_owned(), None));
    assert!(f.remove_calls()[0].contains(&"i-4".to_owned()));
}

/// A node not heard from since this agent began to lead is not taken for one without
/// an agent (chosen first and removed with no drain) until a report of it is overdue
/// (three intervals): its agent may not have found the new leader yet. It is not
/// chosen at all until then; the nodes heard from are.
#[tokio::test]
async fn a_new_leader_does_not_take_a_node_it_has_not_heard_from_yet_for_one_without_an_agent() {
    let heard = [("i-1", 5.0, None), ("i-2", 5.0, None), ("i-3", 5.0, None)];
    let chosen = |out: &PassOutcome| -> Vec<(String, String)> {
        out.reasons
            .iter()
            .filter_map(|r| match r {
                Reason::ChosenForScaleIn(c) => Some((c.node.clone(), c.rule.clone())),
                _ => None,
            })
            .collect()
    };
    for (led_for, silent) in [(0, false), (2, false), (3, true)] {
        let f = four();
        let mut run = Run::new(config("max_draining = 1"), f.clone());
        let at = past_the_window(&mut run, &heard).await;
        run.heard_since = Some(at - chrono::Duration::seconds(led_for));
        let out = run.pass(&reports(&heard, at), at).await;
        if silent {
            assert_eq!(
                kinds(&out),
                ["chosen_for_scale_in", "removed"],
                "{:?}",
                out.reasons
            );
            assert_eq!(chosen(&out), [("i-4".to_owned(), "silent".to_owned())]);
            assert_eq!(f.remove_calls(), [vec!["i-4".to_owned()]]);
        } else {
            assert_eq!(
                kinds(&out),
                ["scale_in_awaiting_reports", "chosen_for_scale_in"],
                "led for {led_for}s: {:?}",
                out.reasons
            );
            assert!(
                out.reasons
                    .contains(&Reason::ScaleInAwaitingReports { nodes: 1 })
            );
            let c = chosen(&out);
            assert_eq!(c.len(), 1);
            assert_ne!(c[0].0, "i-4", "led for {led_for}s");
            assert!(f.remove_calls().is_empty(), "led for {led_for}s");
            assert_eq!(out.action, Action::Draining);
        }
    }
}

/// A new leader plans its first passes before the nodes' reports reach it (none at
/// first: the plan holds the pool where it is). That is no reason to return the node
/// its predecessor chose: the drain goes on, and once the reports are in, it is
/// removed, not another node chosen.
#[tokio::test]
async fn a_new_leader_keeps_its_predecessors_drain_while_the_reports_come_in() {
    let f = four();
    let idle = idle();
    let (mut next, mut at) = i1_draining_then_handed_over(&f).await;
    next.heard_since = Some(at);
    // No report yet, then one, then all: the drain stands throughout.
    for heard in [&idle[..0], &idle[2..3], &idle[..]] {
        let out = next.pass(&reports(heard, at), at).await;
        assert!(
            !kinds(&out).contains(&"drain_cancelled".to_owned()),
            "{:?}",
            out.reasons
        );
        assert_eq!(next.phases(), [("i-1".to_owned(), DrainPhase::Draining)]);
        at += chrono::Duration::seconds(1);
    }
    let drained = i1_drained();
    let out = next.pass(&reports(&drained, at), at).await;
    assert!(
        kinds(&out).contains(&"removed".to_owned()),
        "{:?}",
        out.reasons
    );
    assert_eq!(f.remove_calls(), [vec!["i-1".to_owned()]]);
}

#[tokio::test]
async fn a_new_leader_carries_on_the_same_drain_and_removes_each_instance_once() {
    let f = four();
    let idle = idle();
    // The leader dies; the next reads the decision state it saved.
    let (mut next, mut at) = i1_draining_then_handed_over(&f).await;
    let out = next.pass(&reports(&idle, at), at).await;
    // Same drain, no other chosen for the same shrink.
    assert_eq!(out.action, Action::Draining);
    assert!(kinds(&out).is_empty(), "{:?}", kinds(&out));
    assert_eq!(next.phases(), [("i-1".to_owned(), DrainPhase::Draining)]);
    at += chrono::Duration::seconds(1);
    let drained = i1_drained();
    next.pass(&reports(&drained, at), at).await;
    at += chrono::Duration::seconds(1);
    next.pass(&reports(&drained[1..], at), at).await;
    let removals: Vec<Vec<String>> = f.remove_calls();
    assert_eq!(
        removals.iter().flatten().filter(|id| *id == "i-1").count(),
        1,
        "{removals:?}"
    );
}

/// A removal the cloud carried out whose answer never came back (here the call cut
/// off at the lease's end) is journaled as removed by the pass that sees the instance
/// gone, once, and nothing is sent for it again.
#[tokio::test]
async fn a_removal_whose_answer_was_lost_is_journaled_once_the_instance_is_gone() {
    let f = four();
    let mut run = Run::new(config("max_draining = 1"), f.clone());
    let idle = idle();
    let mut at = past_the_window(&mut run, &idle).await;
    run.pass(&reports(&idle, at), at).await;
    assert_eq!(run.phases(), [("i-1".to_owned(), DrainPhase::Draining)]);
    at += chrono::Duration::seconds(1);
    let drained = i1_drained();
    f.lose_next_answer(ProviderError::Fenced {
        message: "cut off: the leadership lease ran out before the cloud answered".into(),
    });
    let out = run.pass(&reports(&drained, at), at).await;
    assert_eq!(out.action, Action::Skipped, "{:?}", out.detail);
    assert_eq!(kinds(&out), ["drain_started", "drained"]);
    assert_eq!(run.phases(), [("i-1".to_owned(), DrainPhase::Remove)]);
    // The next pass sees i-1 gone: removed, as asked, and said so once.
    at += chrono::Duration::seconds(1);
    let out = run.pass(&reports(&drained[1..], at), at).await;
    let removed: Vec<&Reason> = out
        .reasons
        .iter()
        .filter(|r| matches!(r, Reason::Removed { .. }))
        .collect();
    assert_eq!(
        removed,
        [&Reason::Removed {
            nodes: vec!["i-1".to_owned()]
        }]
    );
    assert!(!run.phases().iter().any(|(n, _)| n == "i-1"));
    at += chrono::Duration::seconds(1);
    let out = run.pass(&reports(&drained[1..], at), at).await;
    assert!(
        !kinds(&out).contains(&"removed".to_owned()),
        "{:?}",
        kinds(&out)
    );
    let removals = f.remove_calls();
    assert_eq!(
        removals.iter().flatten().filter(|id| *id == "i-1").count(),
        1,
        "{removals:?}"
    );
}

#[tokio::test]
async fn a_pool_whose_reports_match_no_instance_lets_the_cloud_choose_and_says_so() {
    let f = four();
    let mut run = Run::new(config("max_draining = 1"), f.clone());
    let host = [("host", 5.0, None)];
    let at = past_the_window(&mut run, &host).await;
    let out = run.pass(&reports(&host, at), at).await;
    assert_eq!(out.action, Action::Scaled);
    assert_eq!(kinds(&out), ["scale_in_by_capacity"]);
    assert!(f.remove_calls().is_empty());
    // A cloud pool (not dry-run) whose nodes report under other ids is flagged.
    assert!(run.pool.unmatched);
    assert!(f.apply_calls().last().unwrap().capacity < 4);
}
