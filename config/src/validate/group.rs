//! `[[group]]`: members, strategies, and what a member may not set itself.

use super::*;

pub(super) fn valid_pool_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '-' | '_' | '.'))
}

/// Checks every `[[group]]` against the pools; returns the valid groups and, for each
/// pool named as a member, its (first) group's name.
pub(super) fn check_groups<'r>(
    c: &mut Checker<'_>,
    raw: &'r RawConfig,
) -> (Vec<Group>, BTreeMap<&'r str, &'r str>) {
    let mut membership: BTreeMap<&str, &str> = BTreeMap::new();
    let mut names: BTreeMap<&str, usize> = BTreeMap::new();
    let mut groups = Vec::new();
    let pool_names: Vec<&str> = raw.pools.iter().map(|p| p.name.as_str()).collect();
    for (i, g) in raw.groups.iter().enumerate() {
        let at = |rest: &[Seg]| -> Vec<Seg> { [&[k("group"), Seg::Index(i)][..], rest].concat() };
        // The key path names the group; `pool` labels are for pools.
        let name = None;
        let before = c.problems.len();
        if !valid_pool_name(&g.name) {
            c.report(
                &at(&[k("name")]),
                name,
                format!(
                    "\"{}\" is not a valid group name; use 1 to 63 letters, digits, '-', '_' or '.'",
                    g.name
                ),
            );
        }
        if let Some(first) = names.insert(g.name.as_str(), i) {
            c.report(
                &at(&[k("name")]),
                name,
                format!(
                    "duplicate group name; group[{first}] already uses \"{}\"",
                    g.name
                ),
            );
        }
        if pool_names.contains(&g.name.as_str()) {
            c.report(
                &at(&[k("name")]),
                name,
                format!(
                    "\"{}\" is already a pool's name; a group needs a name of its own",
                    g.name
                ),
            );
        }
        if g.members.is_empty() {
            c.report(
                &at(&[k("members")]),
                name,
                "a group needs at least one member pool, e.g. members = [\"web-aws\", \"web-azure\"]",
            );
        }
        check_members(c, &at, g, &pool_names, &mut membership);
        if g.strategy != GroupStrategy::Spread && g.max_skew.is_some() {
            c.report(
                &at(&[k("max_skew")]),
                name,
                format!(
                    "max_skew applies only to strategy = \"spread\" (this group's is \"{}\")",
                    g.strategy.as_str()
                ),
            );
        }
        if g.max_skew == Some(0) {
            c.report(&at(&[k("max_skew")]), name, "must be at least 1 (node)");
        }
        if !(0.0..1.0).contains(&g.tolerance) {
            c.report(
                &at(&[k("tolerance")]),
                name,
                format!(
                    "{} is out of range; allowed: 0 <= tolerance < 1 (HPA's default is 0.1)",
                    g.tolerance
                ),
            );
        }
        let (behavior_name, behavior) = check_behavior(c, &at(&[k("behavior")]), name, &g.behavior);
        if g.targets.is_empty() {
            c.report(
                &at(&[k("targets")]),
                name,
                "a group needs at least one target, e.g. { metric = \"cpu.utilization\", value = 70 }",
            );
        }
        let targets: Vec<Target> = g
            .targets
            .iter()
            .enumerate()
            .filter_map(|(j, t)| check_target(c, &at(&[k("targets"), Seg::Index(j)]), name, t))
            .collect();
        if c.problems.len() != before {
            continue;
        }
        if let Some(behavior) = behavior {
            groups.push(Group {
                name: g.name.clone(),
                members: g.members.clone(),
                strategy: g.strategy,
                max_skew: g.max_skew.unwrap_or(1),
                behavior_name,
                behavior,
                tolerance: g.tolerance,
                targets,
            });
        }
    }
    (groups, membership)
}

/// A group's members: each listed once, a configured pool, in no other group.
fn check_members<'r>(
    c: &mut Checker<'_>,
    at: &dyn Fn(&[Seg]) -> Vec<Seg>,
    g: &'r raw::GroupConfig,
    pool_names: &[&str],
    membership: &mut BTreeMap<&'r str, &'r str>,
) {
    // The key path names the group; `pool` labels are for pools.
    let name = None;
    for (j, member) in g.members.iter().enumerate() {
        let path = at(&[k("members"), Seg::Index(j)]);
        if g.members[..j].contains(member) {
            c.report(&path, name, format!("\"{member}\" is listed twice"));
            continue;
        }
        if !pool_names.contains(&member.as_str()) {
            c.report(
                &path,
                name,
                format!(
                    "\"{member}\" is not a configured pool; configured: {}",
                    pool_names.join(", ")
                ),
            );
            continue;
        }
        if let Some(&other) = membership.get(member.as_str()) {
            c.report(
                &path,
                name,
                format!(
                    "pool \"{member}\" is already a member of group \"{other}\"; a pool belongs to one group at most"
                ),
            );
        } else {
            membership.insert(member.as_str(), g.name.as_str());
        }
    }
}
