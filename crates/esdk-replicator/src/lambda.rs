//! Lambda mode: a `KinesisEvent` from the event source mapping in, a `KinesisEventResponse` with
//! `batchItemFailures` out. Clients, configuration and the per-stream replicators are built
//! once at init; each invocation forwards one shard's batch through
//! [`LambdaReplicator`] and publishes its metrics.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::SystemTime;

use aws_lambda_events::event::kinesis::{KinesisEvent, KinesisEventRecord};
use aws_lambda_events::event::streams::{KinesisBatchItemFailure, KinesisEventResponse};
use esdk_kinesis::lambda::{LambdaReplicator, StreamArn};
use esdk_kinesis::{ControlTable, DeadLetterQueue, KinesisError, Replicator, SourceRecord};
use tracing::Instrument;

use crate::config::LambdaConfig;
use crate::metrics::{BatchMetrics, Metrics};

/// What is built once per execution environment.
pub struct Function {
    config: LambdaConfig,
    source_kinesis: aws_sdk_kinesis::Client,
    destination_kinesis: aws_sdk_kinesis::Client,
    source_table: ControlTable,
    destination_table: ControlTable,
    dead_letters: Option<DeadLetterQueue>,
    cloudwatch: aws_sdk_cloudwatch::Client,
    /// One replicator per source stream (an event source mapping serves one stream; a function
    /// behind several mappings gets one each).
    streams: tokio::sync::Mutex<HashMap<String, Arc<(LambdaReplicator, Metrics)>>>,
}

impl Function {
    /// Builds the clients (from the standard AWS environment, one per Region).
    pub async fn init(config: LambdaConfig) -> Self {
        let (src, dst) = crate::sdk_configs(&config.source_region, &config.destination_region).await;
        let dead_letters = match config.dead_letter_queue_url.as_deref() {
            Some(url) => Some(crate::dead_letter_queue(url, &src).await),
            None => None,
        };
        Self {
            source_kinesis: aws_sdk_kinesis::Client::new(&src),
            destination_kinesis: aws_sdk_kinesis::Client::new(&dst),
            source_table: ControlTable::new(aws_sdk_dynamodb::Client::new(&src), &config.control_table),
            destination_table: ControlTable::new(aws_sdk_dynamodb::Client::new(&dst), &config.control_table),
            dead_letters,
            cloudwatch: aws_sdk_cloudwatch::Client::new(&dst),
            config,
            streams: tokio::sync::Mutex::default(),
        }
    }

    /// Checks that the configuration builds a replicator (bad allow-list entries fail the init,
    /// not the first invocation).
    pub fn check(&self) -> Result<(), KinesisError> {
        self.replicator("init-check").map(drop)
    }

    fn replicator(&self, stream: &str) -> Result<Replicator, KinesisError> {
        let mut b = Replicator::builder(&self.config.source_region, stream)
            .destination(self.destination_kinesis.clone(), self.config.destination_stream.as_deref())
            .flag_table(self.source_table.clone())
            .checkpoint_table(self.destination_table.clone())
            .flag_ttl(self.config.flag_ttl);
        if let Some(q) = &self.dead_letters {
            b = b.dead_letter_queue(q.clone());
        }
        if !self.config.allowed_keys.is_empty() {
            b = b.allowed_keys(&self.config.allowed_keys)?;
        }
        b.build()
    }

    async fn for_stream(&self, stream: &str) -> Result<Arc<(LambdaReplicator, Metrics)>, KinesisError> {
        let mut streams = self.streams.lock().await;
        if let Some(s) = streams.get(stream) {
            return Ok(s.clone());
        }
        let replicator = self.replicator(stream)?;
        let metrics = Metrics::new(
            &self.config.metrics_namespace,
            stream,
            &self.config.source_region,
            &self.config.destination_region,
            Some(self.cloudwatch.clone()),
        )
        .flush_interval(self.config.metrics_interval);
        let entry = Arc::new((LambdaReplicator::new(replicator, self.source_kinesis.clone()), metrics));
        streams.insert(stream.to_owned(), entry.clone());
        Ok(entry)
    }

    /// One invocation. An event from another Region or stream than configured is refused as a
    /// whole (an error: Lambda retries it and, past the mapping's limits, sends it to the
    /// on-failure destination); nothing of it is forwarded.
    pub async fn handle(&self, event: KinesisEvent) -> Result<KinesisEventResponse, KinesisError> {
        let mut response = KinesisEventResponse::default();
        let Some(first) = event.records.first() else { return Ok(response) };
        let arn = self.accept(first)?;
        let source_arn = first.event_source_arn.clone().unwrap_or_default();
        let mut records = Vec::with_capacity(event.records.len());
        for r in event.records {
            if r.event_source_arn.as_deref() != Some(source_arn.as_str()) {
                return Err(KinesisError::ForeignSource {
                    event_source_arn: r.event_source_arn.unwrap_or_default(),
                    expected: format!("one stream per event ({source_arn})"),
                });
            }
            records.push(source_record(r)?);
        }
        let span = tracing::info_span!("invocation", stream = %arn.stream, records = records.len());
        let entry = self.for_stream(&arn.stream).instrument(span.clone()).await?;
        let (replicator, metrics) = (&entry.0, &entry.1);
        let batch = replicator.handle(&records).instrument(span.clone()).await;
        let values = match &batch.outcome {
            Some(o) => BatchMetrics::of(o),
            None => BatchMetrics::failed_batch(records.len()),
        };
        if let Some(e) = &batch.error {
            tracing::warn!(parent: &span, error = %e, retryable = e.is_retryable(), "batch failed as a whole; Lambda retries it");
        }
        metrics.publish(&values).instrument(span).await;
        for seq in batch.failures {
            let mut f = KinesisBatchItemFailure::default();
            f.item_identifier = Some(seq);
            response.batch_item_failures.push(f);
        }
        Ok(response)
    }

    /// The stream of an event record, if this function serves it.
    fn accept(&self, r: &KinesisEventRecord) -> Result<StreamArn, KinesisError> {
        let source = r.event_source_arn.as_deref().unwrap_or_default();
        let arn = StreamArn::parse(source)?;
        let foreign = |expected: String| KinesisError::ForeignSource { event_source_arn: source.to_owned(), expected };
        if arn.region != self.config.source_region {
            return Err(foreign(format!("a stream in {} (AWS_REGION)", self.config.source_region)));
        }
        if let Some(only) = &self.config.source_stream {
            if &arn.stream != only {
                return Err(foreign(format!("stream {only} (ESDK_SOURCE_STREAM)")));
            }
        }
        Ok(arn)
    }
}

/// An event record as the replicator core takes it. The shard is the `eventID` prefix
/// (`shardId-…:<sequence number>`).
fn source_record(r: KinesisEventRecord) -> Result<SourceRecord, KinesisError> {
    let shard = r
        .event_id
        .as_deref()
        .and_then(|id| id.split_once(':'))
        .map(|(shard, _)| shard.to_owned())
        .filter(|s| s.starts_with("shardId-"))
        .ok_or_else(|| KinesisError::InvalidEvent(format!("eventID {:?} does not name a shard", r.event_id)))?;
    let k = r.kinesis;
    let arrival = SystemTime::from(*k.approximate_arrival_timestamp);
    Ok(SourceRecord::new(&shard, &k.sequence_number, &k.partition_key, bytes::Bytes::from(k.data.0), Some(arrival)))
}

/// Runs the function on the Lambda Runtime API until the environment is shut down.
pub async fn serve(config: LambdaConfig) -> Result<(), String> {
    let function = Arc::new(Function::init(config).await);
    function.check().map_err(|e| format!("the configuration does not build a replicator: {e}"))?;
    lambda_runtime::run(lambda_runtime::service_fn(move |event: lambda_runtime::LambdaEvent<KinesisEvent>| {
        let function = function.clone();
        async move {
            function.handle(event.payload).await.map_err(|e| {
                tracing::error!(error = %e, retryable = e.is_retryable(), "invocation refused");
                let kind = if matches!(e, KinesisError::ForeignSource { .. }) { "Refused" } else { "Failed" };
                lambda_runtime::Diagnostic {
                    error_type: format!("esdk_replicator::{kind}"),
                    error_message: e.to_string(),
                }
            })
        }
    }))
    .await
    .map_err(|e| format!("Lambda runtime: {e}"))
}
