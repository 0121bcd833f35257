//! PromQL targets: `{ promql = "...", prometheus_url = "...", timeout = "5s", value = V }`.
//! The query runs against the Prometheus HTTP API (`/api/v1/query`) at every pass; its
//! result must be one number (a scalar, or a vector of one series), read as the pool's
//! per-node average. No data, several series, a non-number, an HTTP or query error:
//! each is an error that names the query, and the target counts as unavailable (HPA's
//! rule: no scale-down while a metric is missing).

use std::sync::OnceLock;
use std::time::Duration;

use serde::Deserialize;

#[derive(Debug, Deserialize)]
struct Answer {
    status: String,
    #[serde(default)]
    data: Option<Data>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Data {
    result_type: String,
    result: serde_json::Value,
}

fn client() -> &'static reqwest::Client {
    static CLIENT: OnceLock<reqwest::Client> = OnceLock::new();
    CLIENT.get_or_init(|| {
        crate::net::client_builder()
            .build()
            .unwrap_or_else(|_| reqwest::Client::new())
    })
}

/// Reads `[timestamp, "value"]`.
fn number(pair: &serde_json::Value) -> Result<f64, String> {
    let text = pair
        .get(1)
        .and_then(serde_json::Value::as_str)
        .ok_or_else(|| format!("unexpected sample {pair}"))?;
    let v: f64 = text
        .parse()
        .map_err(|_| format!("sample value {text:?} is not a number"))?;
    if v.is_finite() {
        Ok(v)
    } else {
        Err(format!("the query's value is {text}"))
    }
}

/// The single number a Prometheus answer holds.
pub fn value_of(body: &str) -> Result<f64, String> {
    let answer: Answer =
        serde_json::from_str(body).map_err(|e| format!("not a Prometheus API answer: {e}"))?;
    if answer.status != "success" {
        return Err(answer
            .error
            .unwrap_or_else(|| format!("status {}", answer.status)));
    }
    let data = answer.data.ok_or("the answer has no data")?;
    match data.result_type.as_str() {
        "scalar" => number(&data.result),
        "vector" => {
            let series = data.result.as_array().cloned().unwrap_or_default();
            match series.as_slice() {
                [] => Err("the query returned no data (an empty vector): check the series exists and is scraped".to_owned()),
                [one] => number(one.get("value").unwrap_or(&serde_json::Value::Null)),
                many => Err(format!(
                    "the query returned {} series; aggregate it to one number, e.g. avg(...) or sum(...) / count(...)",
                    many.len()
                )),
            }
        }
        other => Err(format!(
            "the query returned a {other}; it must return a scalar or one series"
        )),
    }
}

/// Runs `query` against the Prometheus at `url`.
pub async fn query(url: &str, query: &str, timeout: Duration) -> Result<f64, String> {
    let endpoint = format!("{}/api/v1/query", url.trim_end_matches('/'));
    let response = client()
        .get(&endpoint)
        .query(&[("query", query)])
        .timeout(timeout)
        .send()
        .await
        .map_err(|e| {
            if e.is_timeout() {
                format!(
                    "no answer from {endpoint} within {}s",
                    timeout.as_secs_f64()
                )
            } else {
                format!("cannot reach {endpoint}: {e}")
            }
        })?;
    let status = response.status();
    let body = response
        .text()
        .await
        .map_err(|e| format!("reading the answer from {endpoint}: {e}"))?;
    match value_of(&body) {
        Ok(v) => Ok(v),
        Err(e) if !status.is_success() => Err(format!("{endpoint} answered {status}: {e}")),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_number_or_a_clear_error() {
        let ok = r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1.5,"412.5"]}]}}"#;
        assert_eq!(value_of(ok), Ok(412.5));
        let scalar = r#"{"status":"success","data":{"resultType":"scalar","result":[1.5,"7"]}}"#;
        assert_eq!(value_of(scalar), Ok(7.0));
        let empty = r#"{"status":"success","data":{"resultType":"vector","result":[]}}"#;
        assert!(value_of(empty).unwrap_err().contains("no data"));
        let two = r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{"a":"1"},"value":[1,"1"]},{"metric":{"a":"2"},"value":[1,"2"]}]}}"#;
        assert!(value_of(two).unwrap_err().contains("2 series"));
        let nan = r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1,"NaN"]}]}}"#;
        assert!(value_of(nan).unwrap_err().contains("NaN"));
        let bad = r#"{"status":"error","errorType":"bad_data","error":"parse error at char 3"}"#;
        assert_eq!(value_of(bad), Err("parse error at char 3".to_owned()));
        let matrix = r#"{"status":"success","data":{"resultType":"matrix","result":[]}}"#;
        assert!(value_of(matrix).unwrap_err().contains("matrix"));
    }
}
