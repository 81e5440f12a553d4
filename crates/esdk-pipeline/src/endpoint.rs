//! Which AWS endpoint the demo talks to: the repository's local one (started here and stopped on
//! drop), another endpoint, or the standard AWS environment.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::DemoResult;

/// A local endpoint this process started; stopped (by PID) on drop.
pub struct LocalEndpoint {
    child: Child,
    pub url: String,
}

impl Drop for LocalEndpoint {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn set_env(key: &str, value: &str) {
    // Called from `main` before the runtime or any other thread starts.
    std::env::set_var(key, value);
}

/// Points the standard AWS environment at the chosen endpoint; returns the local endpoint if
/// one was started (keep it alive for the run). `None` for `--aws`.
pub fn choose(endpoint: Option<&str>, aws: bool) -> DemoResult<(Option<String>, Option<LocalEndpoint>)> {
    if aws {
        return Ok((None, None));
    }
    let (url, started) = match endpoint {
        Some(url) => (url.to_owned(), None),
        None => {
            let ep = start_local()?;
            (ep.url.clone(), Some(ep))
        }
    };
    set_env("AWS_ENDPOINT_URL", &url);
    set_env("AWS_EC2_METADATA_DISABLED", "true");
    if started.is_some() || std::env::var_os("AWS_ACCESS_KEY_ID").is_none() {
        set_env("AWS_ACCESS_KEY_ID", "testing");
        set_env("AWS_SECRET_ACCESS_KEY", "testing");
        std::env::remove_var("AWS_SESSION_TOKEN");
        std::env::remove_var("AWS_PROFILE");
    }
    eprintln!("AWS endpoint: {url}{}", if started.is_some() { " (local, started by this demo)" } else { "" });
    Ok((Some(url), started))
}

fn start_local() -> DemoResult<LocalEndpoint> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let setup = root.join("scripts/setup-python");
    if !setup.exists() {
        return Err(format!(
            "the local AWS endpoint is started from the source tree ({} is missing); pass --endpoint URL or --aws",
            setup.display()
        ));
    }
    eprintln!("starting the local AWS endpoint (moto; the first run installs it into .venv-test) ...");
    let out = Command::new(&setup)
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", setup.display()))?;
    if !out.status.success() {
        return Err(format!("{} failed ({}); is python3 with venv and pip installed?", setup.display(), out.status));
    }
    let python = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    let mut child = Command::new(&python)
        .arg(root.join("scripts/moto_plus.py"))
        .args(["-H", "127.0.0.1", "-p", "0"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", python.display()))?;
    let stderr = child.stderr.take().ok_or("no stderr pipe")?;
    let mut endpoint = LocalEndpoint { child, url: String::new() };
    // moto prints " * Running on http://127.0.0.1:PORT" on stderr; keep draining it afterwards.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut sent = false;
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if !sent {
                if let Some(port) = line.split("Running on http://127.0.0.1:").nth(1) {
                    let _ = tx.send(port.trim().to_owned());
                    sent = true;
                }
            }
        }
    });
    let port =
        rx.recv_timeout(Duration::from_secs(30)).map_err(|_| "the local AWS endpoint did not start within 30 s")?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while !http_ok(&format!("127.0.0.1:{port}")) {
        if Instant::now() > deadline {
            return Err("the local AWS endpoint did not answer within 30 s".into());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    endpoint.url = format!("http://127.0.0.1:{port}");
    Ok(endpoint)
}

fn http_ok(addr: &str) -> bool {
    let Ok(mut s) = TcpStream::connect(addr) else { return false };
    let req = format!("GET /moto-api/data.json HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    let mut head = [0u8; 12];
    s.write_all(req.as_bytes()).is_ok() && s.read_exact(&mut head).is_ok() && head.ends_with(b" 200")
}

/// Asks the local endpoint to fail `probability` of the requests of every API the pipeline
/// uses (throttling and 5xx, as busy AWS services answer), and single `PutRecords` entries.
pub fn inject_faults(url: &str, probability: f64) -> DemoResult<()> {
    post(url, "/_chaos", &format!(r#"{{"probability": {probability}, "seed": 1}}"#))
}

fn post(url: &str, path: &str, body: &str) -> DemoResult<()> {
    let addr = url.trim_start_matches("http://").trim_end_matches('/');
    let mut s = TcpStream::connect(addr).map_err(|e| format!("cannot reach {addr}: {e}"))?;
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).map_err(|e| e.to_string())?;
    let mut resp = String::new();
    s.read_to_string(&mut resp).map_err(|e| e.to_string())?;
    if !resp.starts_with("HTTP/1.1 200") && !resp.starts_with("HTTP/1.0 200") {
        return Err(format!("the endpoint refused a fault rule: {}", resp.lines().next().unwrap_or_default()));
    }
    Ok(())
}
