//! A local Lambda Runtime API (the `2018-06-01` interface a Lambda runtime polls) for driving a
//! real function binary in tests: [`RuntimeApi::invoke`] queues an event and waits for the
//! function's response or error. HTTP/1.1 with keep-alive, `Content-Length` or chunked bodies.

use std::collections::{HashMap, VecDeque};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// What the function answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// `POST /runtime/invocation/{id}/response`.
    Response(String),
    /// `POST /runtime/invocation/{id}/error`.
    Error(String),
}

#[derive(Default)]
struct State {
    pending: VecDeque<(String, String)>,
    results: HashMap<String, Outcome>,
    init_error: Option<String>,
    /// When the function first asked for an event.
    first_next: Option<Instant>,
    next_id: u64,
}

type Shared = Arc<(Mutex<State>, Condvar)>;

/// The runtime API, listening on a free loopback port.
pub struct RuntimeApi {
    addr: String,
    state: Shared,
}

impl RuntimeApi {
    pub fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the runtime API");
        let addr = listener.local_addr().unwrap().to_string();
        let state: Shared = Arc::default();
        let shared = state.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let shared = shared.clone();
                std::thread::spawn(move || serve(conn, &shared));
            }
        });
        Self { addr, state }
    }

    /// A command that runs `program` as a Lambda function against this runtime API and `env`:
    /// the variables Lambda sets (function name, memory, version, log names) and the endpoint's.
    pub fn command(&self, env: &crate::aws::Endpoint, program: impl AsRef<std::ffi::OsStr>) -> std::process::Command {
        let mut cmd = env.command(program);
        cmd.env("AWS_LAMBDA_RUNTIME_API", &self.addr)
            .env("AWS_LAMBDA_FUNCTION_NAME", "esdk-replicator")
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env("AWS_LAMBDA_LOG_STREAM_NAME", "test")
            .env("AWS_LAMBDA_LOG_GROUP_NAME", "/aws/lambda/esdk-replicator");
        cmd
    }

    /// `host:port`, the value of `AWS_LAMBDA_RUNTIME_API`.
    pub fn address(&self) -> &str {
        &self.addr
    }

    /// Sends `event` (JSON) and waits up to `timeout` for the function's answer.
    pub fn invoke(&self, event: &str, timeout: Duration) -> Result<Outcome, String> {
        let (lock, cv) = &*self.state;
        let mut st = lock.lock().unwrap();
        st.next_id += 1;
        let id = format!("req-{}", st.next_id);
        st.pending.push_back((id.clone(), event.to_owned()));
        cv.notify_all();
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(out) = st.results.remove(&id) {
                return Ok(out);
            }
            if let Some(e) = &st.init_error {
                return Err(format!("init error: {e}"));
            }
            let left = deadline.checked_duration_since(Instant::now()).ok_or("the function did not answer in time")?;
            st = cv.wait_timeout(st, left).unwrap().0;
        }
    }

    /// When the function first polled for an event (its init is done), if it has.
    pub fn first_poll(&self) -> Option<Instant> {
        self.state.0.lock().unwrap().first_next
    }

    /// The body of `POST /runtime/init/error`, if the function reported one.
    pub fn init_error(&self) -> Option<String> {
        self.state.0.lock().unwrap().init_error.clone()
    }
}

struct Request {
    method: String,
    path: String,
    body: String,
}

fn read_request(r: &mut BufReader<TcpStream>) -> Option<Request> {
    let mut line = String::new();
    if r.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next()?.to_owned(), parts.next()?.to_owned());
    let (mut length, mut chunked) = (0usize, false);
    loop {
        let mut h = String::new();
        r.read_line(&mut h).ok()?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            match k.trim().to_ascii_lowercase().as_str() {
                "content-length" => length = v.trim().parse().ok()?,
                "transfer-encoding" => chunked = v.to_ascii_lowercase().contains("chunked"),
                _ => {}
            }
        }
    }
    let mut body = Vec::new();
    if chunked {
        loop {
            let mut size = String::new();
            r.read_line(&mut size).ok()?;
            let n = usize::from_str_radix(size.trim().split(';').next()?, 16).ok()?;
            let mut chunk = vec![0; n + 2];
            r.read_exact(&mut chunk).ok()?;
            if n == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..n]);
        }
    } else {
        body.resize(length, 0);
        r.read_exact(&mut body).ok()?;
    }
    Some(Request { method, path, body: String::from_utf8_lossy(&body).into_owned() })
}

fn serve(conn: TcpStream, shared: &Shared) {
    let mut writer = conn.try_clone().unwrap();
    let mut reader = BufReader::new(conn);
    let (lock, cv) = &**shared;
    while let Some(req) = read_request(&mut reader) {
        let path = req.path.trim_start_matches("/2018-06-01");
        let reply = if req.method == "GET" && path == "/runtime/invocation/next" {
            let mut st = lock.lock().unwrap();
            st.first_next.get_or_insert_with(Instant::now);
            let (id, event) = loop {
                if let Some(next) = st.pending.pop_front() {
                    break next;
                }
                st = cv.wait(st).unwrap();
            };
            drop(st);
            let deadline = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() + 60_000;
            format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nLambda-Runtime-Aws-Request-Id: {id}\r\n\
                 Lambda-Runtime-Deadline-Ms: {deadline}\r\n\
                 Lambda-Runtime-Invoked-Function-Arn: arn:aws:lambda:us-east-1:123456789012:function:esdk-replicator\r\n\
                 Lambda-Runtime-Trace-Id: Root=1-00000000-000000000000000000000000\r\nContent-Length: {}\r\n\r\n{event}",
                event.len()
            )
        } else if req.method == "POST" && path == "/runtime/init/error" {
            let mut st = lock.lock().unwrap();
            st.init_error = Some(req.body);
            cv.notify_all();
            accepted()
        } else if let Some(rest) = path.strip_prefix("/runtime/invocation/").filter(|_| req.method == "POST") {
            let mut st = lock.lock().unwrap();
            match rest.rsplit_once('/') {
                Some((id, "response")) => st.results.insert(id.to_owned(), Outcome::Response(req.body)),
                Some((id, "error")) => st.results.insert(id.to_owned(), Outcome::Error(req.body)),
                _ => None,
            };
            cv.notify_all();
            accepted()
        } else {
            "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n".to_owned()
        };
        if writer.write_all(reply.as_bytes()).is_err() {
            return;
        }
    }
}

fn accepted() -> String {
    "HTTP/1.1 202 Accepted\r\nContent-Type: application/json\r\nContent-Length: 16\r\n\r\n{\"status\":\"OK\"}\n"
        .to_owned()
}
