//! Replication metrics in both Regions: a CloudWatch Embedded Metric Format line on standard
//! output per batch (Lambda and the CloudWatch agent turn it into metrics in the Region the
//! replicator runs in), and the same values with `PutMetricData` to the destination Region, so
//! an outage of either Region leaves the metrics readable in the other.

use std::io::Write;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_cloudwatch::types::{Dimension, MetricDatum, StandardUnit};
use esdk_kinesis::BatchOutcome;
use serde_json::{json, Map, Value};

/// Default CloudWatch namespace.
pub const DEFAULT_NAMESPACE: &str = "esdk/replication";

/// One batch's values.
#[derive(Clone, Debug, PartialEq)]
pub struct BatchMetrics {
    /// Records in the batch (Kinesis records).
    pub throughput: f64,
    /// Now minus the last replicated record's arrival, seconds.
    pub lag_seconds: Option<f64>,
    pub replicated: f64,
    /// Of those, KPL aggregates.
    pub aggregates: f64,
    pub refused: f64,
    pub skipped_replicas: f64,
    pub failed: f64,
}

impl BatchMetrics {
    pub fn of(outcome: &BatchOutcome) -> Self {
        let refused = outcome.refused.len();
        let dead = outcome.refused.iter().filter(|r| r.dead_lettered).count();
        let failed = outcome.records.saturating_sub(outcome.replicated + outcome.skipped_replicas + dead);
        Self {
            throughput: outcome.records as f64,
            lag_seconds: outcome
                .last_arrival
                .and_then(|a| SystemTime::now().duration_since(a).ok())
                .map(|d| d.as_secs_f64()),
            replicated: outcome.replicated as f64,
            aggregates: outcome.aggregates as f64,
            refused: refused as f64,
            skipped_replicas: outcome.skipped_replicas as f64,
            failed: failed as f64,
        }
    }

    /// A batch that failed as a whole (nothing forwarded or checkpointed).
    pub fn failed_batch(records: usize) -> Self {
        Self {
            throughput: records as f64,
            lag_seconds: None,
            replicated: 0.0,
            aggregates: 0.0,
            refused: 0.0,
            skipped_replicas: 0.0,
            failed: records as f64,
        }
    }

    fn values(&self) -> Vec<(&'static str, f64, StandardUnit)> {
        let mut v = vec![
            ("Throughput", self.throughput, StandardUnit::Count),
            ("Replicated", self.replicated, StandardUnit::Count),
            ("Aggregates", self.aggregates, StandardUnit::Count),
            ("Refused", self.refused, StandardUnit::Count),
            ("SkippedReplicas", self.skipped_replicas, StandardUnit::Count),
            ("Failed", self.failed, StandardUnit::Count),
        ];
        if let Some(lag) = self.lag_seconds {
            v.push(("ReplicationLagSeconds", lag, StandardUnit::Seconds));
        }
        v
    }
}

/// Publishes batch metrics with dimensions stream, source Region, destination Region.
#[derive(Clone, Debug)]
pub struct Metrics {
    namespace: String,
    stream: String,
    source_region: String,
    destination_region: String,
    /// `PutMetricData` in the destination Region (`None`: standard output only).
    cloudwatch: Option<aws_sdk_cloudwatch::Client>,
}

impl Metrics {
    pub fn new(
        namespace: &str,
        stream: &str,
        source_region: &str,
        destination_region: &str,
        cloudwatch: Option<aws_sdk_cloudwatch::Client>,
    ) -> Self {
        Self {
            namespace: namespace.to_owned(),
            stream: stream.to_owned(),
            source_region: source_region.to_owned(),
            destination_region: destination_region.to_owned(),
            cloudwatch,
        }
    }

    /// The EMF document of one batch (one line of JSON).
    pub fn emf_line(&self, m: &BatchMetrics) -> String {
        let values = m.values();
        let definitions: Vec<Value> =
            values.iter().map(|(name, _, unit)| json!({ "Name": name, "Unit": unit.as_str() })).collect();
        let mut doc = Map::new();
        doc.insert(
            "_aws".into(),
            json!({
                "Timestamp": SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64),
                "CloudWatchMetrics": [{
                    "Namespace": self.namespace,
                    "Dimensions": [["Stream", "SourceRegion", "DestinationRegion"]],
                    "Metrics": definitions,
                }],
            }),
        );
        doc.insert("Stream".into(), json!(self.stream));
        doc.insert("SourceRegion".into(), json!(self.source_region));
        doc.insert("DestinationRegion".into(), json!(self.destination_region));
        for (name, value, _) in values {
            doc.insert(name.into(), json!(value));
        }
        Value::Object(doc).to_string()
    }

    /// Writes the EMF line (one write, so lines of concurrent writers do not interleave) and
    /// sends the values to the destination Region. A failed `PutMetricData` is logged, never
    /// fails replication.
    pub async fn publish(&self, m: &BatchMetrics) {
        let mut line = self.emf_line(m);
        line.push('\n');
        let _ = std::io::stdout().lock().write_all(line.as_bytes());
        let Some(cw) = &self.cloudwatch else { return };
        let dims = [
            ("Stream", &self.stream),
            ("SourceRegion", &self.source_region),
            ("DestinationRegion", &self.destination_region),
        ]
        .map(|(k, v)| Dimension::builder().name(k).value(v.as_str()).build());
        let now = aws_sdk_cloudwatch::primitives::DateTime::from(SystemTime::now());
        let data: Vec<MetricDatum> = m
            .values()
            .into_iter()
            .map(|(name, value, unit)| {
                MetricDatum::builder()
                    .metric_name(name)
                    .value(value)
                    .unit(unit)
                    .timestamp(now)
                    .set_dimensions(Some(dims.to_vec()))
                    .build()
            })
            .collect();
        let sent = tokio::time::timeout(
            Duration::from_secs(2),
            cw.put_metric_data().namespace(&self.namespace).set_metric_data(Some(data)).send(),
        )
        .await;
        match sent {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::warn!(
                error = %aws_sdk_cloudwatch::error::DisplayErrorContext(&e),
                region = %self.destination_region,
                "PutMetricData failed (the EMF line on standard output still carries the metrics)"
            ),
            Err(_) => tracing::warn!(region = %self.destination_region, "PutMetricData timed out"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emf_lines_name_every_metric_and_dimension_at_the_top_level() {
        let m = Metrics::new("esdk/replication", "orders", "us-east-1", "us-west-2", None);
        let line = m.emf_line(&BatchMetrics {
            throughput: 10.0,
            lag_seconds: Some(1.5),
            replicated: 8.0,
            aggregates: 8.0,
            refused: 1.0,
            skipped_replicas: 1.0,
            failed: 0.0,
        });
        assert!(!line.contains('\n'));
        let v: Value = serde_json::from_str(&line).unwrap();
        let directive = &v["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(directive["Namespace"], "esdk/replication");
        for dim in directive["Dimensions"][0].as_array().unwrap() {
            assert!(v[dim.as_str().unwrap()].is_string(), "{dim}");
        }
        for def in directive["Metrics"].as_array().unwrap() {
            assert!(v[def["Name"].as_str().unwrap()].is_number(), "{def}");
        }
        assert_eq!(v["ReplicationLagSeconds"], 1.5);
        assert_eq!(v["Refused"], 1.0);
        assert!(v["_aws"]["Timestamp"].as_u64().unwrap() > 1_700_000_000_000);
    }
}
