//! The real tools `--verify` asks, through their HTTP APIs: Prometheus (`/api/v1/query`,
//! `/api/v1/alerts`, `/api/v1/query_exemplars`) and Alertmanager (`/api/v2/alerts`).

use std::time::Duration;

use serde_json::Value as Json;

/// A tool that did not answer, or answered something else than its API documents.
#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    #[error("{tool} at {url}: {reason}")]
    Unreachable {
        tool: &'static str,
        url: String,
        reason: String,
    },
    #[error("{tool} at {url} answered {status}: {body}")]
    Status {
        tool: &'static str,
        url: String,
        status: u16,
        body: String,
    },
    #[error("{tool} at {url} answered what its API does not document: {reason}")]
    Shape {
        tool: &'static str,
        url: String,
        reason: String,
    },
}

/// A series of an instant query's answer: its labels and value.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub labels: serde_json::Map<String, Json>,
    pub value: f64,
}

/// One alert as Prometheus lists it: its labels and `pending` or `firing`.
#[derive(Clone, Debug, PartialEq)]
pub struct Alert {
    pub labels: serde_json::Map<String, Json>,
    pub state: String,
}

impl Alert {
    /// Named `alert` and carrying every label of `labels`.
    pub fn matches(&self, alert: &str, labels: &[(&str, &str)]) -> bool {
        self.labels.get("alertname").and_then(Json::as_str) == Some(alert)
            && labels
                .iter()
                .all(|(name, value)| self.labels.get(*name).and_then(Json::as_str) == Some(value))
    }
}

/// An HTTP API at a base URL (`http://127.0.0.1:9090`).
#[derive(Clone, Debug)]
pub struct Api {
    pub tool: &'static str,
    pub base: String,
    client: reqwest::Client,
}

impl Api {
    pub fn prometheus(base: &str) -> Api {
        Api::new("Prometheus", base)
    }

    pub fn alertmanager(base: &str) -> Api {
        Api::new("Alertmanager", base)
    }

    fn new(tool: &'static str, base: &str) -> Api {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap_or_default();
        Api {
            tool,
            base: base.trim_end_matches('/').to_owned(),
            client,
        }
    }

    /// The JSON at `path` (with its query string already encoded).
    pub async fn get(&self, path: &str) -> Result<Json, ToolError> {
        let url = format!("{}{path}", self.base);
        let unreachable = |reason: String| ToolError::Unreachable {
            tool: self.tool,
            url: url.clone(),
            reason,
        };
        let response = self
            .client
            .get(&url)
            .send()
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        let status = response.status().as_u16();
        let body = response
            .text()
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        if !(200..300).contains(&status) {
            return Err(ToolError::Status {
                tool: self.tool,
                url,
                status,
                body: body.chars().take(300).collect(),
            });
        }
        serde_json::from_str(&body).map_err(|e| self.shape(&url, e.to_string()))
    }

    /// Whether it answers its readiness path.
    pub async fn ready(&self) -> bool {
        let url = format!("{}/-/ready", self.base);
        matches!(self.client.get(&url).send().await, Ok(r) if r.status().is_success())
    }

    fn shape(&self, url: &str, reason: String) -> ToolError {
        ToolError::Shape {
            tool: self.tool,
            url: url.to_owned(),
            reason,
        }
    }

    /// Prometheus: an instant query's series (a vector; a scalar is one unlabelled one).
    pub async fn query(&self, expr: &str) -> Result<Vec<Sample>, ToolError> {
        let path = format!("/api/v1/query?query={}", encode(expr));
        let json = self.get(&path).await?;
        parse_query(&json).map_err(|reason| self.shape(&path, reason))
    }

    /// Prometheus: every pending and firing alert.
    pub async fn alerts(&self) -> Result<Vec<Alert>, ToolError> {
        let json = self.get("/api/v1/alerts").await?;
        parse_alerts(&json).map_err(|reason| self.shape("/api/v1/alerts", reason))
    }

    /// Prometheus: the longest range selector (`[5m]`) of the alerting rules named
    /// `alert`, the time a change takes to leave them; `None` without one.
    pub async fn rule_window(&self, alert: &str) -> Result<Option<Duration>, ToolError> {
        let json = self.get("/api/v1/rules?type=alert").await?;
        let groups = json["data"]["groups"]
            .as_array()
            .ok_or_else(|| self.shape("/api/v1/rules", "no data.groups".to_owned()))?;
        Ok(groups
            .iter()
            .flat_map(|g| g["rules"].as_array().into_iter().flatten())
            .filter(|rule| rule["name"].as_str() == Some(alert))
            .filter_map(|rule| rule["query"].as_str())
            .filter_map(longest_range)
            .max())
    }

    /// Alertmanager: the alerts it holds (active, suppressed or unprocessed).
    pub async fn alertmanager_alerts(&self) -> Result<Vec<Alert>, ToolError> {
        let json = self.get("/api/v2/alerts").await?;
        parse_alertmanager_alerts(&json).map_err(|reason| self.shape("/api/v2/alerts", reason))
    }
}

/// The longest range selector of a PromQL expression: `[5m]`, `[1h]`, `[30s]`, `[1h30m]`.
pub fn longest_range(expr: &str) -> Option<Duration> {
    expr.split('[')
        .skip(1)
        .filter_map(|rest| rest.split(']').next())
        // A subquery `[1h:1m]`: its range, not its resolution.
        .filter_map(|range| range.split(':').next())
        .filter_map(parse_promql_duration)
        .max()
}

/// A PromQL duration (`5m`, `1h30m`, `30s`; units ms, s, m, h, d, w, y).
fn parse_promql_duration(text: &str) -> Option<Duration> {
    let mut total = Duration::ZERO;
    let mut rest = text.trim();
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit())?;
        let number: u64 = rest[..digits].parse().ok()?;
        let unit_end = rest[digits..]
            .find(|c: char| c.is_ascii_digit())
            .map_or(rest.len(), |at| digits + at);
        let seconds = match &rest[digits..unit_end] {
            "ms" => 0,
            "s" => 1,
            "m" => 60,
            "h" => 3600,
            "d" => 86_400,
            "w" => 604_800,
            "y" => 31_536_000,
            _ => return None,
        };
        total += Duration::from_secs(number * seconds);
        rest = &rest[unit_end..];
    }
    Some(total)
}

/// Percent-encodes a query-string value (everything but the unreserved characters).
pub fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// `{"status":"success","data":{"resultType":"vector","result":[{"metric":{..},"value":[t,"v"]}]}}`
/// (<https://prometheus.io/docs/prometheus/latest/querying/api/#instant-queries>).
fn parse_query(json: &Json) -> Result<Vec<Sample>, String> {
    let data = &json["data"];
    let value = |pair: &Json| -> Result<f64, String> {
        pair[1]
            .as_str()
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| format!("a value that is no number: {pair}"))
    };
    match data["resultType"].as_str() {
        Some("vector") => data["result"]
            .as_array()
            .ok_or("no result list")?
            .iter()
            .map(|series| {
                Ok(Sample {
                    labels: series["metric"].as_object().cloned().unwrap_or_default(),
                    value: value(&series["value"])?,
                })
            })
            .collect(),
        Some("scalar") => Ok(vec![Sample {
            labels: serde_json::Map::new(),
            value: value(&data["result"])?,
        }]),
        other => Err(format!("result type {other:?}, not a vector")),
    }
}

/// `{"data":{"alerts":[{"labels":{..},"state":"pending"|"firing",..}]}}`
/// (<https://prometheus.io/docs/prometheus/latest/querying/api/#alerts>).
fn parse_alerts(json: &Json) -> Result<Vec<Alert>, String> {
    let alerts = json["data"]["alerts"].as_array().ok_or("no data.alerts")?;
    Ok(alerts
        .iter()
        .map(|alert| Alert {
            labels: alert["labels"].as_object().cloned().unwrap_or_default(),
            state: alert["state"].as_str().unwrap_or("?").to_owned(),
        })
        .collect())
}

/// `[{"labels":{..},"status":{"state":"active"|"suppressed"|"unprocessed"},..}]`
/// (Alertmanager's OpenAPI v2, `GET /alerts`: `gettableAlerts`).
fn parse_alertmanager_alerts(json: &Json) -> Result<Vec<Alert>, String> {
    let alerts = json.as_array().ok_or("not a list of alerts")?;
    Ok(alerts
        .iter()
        .map(|alert| Alert {
            labels: alert["labels"].as_object().cloned().unwrap_or_default(),
            state: alert["status"]["state"].as_str().unwrap_or("?").to_owned(),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_vector_and_a_scalar_parse_and_anything_else_is_an_error() {
        let vector = json!({"status": "success", "data": {"resultType": "vector", "result": [
            {"metric": {"service_name": "payment-service"}, "value": [1.5, "0.25"]},
            {"metric": {}, "value": [1.5, "NaN"]}
        ]}});
        let samples = parse_query(&vector).expect("a vector");
        assert_eq!(samples.len(), 2);
        assert_eq!(samples[0].value, 0.25);
        assert!(samples[1].value.is_nan());
        let scalar = json!({"data": {"resultType": "scalar", "result": [1.5, "3"]}});
        assert_eq!(parse_query(&scalar).expect("a scalar")[0].value, 3.0);
        let matrix = json!({"data": {"resultType": "matrix", "result": []}});
        assert!(parse_query(&matrix).is_err());
    }

    #[test]
    fn alerts_of_both_tools_parse_and_match_by_name_and_labels() {
        let prometheus = json!({"status": "success", "data": {"alerts": [
            {"labels": {"alertname": "ServiceHighErrorRatio", "service_name": "payment-service"},
             "state": "pending", "activeAt": "2026-01-01T00:00:00Z", "value": "3e-01"}
        ]}});
        let alerts = parse_alerts(&prometheus).expect("alerts");
        assert!(alerts[0].matches(
            "ServiceHighErrorRatio",
            &[("service_name", "payment-service")]
        ));
        assert!(!alerts[0].matches(
            "ServiceHighErrorRatio",
            &[("service_name", "order-service")]
        ));
        assert!(!alerts[0].matches("Watchdog", &[]));
        let alertmanager = json!([
            {"labels": {"alertname": "Watchdog"}, "status": {"state": "active", "silencedBy": [], "inhibitedBy": []}}
        ]);
        let held = parse_alertmanager_alerts(&alertmanager).expect("alerts");
        assert_eq!(
            (held[0].state.as_str(), held[0].matches("Watchdog", &[])),
            ("active", true)
        );
    }

    #[test]
    fn the_longest_range_of_a_rule_is_its_window() {
        let rule = "sum(rate(a[5m])) / sum(rate(b[30s])) > on() avg_over_time(c[1h30m:1m])";
        // A subquery's range is its window too; its resolution is not.
        assert_eq!(longest_range(rule), Some(Duration::from_secs(5400)));
        assert_eq!(
            longest_range("sum(rate(a[5m])) / sum(rate(b[30s]))"),
            Some(Duration::from_secs(300))
        );
        assert_eq!(longest_range("x[1h30m]"), Some(Duration::from_secs(5400)));
        assert_eq!(longest_range("slo:sli_error:ratio_rate1h > 0"), None);
        assert_eq!(longest_range("x[5q]"), None);
    }

    #[test]
    fn encoding_leaves_only_unreserved_characters() {
        assert_eq!(encode("a{b=\"c\"} > 0.5"), "a%7Bb%3D%22c%22%7D%20%3E%200.5");
    }
}
