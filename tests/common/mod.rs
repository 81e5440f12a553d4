//! Helpers shared by the integration tests.
#![allow(dead_code)]

#[cfg(feature = "kms")]
pub mod aws;

/// Fails under `CI=true` (the test script must provide what the test needs); elsewhere prints a
/// visible notice that the test did not run.
pub fn missing(what: &str) {
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{what}");
    }
    eprintln!("NOTICE: NOT RUN: {what}");
}

/// The Python interpreter with the official ESDK (`ESDK_INTEROP_PYTHON`, set by `scripts/test`).
pub fn interop_python() -> Option<std::path::PathBuf> {
    if let Some(p) = std::env::var_os("ESDK_INTEROP_PYTHON") {
        return Some(p.into());
    }
    let venv = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv-test/bin/python");
    if venv.is_file() {
        return Some(venv);
    }
    missing("the official Python ESDK is not installed (run scripts/test, or set ESDK_INTEROP_PYTHON)");
    None
}

/// Runs `interop/esdk_python.py` with `args`; panics with its output when it fails.
pub fn run_python(python: &std::path::Path, args: &[&str]) -> String {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("interop/esdk_python.py");
    let out =
        std::process::Command::new(python).arg(script).args(args).output().expect("run the Python interop driver");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "python {args:?} failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    stdout
}
