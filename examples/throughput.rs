//! Whole-process throughput benchmark.
//!
//! ```text
//! cargo run --release --example throughput -- --op encrypt|decrypt|floor-encrypt|floor-decrypt|aes-gcm \
//!     --suite 0x0478|0x0578 --size BYTES --seconds S [--threads T] [--cache] [--repeats R]
//!     [--workers W] [--frame-length F] [--aggregate N [--batch B]]
//! ```
//! Encrypts with `Client::encrypt_into` and decrypts with `Client::decrypt_into`, each into one
//! reused buffer. Uses a raw AES-256 keyring (behind a caching materials manager with `--cache`). `--threads T`
//! lets each message use T threads for its frames (parallel frames; default 1), `--workers W`
//! runs W independent workers (default 1). Frames: one per message up to 1 MiB when T = 1, 64 KiB
//! frames when T > 1 (so a message has frames to share out); `--frame-length` overrides. `floor-*` runs the same AWS-LC primitives without the message format
//! (see `benches/floor.rs`) and `aes-gcm` bare AES-256-GCM over the same size, for ratios
//! measured in the same run. Runs R repeats of S/R seconds
//! and prints, as its last line,
//! `op=… suite=… size=… threads=… workers=… frame_length=… cache=… ns_per_msg=… mb_per_s=…`
//! (medians over the repeats).
//!
//! `--aggregate N`: each message is a KPL aggregate of N user records of `--size` bytes (as the
//! Kinesis layer's aggregating producer writes them): `encrypt` builds the aggregate and
//! encrypts it, `decrypt` decrypts and splits it, `aes-gcm` seals the same aggregate bytes; the
//! last line adds `records_per_s=…`. `--batch B` (default 16): aggregates are sealed and split B
//! at a time, as the aggregating producer seals one per bucket of a `put` and a consumer splits
//! the aggregates of one `GetRecords` answer (their MD5s are computed side by side).

#[path = "../benches/floor.rs"]
#[allow(dead_code)]
mod floor;

use std::sync::Arc;
use std::time::{Duration, Instant};

use esdk::{
    AlgorithmSuite, CachingCmm, Client, DefaultCmm, EncryptionContext, LocalCache, MaterialsManager, RawAesKeyring,
};

struct Opts {
    op: String,
    suite: AlgorithmSuite,
    size: usize,
    seconds: f64,
    threads: usize,
    workers: usize,
    frame_length: Option<u32>,
    linger_us: Option<u64>,
    cache: bool,
    repeats: usize,
    aggregate: Option<usize>,
    batch: usize,
}

fn parse() -> Result<Opts, String> {
    let mut o = Opts {
        op: "encrypt".into(),
        suite: AlgorithmSuite::Aes256GcmHkdfSha512CommitKey,
        size: 1024,
        seconds: 5.0,
        threads: 1,
        workers: 1,
        frame_length: None,
        linger_us: None,
        cache: false,
        repeats: 5,
        aggregate: None,
        batch: 16,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || args.next().ok_or(format!("{a} needs a value"));
        match a.as_str() {
            "--op" => o.op = val()?,
            "--suite" => {
                let v = val()?;
                let id = u16::from_str_radix(v.trim_start_matches("0x"), 16).map_err(|e| e.to_string())?;
                o.suite = AlgorithmSuite::from_id(id).ok_or(format!("unknown suite {v}"))?;
            }
            "--size" => o.size = val()?.parse().map_err(|e| format!("--size: {e}"))?,
            "--seconds" => o.seconds = val()?.parse().map_err(|e| format!("--seconds: {e}"))?,
            "--threads" => o.threads = val()?.parse().map_err(|e| format!("--threads: {e}"))?,
            "--workers" => o.workers = val()?.parse().map_err(|e| format!("--workers: {e}"))?,
            "--linger-us" => o.linger_us = Some(val()?.parse().map_err(|e| format!("--linger-us: {e}"))?),
            "--frame-length" => o.frame_length = Some(val()?.parse().map_err(|e| format!("--frame-length: {e}"))?),
            "--repeats" => o.repeats = val()?.parse().map_err(|e| format!("--repeats: {e}"))?,
            "--cache" => o.cache = true,
            "--batch" => o.batch = val()?.parse().map_err(|e| format!("--batch: {e}"))?,
            "--aggregate" => o.aggregate = Some(val()?.parse().map_err(|e| format!("--aggregate: {e}"))?),
            _ => return Err(format!("unknown argument {a}")),
        }
    }
    if !matches!(o.op.as_str(), "encrypt" | "decrypt" | "floor-encrypt" | "floor-decrypt" | "aes-gcm") {
        return Err(format!("--op {}: expected encrypt, decrypt, floor-encrypt, floor-decrypt or aes-gcm", o.op));
    }
    if o.threads == 0
        || o.workers == 0
        || o.frame_length == Some(0)
        || o.repeats == 0
        || o.batch == 0
        || o.seconds.is_nan()
        || o.seconds <= 0.0
    {
        return Err("--threads, --workers, --frame-length, --repeats, --batch and --seconds must be positive".into());
    }
    Ok(o)
}

fn main() {
    let o = match parse() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(2);
        }
    };
    let raw: Arc<dyn MaterialsManager> =
        Arc::new(DefaultCmm::new(RawAesKeyring::new("bench", "aes-256", &[1u8; 32]).expect("keyring")));
    let cmm: Arc<dyn MaterialsManager> = if o.cache {
        Arc::new(
            CachingCmm::new(raw, Arc::new(LocalCache::new(64).expect("cache")), Duration::from_secs(300)).expect("cmm"),
        )
    } else {
        raw
    };
    let message_size = o.aggregate.map_or(o.size, |n| esdk_kinesis::aggregate::FIXED_OVERHEAD + n * (o.size + 16));
    let frame_length =
        o.frame_length.unwrap_or(if o.threads == 1 { message_size.clamp(1, 1 << 20) as u32 } else { 64 << 10 });
    let client = Arc::new({
        let b = Client::builder().suite(o.suite).frame_length(frame_length).frame_threads(o.threads);
        let b = match o.linger_us {
            Some(us) => b.frame_linger(Duration::from_micros(us)),
            None => b,
        };
        b.build().expect("client")
    });
    let ec: EncryptionContext = [("stream", "orders")].into_iter().collect();
    let records = Arc::new(user_records(o.aggregate.unwrap_or(0), o.size));
    let plaintext = Arc::new(match o.aggregate {
        Some(_) => aggregate(&records).to_vec(),
        None => vec![0x42u8; o.size],
    });
    let message = Arc::new(client.encrypt_blocking(&*cmm, &plaintext, &ec).expect("encrypt"));
    let floor = Arc::new(floor::Floor::new(plaintext.len()));
    let signed = o.suite.is_signed();

    let per_repeat = Duration::from_secs_f64(o.seconds / o.repeats as f64);
    let mut ns_per_msg = Vec::new();
    let mut mb_per_s = Vec::new();
    let mut records_per_s = Vec::new();
    for _ in 0..o.repeats {
        let start = Instant::now();
        let handles: Vec<_> = (0..o.workers)
            .map(|_| {
                let (client, cmm, ec, plaintext, message, floor, op, records) = (
                    client.clone(),
                    cmm.clone(),
                    ec.clone(),
                    plaintext.clone(),
                    message.clone(),
                    floor.clone(),
                    o.op.clone(),
                    records.clone(),
                );
                let aggregated = o.aggregate.is_some();
                let batch = if aggregated && matches!(o.op.as_str(), "encrypt" | "decrypt") { o.batch } else { 1 };
                std::thread::spawn(move || {
                    let mut n = 0u64;
                    let mut buf = vec![0u8; plaintext.len()];
                    let mut out = Vec::with_capacity(plaintext.len());
                    let mut message_buf = Vec::new();
                    let mut plain_buf = Vec::new();
                    let gcm = floor::Floor::gcm_key();
                    while start.elapsed() < per_repeat {
                        for _ in 0..8 {
                            match op.as_str() {
                                "encrypt" if aggregated => {
                                    let builders = (0..batch).map(|_| builder(&records)).collect();
                                    for plaintext in esdk_kinesis::aggregate::AggregateBuilder::finish_all(builders) {
                                        client
                                            .encrypt_into_blocking(&*cmm, &plaintext, &ec, &mut message_buf)
                                            .expect("encrypt");
                                    }
                                }
                                "encrypt" => client
                                    .encrypt_into_blocking(&*cmm, &plaintext, &ec, &mut message_buf)
                                    .expect("encrypt"),
                                "decrypt" if aggregated => {
                                    // As the consumer does: each plaintext becomes the owner of
                                    // its user records' views, zeroized when they drop.
                                    let owned: Vec<bytes::Bytes> = (0..batch)
                                        .map(|_| {
                                            // Sized up front: a growing buffer would free
                                            // unzeroized copies of the plaintext.
                                            let mut plain = Vec::with_capacity(plaintext.len());
                                            client
                                                .decrypt_into_blocking(&*cmm, &message, None, &mut plain)
                                                .expect("decrypt");
                                            bytes::Bytes::from_owner(zeroize::Zeroizing::new(plain))
                                        })
                                        .collect();
                                    for users in esdk_kinesis::aggregate::deaggregate_all(&owned) {
                                        assert_eq!(users.expect("aggregate").len(), records.len());
                                    }
                                }
                                "decrypt" => client
                                    .decrypt_into_blocking(&*cmm, &message, None, &mut plain_buf)
                                    .map(drop)
                                    .expect("decrypt"),
                                "floor-encrypt" => floor.encrypt(&mut buf, signed),
                                "aes-gcm" => floor::Floor::gcm_only(&gcm, &mut buf),
                                _ => floor.decrypt(&mut out, signed),
                            }
                            n += batch as u64;
                        }
                    }
                    n
                })
            })
            .collect();
        let total: u64 = handles.into_iter().map(|h| h.join().expect("worker")).sum();
        let elapsed = start.elapsed().as_secs_f64();
        ns_per_msg.push(elapsed * 1e9 / total as f64);
        mb_per_s.push(total as f64 * plaintext.len() as f64 / elapsed / 1e6);
        records_per_s.push(total as f64 * o.aggregate.unwrap_or(1) as f64 / elapsed);
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    println!(
        "op={} suite=0x{:04x} size={} threads={} workers={} frame_length={} cache={} aggregate={} ns_per_msg={:.0} mb_per_s={:.1} records_per_s={:.0}",
        o.op,
        o.suite.id(),
        o.size,
        o.threads,
        o.workers,
        frame_length,
        o.cache,
        o.aggregate.unwrap_or(0),
        median(&mut ns_per_msg),
        median(&mut mb_per_s),
        median(&mut records_per_s)
    );
}

/// `n` CDC-like user records of `size` bytes with their partition keys.
fn user_records(n: usize, size: usize) -> Vec<(String, Vec<u8>)> {
    (0..n).map(|i| (format!("{}", 12_340_000 + i), vec![b'a' + (i % 26) as u8; size])).collect()
}

/// The KPL aggregate of `records`, as the aggregating producer builds it.
fn aggregate(records: &[(String, Vec<u8>)]) -> zeroize::Zeroizing<Vec<u8>> {
    builder(records).finish()
}

fn builder(records: &[(String, Vec<u8>)]) -> esdk_kinesis::aggregate::AggregateBuilder {
    let bytes = records.iter().map(|(k, d)| k.len() + d.len() + 16).sum();
    let mut b = esdk_kinesis::aggregate::AggregateBuilder::with_capacity(bytes);
    for (k, d) in records {
        b.push(k, d);
    }
    b
}
