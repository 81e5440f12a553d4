//! Replication metrics in both Regions: a CloudWatch Embedded Metric Format line on standard
//! output per batch (Lambda and the CloudWatch agent turn it into metrics in the Region the
//! replicator runs in), and the same values with `PutMetricData` to the destination Region, so
//! an outage of either Region leaves the metrics readable in the other. `PutMetricData` carries
//! the samples of every batch since the last call (`Values`/`Counts`), at most once per flush
//! interval (default 10 s), so a batch pays no cross-Region round trip for its metrics; samples
//! not yet sent when an execution environment is shut down are only in the EMF copy.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_sdk_cloudwatch::types::{Dimension, MetricDatum, StandardUnit};
use esdk_kinesis::BatchOutcome;
use serde_json::{json, Map, Value};

/// Default CloudWatch namespace.
pub const DEFAULT_NAMESPACE: &str = "esdk/replication";

/// Default least time between two `PutMetricData` calls.
pub const DEFAULT_FLUSH_INTERVAL: Duration = Duration::from_secs(10);

/// `PutMetricData` takes at most 150 distinct values per datum.
const MAX_VALUES: usize = 150;

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

/// Samples waiting for the next `PutMetricData`: per metric, value → count.
#[derive(Debug, Default)]
struct Pending {
    samples: BTreeMap<&'static str, (StandardUnit, BTreeMap<u64, f64>)>,
    since: Option<Instant>,
}

/// Publishes batch metrics with dimensions stream, source Region, destination Region.
#[derive(Debug)]
pub struct Metrics {
    namespace: String,
    stream: String,
    source_region: String,
    destination_region: String,
    /// `PutMetricData` in the destination Region (`None`: standard output only).
    cloudwatch: Option<aws_sdk_cloudwatch::Client>,
    flush_interval: Duration,
    pending: Mutex<Pending>,
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
            flush_interval: DEFAULT_FLUSH_INTERVAL,
            pending: Mutex::default(),
        }
    }

    /// Least time between two `PutMetricData` calls (zero: one per batch).
    pub fn flush_interval(mut self, interval: Duration) -> Self {
        self.flush_interval = interval;
        self
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
    /// queues the values for the destination Region, sending them when the flush interval has
    /// passed. A failed `PutMetricData` is logged, never fails replication.
    pub async fn publish(&self, m: &BatchMetrics) {
        let mut line = self.emf_line(m);
        line.push('\n');
        let _ = std::io::stdout().lock().write_all(line.as_bytes());
        if self.cloudwatch.is_none() {
            return;
        }
        let due = {
            let Ok(mut p) = self.pending.lock() else { return };
            let since = *p.since.get_or_insert_with(Instant::now);
            let mut full = false;
            for (name, value, unit) in m.values() {
                let (_, values) = p.samples.entry(name).or_insert_with(|| (unit, BTreeMap::new()));
                *values.entry(value.to_bits()).or_insert(0.0) += 1.0;
                full |= values.len() >= MAX_VALUES;
            }
            full || since.elapsed() >= self.flush_interval
        };
        if due {
            self.flush().await;
        }
    }

    /// Sends every queued sample to the destination Region now.
    pub async fn flush(&self) {
        let Some(cw) = &self.cloudwatch else { return };
        let samples = match self.pending.lock() {
            Ok(mut p) => {
                p.since = None;
                std::mem::take(&mut p.samples)
            }
            Err(_) => return,
        };
        if samples.is_empty() {
            return;
        }
        let dims = [
            ("Stream", &self.stream),
            ("SourceRegion", &self.source_region),
            ("DestinationRegion", &self.destination_region),
        ]
        .map(|(k, v)| Dimension::builder().name(k).value(v.as_str()).build());
        let now = aws_sdk_cloudwatch::primitives::DateTime::from(SystemTime::now());
        let data: Vec<MetricDatum> = samples
            .into_iter()
            .map(|(name, (unit, values))| {
                let (values, counts): (Vec<f64>, Vec<f64>) =
                    values.into_iter().map(|(v, c)| (f64::from_bits(v), c)).unzip();
                MetricDatum::builder()
                    .metric_name(name)
                    .set_values(Some(values))
                    .set_counts(Some(counts))
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
