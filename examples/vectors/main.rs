//! `cargo run --release --example vectors -- DIR [--backend aws-lc-rs|rustcrypto|all]
//!  [--stream BYTES]... [--tokio BYTES]... [--filter S] [-v]`
//!
//! Runs every test of the `awses-decrypt` manifest in DIR one-shot (and, for each `--stream N`,
//! through the streaming reader with N-byte reads; for each `--tokio N`, through the `tokio::io`
//! reader, with feature `tokio`); prints one line per failure and ends with
//! `N passed, M failed`. Exits 0 only if every test passed.

mod runner;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use esdk::Backend;

fn main() -> ExitCode {
    let mut dir = None;
    let mut backends = vec![Backend::default()];
    let mut filter = None;
    let mut modes = vec![runner::Mode::OneShot];
    let mut verbose = false;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--backend" => match args.next().as_deref() {
                Some("all") => backends = Backend::all().to_vec(),
                Some(name) => match name.parse() {
                    Ok(b) => backends = vec![b],
                    Err(e) => return usage(&e.to_string()),
                },
                None => return usage("--backend needs a value"),
            },
            "--filter" => filter = args.next(),
            "--stream" => match args.next().and_then(|n| n.parse::<usize>().ok()).filter(|n| *n > 0) {
                Some(n) => modes.push(runner::Mode::Streaming(n)),
                None => return usage("--stream needs a positive read size in bytes"),
            },
            "--tokio" => match args.next().and_then(|n| n.parse::<usize>().ok()).filter(|n| *n > 0) {
                Some(n) => modes.push(runner::Mode::Tokio(n)),
                None => return usage("--tokio needs a positive read size in bytes"),
            },
            "-v" | "--verbose" => verbose = true,
            "-h" | "--help" => return usage(""),
            _ if dir.is_none() => dir = Some(PathBuf::from(arg)),
            _ => return usage(&format!("unexpected argument {arg:?}")),
        }
    }
    let Some(dir) = dir else { return usage("missing the vectors directory") };
    let mut summaries = BTreeMap::new();
    for backend in backends {
        for &mode in &modes {
            match runner::run_with(&dir, backend, mode, filter.as_deref()) {
                Ok(s) => {
                    summaries.insert(format!("{} {mode}", backend.name()), s);
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(2);
                }
            }
        }
    }
    println!("{}", runner::render(&summaries, verbose));
    if summaries.values().all(|s| s.failed == 0) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn usage(problem: &str) -> ExitCode {
    if !problem.is_empty() {
        eprintln!("error: {problem}");
    }
    eprintln!(
        "usage: vectors DIR [--backend aws-lc-rs|rustcrypto|all] [--stream READ_SIZE]... [--tokio READ_SIZE]... [--filter SUBSTRING] [-v]"
    );
    ExitCode::from(2)
}
