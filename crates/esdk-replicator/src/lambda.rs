//! Lambda mode: a `KinesisEvent` from the event source mapping in, a `KinesisEventResponse` with
//! `batchItemFailures` out. Clients, configuration and the per-stream replicators are built
//! once at init; each invocation forwards one shard's batch through
//! [`LambdaReplicator`] and publishes its metrics.

use std::collections::HashMap;
use std::sync::Arc;

use aws_lambda_events::event::streams::{KinesisBatchItemFailure, KinesisEventResponse};
use esdk_kinesis::lambda::{LambdaReplicator, StreamArn};
use esdk_kinesis::{ControlTable, DeadLetterQueue, KinesisError, Replicator};
use lambda_runtime::tower::Layer;
use lambda_runtime::{LambdaEvent, LambdaInvocation, Service};
use tracing::Instrument;

use crate::config::LambdaConfig;
use crate::event::Batch;
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
    /// The warm-up started at init (see [`serve`]); the first invocation waits for it instead of
    /// reading the flag and listing the shards a second time.
    warming: tokio::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
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
            warming: tokio::sync::Mutex::default(),
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
    pub async fn handle(&self, event: &[u8]) -> Result<KinesisEventResponse, KinesisError> {
        let mut response = KinesisEventResponse::default();
        let Batch { event_source_arn, records } = crate::event::parse(event)?;
        if records.is_empty() {
            return Ok(response);
        }
        let arn = self.accept(&event_source_arn)?;
        let warming = self.warming.lock().await.take();
        if let Some(warm_up) = warming {
            // Its failure is logged where it happens; the invocation then does the work itself.
            let _ = warm_up.await;
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
    fn accept(&self, source: &str) -> Result<StreamArn, KinesisError> {
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

/// The body of the invocation in flight, taken by [`TakeBody`] before `lambda_runtime`'s generic
/// payload deserializer and handed to the handler, which parses it without copies
/// ([`crate::event::parse`]). `Runtime::run` serves one invocation at a time, so one slot is
/// enough; the request id guards against a mix-up.
#[derive(Clone, Default)]
struct Bodies(Arc<std::sync::Mutex<Option<(String, bytes::Bytes)>>>);

impl Bodies {
    fn take(&self, request_id: &str) -> Result<bytes::Bytes, KinesisError> {
        let mut slot = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match slot.take() {
            Some((id, body)) if id == request_id => Ok(body),
            _ => Err(KinesisError::Internal("the invocation's body was not kept for its handler")),
        }
    }
}

impl<S> Layer<S> for Bodies {
    type Service = TakeBody<S>;
    fn layer(&self, inner: S) -> TakeBody<S> {
        TakeBody { inner, bodies: self.clone() }
    }
}

/// See [`Bodies`]: replaces the body with `null` (what the handler's `()` payload reads).
struct TakeBody<S> {
    inner: S,
    bodies: Bodies,
}

impl<S: Service<LambdaInvocation>> Service<LambdaInvocation> for TakeBody<S> {
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut invocation: LambdaInvocation) -> S::Future {
        let body = std::mem::replace(&mut invocation.body, bytes::Bytes::from_static(b"null"));
        *self.bodies.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner) =
            Some((invocation.context.request_id.clone(), body));
        self.inner.call(invocation)
    }
}

/// Runs the function on the Lambda Runtime API until the environment is shut down.
pub async fn serve(config: LambdaConfig) -> Result<(), String> {
    let function = Arc::new(Function::init(config).await);
    function.check().map_err(|e| format!("the configuration does not build a replicator: {e}"))?;
    // With the stream known (ESDK_SOURCE_STREAM, which the template sets), the flag, the shard
    // list and the registration are read while the runtime waits for the first event: a cold
    // start then waits for PutRecords and the checkpoint only.
    if let Some(stream) = function.config.source_stream.clone() {
        let warming = function.clone();
        let task = tokio::spawn(async move {
            let warm = async { warming.for_stream(&stream).await?.0.warm_up().await };
            if let Err(e) = warm.await {
                tracing::warn!(error = %e, "warming up before the first event failed (the first invocation repeats it)");
            }
        });
        *function.warming.lock().await = Some(task);
    }
    let bodies = Bodies::default();
    let taken = bodies.clone();
    let handler = lambda_runtime::service_fn(move |event: LambdaEvent<()>| {
        let (function, bodies) = (function.clone(), taken.clone());
        async move {
            let result = match bodies.take(&event.context.request_id) {
                Ok(body) => function.handle(&body).await,
                Err(e) => Err(e),
            };
            result.map_err(|e| {
                tracing::error!(error = %e, retryable = e.is_retryable(), "invocation refused");
                let kind = if matches!(e, KinesisError::ForeignSource { .. }) { "Refused" } else { "Failed" };
                lambda_runtime::Diagnostic {
                    error_type: format!("esdk_replicator::{kind}"),
                    error_message: e.to_string(),
                }
            })
        }
    });
    lambda_runtime::Runtime::new(handler)
        .layer(bodies)
        .layer(lambda_runtime::layers::TracingLayer::new())
        .run()
        .await
        .map_err(|e| format!("Lambda runtime: {e}"))
}
