//! Workload metrics from a Prometheus text exposition: the samples of one series,
//! filtered by labels and combined into one value. Parsing is `prometheus-parse`'s.
//! Fetching the text is the agent's business (it owns the HTTP client and timeouts).

use std::collections::BTreeMap;

use prometheus_parse::{Scrape, Value};

/// How the kept samples become one value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Aggregate {
    /// Sum.
    Sum,
    /// Mean.
    Avg,
    /// Largest.
    Max,
    /// Smallest.
    Min,
}

/// What to keep from an exposition.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    /// Series (metric name).
    pub series: String,
    /// Every one of these labels must match.
    pub labels: BTreeMap<String, String>,
    /// Combination.
    pub aggregate: Aggregate,
}

/// Why an exposition gave no value.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ScrapeError {
    /// Not the text exposition format.
    #[error("not a Prometheus text exposition: {0}")]
    Parse(String),
    /// The series is not there (or no sample matches the labels).
    #[error("no sample of {series}{labels} in the exposition")]
    Missing {
        /// The series.
        series: String,
        /// The label matchers, as `{k="v",…}` or empty.
        labels: String,
    },
}

/// A sample's value, for the kinds that have a single one. Histograms and summaries
/// have no single value; keep their `_sum` or `_count` series instead.
fn single(v: &Value) -> Option<f64> {
    match v {
        Value::Counter(x) | Value::Gauge(x) | Value::Untyped(x) => Some(*x),
        Value::Histogram(_) | Value::Summary(_) => None,
    }
}

/// The value `rule` keeps from `text`.
pub fn extract(text: &str, rule: &Rule) -> Result<f64, ScrapeError> {
    let lines = text.lines().map(|l| Ok(l.to_owned()));
    let scrape = Scrape::parse(lines).map_err(|e| ScrapeError::Parse(e.to_string()))?;
    let values: Vec<f64> = scrape
        .samples
        .iter()
        .filter(|s| s.metric == rule.series)
        .filter(|s| {
            rule.labels
                .iter()
                .all(|(k, v)| s.labels.get(k).is_some_and(|x| x == v))
        })
        .filter_map(|s| single(&s.value))
        .filter(|v| v.is_finite())
        .collect();
    if values.is_empty() {
        let labels = if rule.labels.is_empty() {
            String::new()
        } else {
            let inner: Vec<String> = rule
                .labels
                .iter()
                .map(|(k, v)| format!("{k}={v:?}"))
                .collect();
            format!("{{{}}}", inner.join(","))
        };
        return Err(ScrapeError::Missing {
            series: rule.series.clone(),
            labels,
        });
    }
    let n = values.len() as f64;
    Ok(match rule.aggregate {
        Aggregate::Sum => values.iter().sum(),
        Aggregate::Avg => values.iter().sum::<f64>() / n,
        Aggregate::Max => values.iter().copied().fold(f64::MIN, f64::max),
        Aggregate::Min => values.iter().copied().fold(f64::MAX, f64::min),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"# HELP http_requests_per_second Requests served per second.
# TYPE http_requests_per_second gauge
http_requests_per_second{route="/predict",code="200"} 4000
http_requests_per_second{route="/predict",code="500"} 12
http_requests_per_second{route="/health",code="200"} 3
# TYPE inference_latency_ms gauge
inference_latency_ms 87.5
# TYPE requests_total counter
requests_total 1234
# TYPE lat histogram
lat_bucket{le="1"} 1
lat_bucket{le="+Inf"} 2
lat_sum 3
lat_count 2
"#;

    fn rule(series: &str, labels: &[(&str, &str)], aggregate: Aggregate) -> Rule {
        Rule {
            series: series.into(),
            labels: labels
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            aggregate,
        }
    }

    #[test]
    fn keeps_one_series_filters_by_labels_and_aggregates() {
        let r = |s, l: &[(&str, &str)], a| extract(TEXT, &rule(s, l, a));
        assert_eq!(
            r("http_requests_per_second", &[], Aggregate::Sum),
            Ok(4015.0)
        );
        assert_eq!(
            r(
                "http_requests_per_second",
                &[("route", "/predict")],
                Aggregate::Sum
            ),
            Ok(4012.0)
        );
        assert_eq!(
            r("http_requests_per_second", &[], Aggregate::Max),
            Ok(4000.0)
        );
        assert_eq!(r("http_requests_per_second", &[], Aggregate::Min), Ok(3.0));
        assert_eq!(
            r(
                "http_requests_per_second",
                &[("route", "/predict")],
                Aggregate::Avg
            ),
            Ok(2006.0)
        );
        assert_eq!(r("inference_latency_ms", &[], Aggregate::Sum), Ok(87.5));
        assert_eq!(r("requests_total", &[], Aggregate::Sum), Ok(1234.0));
        assert_eq!(r("lat_sum", &[], Aggregate::Sum), Ok(3.0));
    }

    #[test]
    fn a_missing_series_says_which() {
        let e = extract(
            TEXT,
            &rule(
                "http_requests_per_second",
                &[("route", "/x")],
                Aggregate::Sum,
            ),
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            r#"no sample of http_requests_per_second{route="/x"} in the exposition"#
        );
        assert!(matches!(
            extract(TEXT, &rule("nope", &[], Aggregate::Sum)),
            Err(ScrapeError::Missing { .. })
        ));
    }
}
