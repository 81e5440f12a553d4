//! Chaos: the whole pipeline on the local endpoint with faults injected at random points, and
//! after each scenario every record in both Regions, per key in order, none delivered twice.
//!
//! Records per scenario: `CHAOS_RECORDS` (default 2,000, what CI runs; `scripts/chaos` runs
//! 20,000). Fault probability: `CHAOS_FAULTS` (default 0.1). Every scenario prints one line
//! `chaos <name>: <n> records, lost 0, duplicated 0, out of order 0, ...`.

use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use esdk_testkit::aws::Endpoint;
use esdk_testkit::pipeline::{
    changes, consume_until, pipeline, produce_all, replicator, unique, Change, Delivered, Side, Verdict,
};

fn records() -> usize {
    std::env::var("CHAOS_RECORDS").ok().and_then(|v| v.parse().ok()).unwrap_or(2_000)
}

fn faults() -> f64 {
    std::env::var("CHAOS_FAULTS").ok().and_then(|v| v.parse().ok()).unwrap_or(0.1)
}

fn deadline() -> Instant {
    Instant::now() + Duration::from_secs(60 + records() as u64 / 20)
}

/// Both consumers (each in its Region's group) until they delivered every change; prints and
/// returns the verdicts.
async fn verify(name: &str, sides: [&Side; 2], stream: &str, all: &[Change]) -> Vec<Verdict> {
    let mut verdicts = Vec::new();
    for side in sides {
        let mut delivered = Delivered::default();
        let consumer = side.consumer(stream, Some("chaos"));
        consume_until(&consumer, side.kinesis.clone(), &mut delivered, all.len(), deadline()).await;
        let v = delivered.check(all);
        println!(
            "chaos {name} ({}): {} records, lost {}, duplicated {}, out of order {}, unknown {}; {} duplicates recognised and dropped",
            side.region,
            all.len(),
            v.lost,
            v.duplicated,
            v.out_of_order,
            v.unknown,
            delivered.duplicates_dropped
        );
        verdicts.push(v);
    }
    verdicts
}

/// The `esdk-replicator` program, replicating `from` → `to` on the local endpoint.
fn spawn_replicator(env: &Endpoint, stream: &str, from: &str, to: &str, table: &str) -> Child {
    env.command(env!("CARGO_BIN_EXE_esdk-replicator"))
        .args(["run", "--stream", stream, "--from", from, "--to", to, "--control-table", table])
        .args(["--poll-interval", "5ms", "--idle-interval", "20ms", "--lease-ttl", "3s"])
        .env("RUST_LOG", "error")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start esdk-replicator")
}

/// Runs the library's polling loop in this process until `stop`.
fn run_replicator(from: &Side, to: &Side, stream: &str, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<()> {
    let rep = replicator(from, to, stream).build().unwrap();
    let source = from.kinesis.clone();
    tokio::spawn(async move {
        rep.run(source, &stop, |_| {}).await.expect("the replicator stops only when told to");
    })
}

fn split_records(all: &[Change], parts: usize) -> Vec<&[Change]> {
    let per = all.len().div_ceil(parts);
    all.chunks(per).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs the local AWS endpoint: run scripts/test or scripts/chaos"]
async fn chaos_faults_on_every_api_in_both_regions() {
    let env = Endpoint::from_env();
    let (ra, rb) = ("eu-west-1", "eu-north-1");
    let (stream, table) = (unique("chaos-all"), unique("ctl"));
    let (a, b) = pipeline(&env, ra, rb, &stream, &table, 4).await;
    let all = changes(records(), records() / 10);
    env.inject_chaos(ra, faults(), 1).await;
    env.inject_chaos(rb, faults(), 2).await;
    let stop = Arc::new(AtomicBool::new(false));
    let rep = run_replicator(&a, &b, &stream, stop.clone());
    produce_all(&a.producer(&stream), &all, deadline()).await;
    let verdicts = verify("faults-everywhere", [&a, &b], &stream, &all).await;
    stop.store(true, Ordering::Relaxed);
    rep.await.unwrap();
    env.clear_faults_in(ra).await;
    env.clear_faults_in(rb).await;
    assert!(verdicts.iter().all(|v| *v == Verdict::CLEAN), "{verdicts:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs the local AWS endpoint: run scripts/test or scripts/chaos"]
async fn chaos_split_and_merge_while_records_flow() {
    let env = Endpoint::from_env();
    let (ra, rb) = ("ap-east-1", "ap-southeast-5");
    let (stream, table) = (unique("chaos-reshard"), unique("ctl"));
    let (a, b) = pipeline(&env, ra, rb, &stream, &table, 2).await;
    let all = changes(records(), records() / 20);
    env.inject_chaos(ra, faults() / 2.0, 3).await;
    let stop = Arc::new(AtomicBool::new(false));
    let rep = run_replicator(&a, &b, &stream, stop.clone());
    let parts = split_records(&all, 3);
    let producer = a.producer(&stream);
    produce_all(&producer, parts[0], deadline()).await;
    reshard(&a, &stream, Reshard::Split).await;
    produce_all(&producer, parts[1], deadline()).await;
    reshard(&a, &stream, Reshard::Merge).await;
    produce_all(&producer, parts[2], deadline()).await;
    let verdicts = verify("split-and-merge", [&a, &b], &stream, &all).await;
    stop.store(true, Ordering::Relaxed);
    rep.await.unwrap();
    env.clear_faults_in(ra).await;
    assert!(verdicts.iter().all(|v| *v == Verdict::CLEAN), "{verdicts:?}");
}

enum Reshard {
    Split,
    Merge,
}

/// Splits the first open shard in two, or merges the first two adjacent open shards (retrying
/// through injected faults).
async fn reshard(side: &Side, stream: &str, how: Reshard) {
    let until = deadline();
    loop {
        assert!(Instant::now() < until, "could not reshard");
        let Ok(listed) = side.kinesis.list_shards().stream_name(stream).send().await else { continue };
        let mut open: Vec<(u128, u128, String)> = listed
            .shards()
            .iter()
            .filter(|s| s.sequence_number_range().and_then(|r| r.ending_sequence_number()).is_none())
            .map(|s| {
                let r = s.hash_key_range().unwrap();
                (r.starting_hash_key().parse().unwrap(), r.ending_hash_key().parse().unwrap(), s.shard_id().to_owned())
            })
            .collect();
        open.sort();
        let done = match how {
            Reshard::Split => {
                let (lo, hi, id) = &open[0];
                let mid = lo + (hi - lo) / 2;
                side.kinesis
                    .split_shard()
                    .stream_name(stream)
                    .shard_to_split(id)
                    .new_starting_hash_key(mid.to_string())
                    .send()
                    .await
                    .is_ok()
            }
            Reshard::Merge => side
                .kinesis
                .merge_shards()
                .stream_name(stream)
                .shard_to_merge(&open[0].2)
                .adjacent_shard_to_merge(&open[1].2)
                .send()
                .await
                .is_ok(),
        };
        if done {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs the local AWS endpoint: run scripts/test or scripts/chaos"]
async fn chaos_replicator_process_killed_and_restarted_mid_batch() {
    let env = Endpoint::from_env();
    let (ra, rb) = ("ap-southeast-6", "ap-southeast-7");
    let (stream, table) = (unique("chaos-kill"), unique("ctl"));
    let (a, b) = pipeline(&env, ra, rb, &stream, &table, 3).await;
    let all = changes(records(), records() / 10);
    env.inject_chaos(rb, faults() / 2.0, 4).await;
    let producer = tokio::spawn({
        let (p, all, until) = (a.producer(&stream), all.clone(), deadline());
        async move { produce_all(&p, &all, until).await }
    });
    // Kill -9 the replicator at random points (every 0.2–1.2 s), several times, then let it run.
    let mut kills = 0;
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    while kills < 6 {
        let mut child = spawn_replicator(&env, &stream, ra, rb, &table);
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        tokio::time::sleep(Duration::from_millis(200 + rng % 1000)).await;
        child.kill().unwrap();
        child.wait().unwrap();
        kills += 1;
    }
    let mut last = spawn_replicator(&env, &stream, ra, rb, &table);
    producer.await.unwrap();
    let verdicts = verify("killed-and-restarted", [&a, &b], &stream, &all).await;
    last.kill().unwrap();
    last.wait().unwrap();
    env.clear_faults_in(rb).await;
    println!("chaos killed-and-restarted: {kills} kills");
    assert!(verdicts.iter().all(|v| *v == Verdict::CLEAN), "{verdicts:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs the local AWS endpoint: run scripts/test or scripts/chaos"]
async fn chaos_two_replicators_at_once() {
    let env = Endpoint::from_env();
    let (ra, rb) = ("ap-south-1", "eu-south-2");
    let (stream, table) = (unique("chaos-two"), unique("ctl"));
    let (a, b) = pipeline(&env, ra, rb, &stream, &table, 2).await;
    let all = changes(records(), records() / 10);
    env.inject_chaos(ra, faults(), 5).await;
    // The program (which takes the lease) and the library's loop (which has none) write at
    // once, as two owners do for a moment when a lease changes hands.
    let mut one = spawn_replicator(&env, &stream, ra, rb, &table);
    let stop = Arc::new(AtomicBool::new(false));
    let two = run_replicator(&a, &b, &stream, stop.clone());
    produce_all(&a.producer(&stream), &all, deadline()).await;
    let verdicts = verify("two-replicators", [&a, &b], &stream, &all).await;
    one.kill().unwrap();
    one.wait().unwrap();
    stop.store(true, Ordering::Relaxed);
    two.await.unwrap();
    env.clear_faults_in(ra).await;
    assert!(verdicts.iter().all(|v| *v == Verdict::CLEAN), "{verdicts:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs the local AWS endpoint: run scripts/test or scripts/chaos"]
async fn chaos_failover_and_failback() {
    let env = Endpoint::from_env();
    let (ra, rb) = ("us-west-1", "ca-central-1");
    let (stream, table) = (unique("chaos-failover"), unique("ctl"));
    let (a, b) = pipeline(&env, ra, rb, &stream, &table, 2).await;
    let all = changes(records(), records() / 10);
    let parts = split_records(&all, 3);
    env.inject_chaos(ra, faults(), 6).await;
    env.inject_chaos(rb, faults(), 7).await;
    let stop_ab = Arc::new(AtomicBool::new(false));
    let stop_ba = Arc::new(AtomicBool::new(false));
    let rep_ab = run_replicator(&a, &b, &stream, stop_ab.clone());
    let rep_ba = run_replicator(&b, &a, &stream, stop_ba.clone());
    let margin = Duration::from_secs(1);

    // A produces; A's side goes down mid-flight (its replicator stops), so what was not yet
    // replicated reaches B only through B's replay from the resume point.
    produce_all(&a.producer(&stream), parts[0], deadline()).await;
    stop_ab.store(true, Ordering::Relaxed);
    rep_ab.await.unwrap();
    let replay_b = fail_over(&a, &b, &stream, parts[0], margin).await;
    produce_all(&b.producer(&stream), &replay_b, deadline()).await;
    produce_all(&b.producer(&stream), parts[1], deadline()).await;
    // Fail back to A the same way: B's replicator stops, A replays from B's resume point.
    let produced_in_b: Vec<Change> = replay_b.iter().chain(parts[1]).cloned().collect();
    stop_ba.store(true, Ordering::Relaxed);
    rep_ba.await.unwrap();
    let replay_a = fail_over(&b, &a, &stream, &produced_in_b, margin).await;
    // Both replicators run again (the Regions recovered), then A produces the rest.
    let stop = Arc::new(AtomicBool::new(false));
    let reps = [run_replicator(&a, &b, &stream, stop.clone()), run_replicator(&b, &a, &stream, stop.clone())];
    produce_all(&a.producer(&stream), &replay_a, deadline()).await;
    produce_all(&a.producer(&stream), parts[2], deadline()).await;
    let verdicts = verify("failover-and-failback", [&a, &b], &stream, &all).await;
    stop.store(true, Ordering::Relaxed);
    for r in reps {
        r.await.unwrap();
    }
    env.clear_faults_in(ra).await;
    env.clear_faults_in(rb).await;
    println!("chaos failover-and-failback: replayed {} in B, {} in A", replay_b.len(), replay_a.len());
    assert!(verdicts.iter().all(|v| *v == Verdict::CLEAN), "{verdicts:?}");
}

/// Flips the flag from `from` to `to` in both tables (fenced, retried through faults) and
/// returns the changes produced in `from` that `to` must replay: those committed at or after
/// the resume point of the replication `from` → `to`.
async fn fail_over(from: &Side, to: &Side, stream: &str, produced: &[Change], margin: Duration) -> Vec<Change> {
    let until = deadline();
    for side in [to, from] {
        loop {
            assert!(Instant::now() < until, "failover did not complete");
            let Ok(flag) = side.control.active_region(stream).await else { continue };
            if flag.region == to.region || side.control.set_active_region(stream, &to.region, flag.epoch).await.is_ok()
            {
                break;
            }
        }
    }
    let resume = loop {
        assert!(Instant::now() < until, "no resume point");
        if let Ok(r) = to.control.resume_point(stream, &from.region, margin).await {
            break r;
        }
    };
    produced.iter().filter(|c| resume.from.is_none_or(|t| c.commit_time >= t)).cloned().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs the local AWS endpoint: run scripts/test or scripts/chaos"]
async fn chaos_aggregated_records_with_faults_a_split_and_a_killed_replicator() {
    let env = Endpoint::from_env();
    let (ra, rb) = ("eu-central-2", "ap-northeast-3");
    let (stream, table) = (unique("chaos-agg"), unique("ctl"));
    let (a, b) = pipeline(&env, ra, rb, &stream, &table, 2).await;
    let all = changes(records(), records() / 10);
    env.inject_chaos(ra, faults(), 8).await;
    env.inject_chaos(rb, faults(), 9).await;
    let parts = split_records(&all, 2);
    let producer = a.aggregating_producer(&stream);
    let mut child = spawn_replicator(&env, &stream, ra, rb, &table);
    produce_all(&producer, parts[0], deadline()).await;
    reshard(&a, &stream, Reshard::Split).await;
    child.kill().unwrap();
    child.wait().unwrap();
    let mut child = spawn_replicator(&env, &stream, ra, rb, &table);
    produce_all(&producer, parts[1], deadline()).await;
    let verdicts = verify("aggregated", [&a, &b], &stream, &all).await;
    child.kill().unwrap();
    child.wait().unwrap();
    env.clear_faults_in(ra).await;
    env.clear_faults_in(rb).await;
    assert!(verdicts.iter().all(|v| *v == Verdict::CLEAN), "{verdicts:?}");
}
