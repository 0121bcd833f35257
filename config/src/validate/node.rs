//! The node's own settings: `[agent]` and its scrapes.

use super::*;

pub(super) fn check_scrapes(c: &mut Checker<'_>, raw: &[raw::ScrapeConfig]) -> Vec<Scrape> {
    let mut names: BTreeMap<String, usize> = BTreeMap::new();
    let mut out = Vec::new();
    for (i, s) in raw.iter().enumerate() {
        let at = |key: &str| [k("scrape"), Seg::Index(i), k(key)];
        c.url(&at("url"), None, &s.url);
        let series_ok = !s.series.is_empty()
            && s.series
                .chars()
                .all(|ch| ch.is_ascii_alphanumeric() || ch == '_' || ch == ':');
        if !series_ok {
            c.report(
                &at("series"),
                None,
                format!(
                    "\"{}\" is not a Prometheus metric name (letters, digits, '_' and ':')",
                    s.series
                ),
            );
        }
        let name = s.name.clone().unwrap_or_else(|| s.series.clone());
        let name_ok = !name.is_empty()
            && name
                .chars()
                .all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '_' | '-' | '.'));
        if !name_ok {
            c.report(
                &at("name"),
                None,
                format!(
                    "\"{name}\" cannot be a workload metric name (letters, digits, '_', '-', '.')"
                ),
            );
        }
        if let Some(first) = names.insert(name.clone(), i) {
            c.report(
                &at("name"),
                None,
                format!(
                    "scrape[{first}] already makes workload.{name}; give one of them another `name`"
                ),
            );
        }
        let timeout = c.duration(
            &at("timeout"),
            None,
            &s.timeout,
            Duration::from_millis(100),
            Duration::from_secs(60),
        );
        let min = s.min.unwrap_or(0.0);
        let mut range_ok = true;
        for (key, v) in [("min", Some(min)), ("max", s.max)] {
            if v.is_some_and(|v| !v.is_finite()) {
                c.report(&at(key), None, "must be a finite number");
                range_ok = false;
            }
        }
        if let Some(max) = s.max
            && range_ok
            && max < min
        {
            c.report(
                &at("max"),
                None,
                format!("{max} is below min ({min}): no value could be reported"),
            );
            range_ok = false;
        }
        if let (Some(timeout), true, true, true) = (timeout, series_ok, name_ok, range_ok) {
            out.push(Scrape {
                url: s.url.clone(),
                series: s.series.clone(),
                labels: s.labels.clone(),
                aggregate: s.aggregate,
                name,
                timeout,
                range: (min, s.max),
            });
        }
    }
    out
}

pub(super) fn check_agent(c: &mut Checker<'_>, raw: &RawConfig) -> Option<Agent> {
    let a = &raw.agent;
    if let Some(name) = &a.node_name {
        c.non_empty(&[k("agent"), k("node_name")], None, name);
    }
    let listen = match a.listen.parse::<SocketAddr>() {
        Ok(addr) => Some(addr),
        Err(_) => {
            c.report(
                &[k("agent"), k("listen")],
                None,
                format!("\"{}\" is not an address; write IP:PORT, e.g. \"0.0.0.0:9464\" or \"127.0.0.1:0\"", a.listen),
            );
            None
        }
    };
    let interval = c.duration(
        &[k("agent"), k("interval")],
        None,
        &a.interval,
        Duration::from_secs(1),
        Duration::from_secs(3600),
    );
    if a.state_dir.as_os_str().is_empty() {
        c.report(&[k("agent"), k("state_dir")], None, "must not be empty");
    }
    let interruptions = match &a.interruptions {
        None => Some(None),
        Some(i) => {
            let at = |key: &str| [k("agent"), k("interruptions"), k(key)];
            let poll = c.duration(
                &at("poll"),
                None,
                &i.poll,
                Duration::from_secs(1),
                Duration::from_secs(60),
            );
            if let Some(url) = &i.endpoint {
                c.url(&at("endpoint"), None, url);
            }
            if i.acknowledge && i.cloud != raw::InterruptionCloud::Azure {
                c.report(
                    &at("acknowledge"),
                    None,
                    "only Azure scheduled events can be acknowledged",
                );
            }
            // Every cloud serves its metadata at the same link-local address.
            let endpoint = i
                .endpoint
                .clone()
                .unwrap_or_else(|| "http://169.254.169.254".to_owned());
            poll.map(|poll| {
                Some(Interruptions {
                    cloud: i.cloud,
                    endpoint: endpoint.trim_end_matches('/').to_owned(),
                    poll,
                    acknowledge: i.acknowledge,
                })
            })
        }
    };
    let request_timeout = c.duration(
        &[k("agent"), k("request_timeout")],
        None,
        &a.request_timeout,
        Duration::from_secs(1),
        Duration::from_secs(300),
    );
    if a.max_connections < 16 {
        c.report(
            &[k("agent"), k("max_connections")],
            None,
            format!(
                "{} is too few: Prometheus, the kubelet's probes and every node's reports share them; at least 16",
                a.max_connections
            ),
        );
    }
    check_drain(c, &a.drain);
    Some(Agent {
        drain: a.drain.clone(),
        node_name: a.node_name.clone(),
        pool: a.pool.clone(),
        listen: listen?,
        interval: interval?,
        max_connections: usize::try_from(a.max_connections).unwrap_or(usize::MAX),
        request_timeout: request_timeout?,
        state_dir: a.state_dir.clone(),
        interruptions: interruptions?,
    })
}

/// `[agent.drain]`: a command where the method runs one, and none where it does not.
fn check_drain(c: &mut Checker<'_>, d: &raw::DrainConfig) {
    let at = |key: &str| [k("agent"), k("drain"), k(key)];
    let blank = |argv: &[String]| argv.first().is_none_or(|p| p.trim().is_empty());
    match d.method {
        raw::DrainMethod::Command if blank(&d.command) => c.report(
            &at("command"),
            None,
            "method = \"command\" needs the program to run, e.g. command = [\"/usr/local/bin/drain-node\", \"--grace\", \"60\"]",
        ),
        raw::DrainMethod::None if !d.command.is_empty() || !d.undo_command.is_empty() => {
            c.report(
                &at("method"),
                None,
                "a command is set but method is \"none\", so it would never run; set method = \"command\"",
            );
        }
        _ => {}
    }
    if !d.undo_command.is_empty() && blank(&d.undo_command) {
        c.report(
            &at("undo_command"),
            None,
            "the program to run must not be empty",
        );
    }
    if d.protect_file
        .as_ref()
        .is_some_and(|p| p.as_os_str().is_empty())
    {
        c.report(&at("protect_file"), None, "must not be empty");
    }
}
