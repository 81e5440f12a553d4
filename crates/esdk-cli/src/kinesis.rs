//! `esdk kinesis init|failover|status`: the operator's commands over the replication control
//! tables of every Region (see `esdk_kinesis::ops` and docs/RUNBOOK.md). AWS credentials and
//! endpoints come from the standard environment; each Region gets its own client.

use std::time::{Duration, SystemTime};

use clap::{Args, Subcommand};
use esdk_kinesis::ops::{self, RegionTable};
use esdk_kinesis::{ControlTable, KinesisError};
use serde_json::{json, Value};

use crate::Failure;

#[derive(Subcommand)]
pub(crate) enum KinesisCommand {
    /// Create what is missing in every Region: the control table and the active-Region flag.
    Init(InitArgs),
    /// Make another Region the active one (fenced) and print where its producers resume.
    Failover(FailoverArgs),
    /// Print, as JSON, the flag, checkpoints, watermarks, lag and lease owner in every Region.
    Status(StatusArgs),
}

#[derive(Args)]
pub(crate) struct Target {
    /// Stream name (the same in every Region).
    #[arg(long)]
    stream: String,
    /// Control table name (the same in every Region).
    #[arg(long)]
    table: String,
    /// Every Region of the pipeline, comma-separated.
    #[arg(long, value_delimiter = ',', required = true, value_name = "R1,R2")]
    regions: Vec<String>,
}

#[derive(Args)]
pub(crate) struct InitArgs {
    #[command(flatten)]
    target: Target,
    /// The Region whose producers write first.
    #[arg(long, value_name = "REGION")]
    active: String,
}

#[derive(Args)]
pub(crate) struct FailoverArgs {
    #[command(flatten)]
    target: Target,
    /// The Region taking over.
    #[arg(long, value_name = "REGION")]
    to: String,
    /// How far before the smallest watermark producers replay (the commit-time disorder
    /// allowed between producers).
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    margin: Duration,
    /// Print the resume point and what would change; change nothing.
    #[arg(long)]
    dry_run: bool,
}

#[derive(Args)]
pub(crate) struct StatusArgs {
    #[command(flatten)]
    target: Target,
    /// The failover margin used for each `resume_from`.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    margin: Duration,
}

pub(crate) fn run(command: KinesisCommand) -> Result<(), Failure> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start an async runtime: {e}"))?;
    rt.block_on(async {
        match command {
            KinesisCommand::Init(a) => init(a).await,
            KinesisCommand::Failover(a) => failover(a).await,
            KinesisCommand::Status(a) => status(a).await,
        }
    })
}

async fn tables(t: &Target) -> Vec<RegionTable> {
    let mut out = Vec::with_capacity(t.regions.len());
    for region in &t.regions {
        let cfg = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new(region.clone()))
            .load()
            .await;
        out.push(RegionTable::new(region, ControlTable::new(aws_sdk_dynamodb::Client::new(&cfg), &t.table)));
    }
    out
}

fn kinesis_failure(e: KinesisError, hint: &str) -> Failure {
    let retry = if e.is_retryable() { " (retrying can help)" } else { "" };
    Failure { message: format!("{e}{retry}"), hint: Some(hint.to_owned()) }
}

fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

async fn init(a: InitArgs) -> Result<(), Failure> {
    let regions = tables(&a.target).await;
    let done = ops::init(&regions, &a.target.stream, &a.active)
        .await
        .map_err(|e| kinesis_failure(e, "check credentials and the Region list; init is safe to run again"))?;
    for r in done {
        let table = if r.created_table { "created control table" } else { "control table exists:" };
        let flag = if r.created_flag {
            format!("created the active-Region flag: {} at epoch {}", r.active.region, r.active.epoch)
        } else if r.active.region == a.active {
            format!("the active-Region flag exists: {} at epoch {}", r.active.region, r.active.epoch)
        } else {
            format!(
                "the active-Region flag exists and names {} at epoch {} (left as it is; use `esdk kinesis failover` to change it)",
                r.active.region, r.active.epoch
            )
        };
        println!("{}: {table} {}; {flag}", r.region, a.target.table);
    }
    Ok(())
}

async fn failover(a: FailoverArgs) -> Result<(), Failure> {
    let regions = tables(&a.target).await;
    let done = ops::fail_over(&regions, &a.target.stream, &a.to, a.margin, a.dry_run).await.map_err(|e| {
        let hint = match &e {
            KinesisError::FlagConflict { .. } => {
                "someone else changed the flag: run `esdk kinesis status`, then decide again"
            }
            KinesisError::FlagMissing { .. } => "run `esdk kinesis init` first",
            _ => "nothing was changed in the Regions not yet flipped; failover is safe to run again",
        };
        kinesis_failure(e, hint)
    })?;
    for r in &done.regions {
        match (&r.before, &r.after) {
            (Err(e), _) => eprintln!(
                "esdk: warning: {}: unreachable, its flag was not changed ({e}); run this failover again once it is back",
                r.region
            ),
            (Ok(b), Some(after)) if b.region == done.to => {
                println!("{}: already {} at epoch {}", r.region, after.region, after.epoch)
            }
            (Ok(b), Some(after)) => println!(
                "{}: {} (epoch {}) -> {} (epoch {}), read back",
                r.region, b.region, b.epoch, after.region, after.epoch
            ),
            (Ok(b), None) => println!(
                "{}: {} at epoch {}; would become {} (dry run)",
                r.region, b.region, b.epoch, done.to
            ),
        }
    }
    for (source, shards) in &done.shards {
        let open = shards.iter().filter(|s| !s.finished).count();
        println!("replication {source} -> {}: {} shard(s), {open} not finished", done.to, shards.len());
    }
    let from = match done.resume_from {
        Some(t) => t,
        None => {
            println!(
                "some shard has no watermark (never replicated, or the table was reset): producers in {} replay from the beginning of what they hold",
                done.to
            );
            SystemTime::UNIX_EPOCH
        }
    };
    println!("resume-from={}", rfc3339(from));
    Ok(())
}

async fn status(a: StatusArgs) -> Result<(), Failure> {
    let regions = tables(&a.target).await;
    let report = ops::status(&regions, &a.target.stream, a.margin)
        .await
        .map_err(|e| kinesis_failure(e, "check the Region list"))?;
    let now = SystemTime::now();
    let flags: Vec<(&str, u64)> =
        report.iter().filter_map(|r| r.active.as_ref().ok()).map(|f| (f.region.as_str(), f.epoch)).collect();
    let consistent = !flags.is_empty() && flags.windows(2).all(|w| w[0] == w[1]);
    let regions: Vec<Value> = report
        .iter()
        .map(|r| {
            let sources: Vec<Value> = r
                .sources
                .iter()
                .map(|s| match s {
                    Err(e) => json!({ "error": e.to_string() }),
                    Ok(s) => json!({
                        "source_region": s.source_region,
                        "lease": s.lease.as_ref().map(|l| json!({
                            "owner": l.owner,
                            "expires_at": rfc3339(l.expires_at),
                            "expired": l.expires_at < now,
                        })),
                        "resume_from": s.resume_from.map(rfc3339),
                        "shards": s.shards.iter().map(|p| json!({
                            "shard_id": p.shard_id,
                            "parents": p.parents,
                            "sequence_number": p.sequence_number,
                            "watermark": p.watermark.map(rfc3339),
                            "finished": p.finished,
                            // Records committed before the watermark are all replicated: now
                            // minus it bounds the lag from above.
                            "lag_seconds": (!p.finished).then(|| p.watermark.map(|w| now.duration_since(w).unwrap_or_default().as_secs_f64())).flatten(),
                        })).collect::<Vec<_>>(),
                    }),
                })
                .collect();
            match &r.active {
                Ok(f) => json!({
                    "region": r.region,
                    "reachable": true,
                    "active": { "region": f.region, "epoch": f.epoch },
                    "replication_into": sources,
                }),
                Err(e) => json!({
                    "region": r.region,
                    "reachable": !matches!(e, KinesisError::DynamoDb { .. }),
                    "active": Value::Null,
                    "error": e.to_string(),
                    "replication_into": sources,
                }),
            }
        })
        .collect();
    let doc = json!({
        "stream": a.target.stream,
        "table": a.target.table,
        "consistent": consistent && flags.len() == report.len(),
        "regions": regions,
    });
    println!("{}", serde_json::to_string_pretty(&doc).map_err(|e| e.to_string())?);
    Ok(())
}
