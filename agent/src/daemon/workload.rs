//! Workload metrics: each `[[scrape]]` endpoint on this node is fetched every interval
//! and its kept series becomes `workload.<name>` in the node's report. The parsing and
//! aggregation are `capstan_collectors::scrape`'s; this module fetches, with each
//! scrape's timeout, all endpoints at once.

use capstan_collectors::NodeReport;
use capstan_collectors::scrape::{self, Aggregate, Rule};
use capstan_config::Scrape;
use capstan_config::raw::ScrapeAggregate;

/// The collector's rule for a configured scrape.
pub fn rule(s: &Scrape) -> Rule {
    Rule {
        series: s.series.clone(),
        labels: s.labels.clone(),
        aggregate: match s.aggregate {
            ScrapeAggregate::Sum => Aggregate::Sum,
            ScrapeAggregate::Avg => Aggregate::Avg,
            ScrapeAggregate::Max => Aggregate::Max,
            ScrapeAggregate::Min => Aggregate::Min,
        },
    }
}

/// Fetches one endpoint and keeps its value.
pub async fn fetch(client: &reqwest::Client, s: &Scrape) -> Result<f64, String> {
    let text = async {
        client
            .get(&s.url)
            .timeout(s.timeout)
            .send()
            .await?
            .error_for_status()?
            .text()
            .await
    }
    .await
    .map_err(|e| format!("{}: {e}", s.url))?;
    scrape::extract(&text, &rule(s)).map_err(|e| format!("{}: {e}", s.url))
}

/// Scrapes every endpoint into `report.workload`. Returns the failures, as
/// `(workload name, why)`; a failed scrape leaves its metric out of the report (its
/// target then counts the node as missing, under HPA's rules).
pub async fn collect(
    client: &reqwest::Client,
    scrapes: &[Scrape],
    report: &mut NodeReport,
) -> Vec<(String, String)> {
    let mut tasks = tokio::task::JoinSet::new();
    for s in scrapes {
        let (client, s) = (client.clone(), s.clone());
        tasks.spawn(async move {
            let v = fetch(&client, &s).await;
            (s.name, v)
        });
    }
    let mut failed = Vec::new();
    while let Some(done) = tasks.join_next().await {
        match done {
            Ok((name, Ok(v))) => {
                report.workload.insert(name, v);
            }
            Ok((name, Err(e))) => failed.push((name, e)),
            Err(e) => failed.push(("?".to_owned(), e.to_string())),
        }
    }
    failed.sort();
    failed
}
