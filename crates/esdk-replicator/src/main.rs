//! `esdk-replicator`: copies the records of a Kinesis stream in one Region to the same stream in
//! another, byte for byte, without any key (it reads only public header fields).
#![forbid(unsafe_code)]

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use esdk_kinesis::{ControlTable, DeadLetterQueue, ReaderConfig, Replicator};

#[derive(Parser)]
#[command(
    name = "esdk-replicator",
    version,
    about = "Crypto-blind cross-Region replicator for Kinesis streams of AWS Encryption SDK records",
    long_about = "Copies every record of a Kinesis stream in the source Region to the stream of the same \
name in the destination Region, unchanged and in order per partition key, while the DynamoDB control \
table names the source Region as active. It needs no KMS permission: it reads only the public header \
fields of each record (origin Region, commit time, the key ARNs of the encrypted data keys), never \
forwards a record back to its origin Region, and checkpoints each shard in the destination Region's \
control table after the records are in the destination stream."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Poll the source stream and replicate until interrupted (Ctrl-C / SIGTERM).
    Run(RunArgs),
}

#[derive(Args)]
struct RunArgs {
    /// Stream name (the same in both Regions).
    #[arg(long)]
    stream: String,
    /// Source Region (where the stream is read).
    #[arg(long = "from", value_name = "REGION")]
    from: String,
    /// Destination Region (where records are written).
    #[arg(long = "to", value_name = "REGION")]
    to: String,
    /// DynamoDB control table (active Region, checkpoints), present in both Regions.
    #[arg(long = "control-table", value_name = "TABLE")]
    control_table: String,
    /// Only forward records whose every KMS data key is wrapped under one of these key ARNs
    /// (multi-Region replicas match each other). Repeatable.
    #[arg(long = "allowed-key", value_name = "ARN")]
    allowed_keys: Vec<String>,
    /// SQS queue for records that must not be forwarded (without one, a refused record stops
    /// its shard until it is allowed or a queue is configured).
    #[arg(long = "dead-letter-queue-url", value_name = "URL")]
    dead_letter_queue_url: Option<String>,
    /// Least time between two reads of one shard (Kinesis allows 5 per second per shard, shared
    /// by every consumer of the stream).
    #[arg(long, default_value = "200ms", value_parser = humantime::parse_duration)]
    poll_interval: Duration,
    /// Wait after a read that found nothing new.
    #[arg(long, default_value = "500ms", value_parser = humantime::parse_duration)]
    idle_interval: Duration,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt().with_writer(std::io::stderr).with_target(false).init();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("esdk-replicator: error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let Command::Run(args) = cli.command;
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("esdk-replicator: error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn sdk_config(region: &str) -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new(region.to_owned()))
        .load()
        .await
}

async fn run(args: RunArgs) -> Result<(), String> {
    let (src, dst) = (sdk_config(&args.from).await, sdk_config(&args.to).await);
    let mut builder = Replicator::builder(&args.from, &args.stream)
        .destination(aws_sdk_kinesis::Client::new(&dst), None)
        .checkpoint_table(ControlTable::new(aws_sdk_dynamodb::Client::new(&dst), &args.control_table))
        .reader_config(ReaderConfig::default().intervals(args.poll_interval, args.idle_interval));
    if let Some(url) = &args.dead_letter_queue_url {
        builder = builder.dead_letter_queue(DeadLetterQueue::new(aws_sdk_sqs::Client::new(&dst), url));
    }
    if !args.allowed_keys.is_empty() {
        builder = builder.allowed_keys(&args.allowed_keys).map_err(|e| format!("--allowed-key: {e}"))?;
    }
    let replicator = builder.build().map_err(|e| e.to_string())?;
    let shutdown = Arc::new(AtomicBool::new(false));
    let flag = shutdown.clone();
    tokio::spawn(async move {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(t) => t,
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                return;
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        tracing::info!("stopping: finishing the batch in flight and its checkpoints");
        flag.store(true, Ordering::Relaxed);
    });
    tracing::info!(stream = %args.stream, from = %args.from, to = %args.to, "replicating");
    replicator
        .run(aws_sdk_kinesis::Client::new(&src), &shutdown, |o| {
            tracing::info!(replicated = o.replicated, refused = o.refused.len(), "batch");
        })
        .await
        .map_err(|e| e.to_string())
}
