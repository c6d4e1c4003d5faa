//! Running the real `hmr-proxy` binary: to its exit, or in the background until it says where it
//! listens.
//!
//! The child never inherits `HMR_PROXY_*` or `RUST_LOG` from the test's environment (only what the
//! test passes), runs in the directory the test names, and has no stdin. Readiness is the
//! `listening on http://…` log line, read from stderr on a thread; every wait is bounded by
//! [`PATIENCE`](super::PATIENCE) and fails the test with the output seen so far.

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, ChildStderr, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use super::PATIENCE;

/// The binary cargo built for this test run.
pub const BIN: &str = env!("CARGO_BIN_EXE_hmr-proxy");

/// What the binary logs once it is bound; the address follows it.
pub const LISTENING: &str = "listening on http://";

/// A command for the binary with a clean environment: every `HMR_PROXY_*` variable and `RUST_LOG`
/// removed, then `envs` set; run in `cwd`, stdin closed, stdout and stderr piped.
pub fn command(args: &[&str], envs: &[(&str, &str)], cwd: &Path) -> Command {
    let mut cmd = Command::new(BIN);
    for (name, _) in std::env::vars_os() {
        let text = name.to_string_lossy();
        if text.starts_with("HMR_PROXY_") || text == "RUST_LOG" {
            cmd.env_remove(&name);
        }
    }
    cmd.args(args)
        .envs(envs.iter().copied())
        .current_dir(cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// A child process killed (and reaped) when dropped, so a failing test leaves none behind.
pub struct Reaped(pub Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Read `log` (the binary's log, line by line) up to the line saying where it listens; the
/// address. The reader stays usable for the rest of the log.
pub fn listening_addr(log: &mut impl std::io::BufRead) -> SocketAddr {
    let mut line = String::new();
    while !line.contains(LISTENING) {
        line.clear();
        assert!(
            log.read_line(&mut line).expect("read the log") > 0,
            "the log ended before a listening line"
        );
    }
    let after = &line[line.find(LISTENING).expect("needle") + LISTENING.len()..];
    after
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .parse()
        .unwrap_or_else(|err| panic!("no address in {line:?}: {err}"))
}

/// Run the binary to its exit (killed, failing the test, after [`PATIENCE`]).
pub fn run_to_exit(args: &[&str], envs: &[(&str, &str)], cwd: &Path) -> Output {
    run_command_to_exit(command(args, envs, cwd), &format!("hmr-proxy {args:?}"))
}

/// [`run_to_exit`] for a command built by the test (`what` names it in a timeout).
pub fn run_command_to_exit(mut cmd: Command, what: &str) -> Output {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|err| panic!("spawn {what}: {err}"));
    let stdout = drain(child.stdout.take().expect("stdout piped"));
    let stderr = drain(child.stderr.take().expect("stderr piped"));
    let status = wait_or_kill(child, PATIENCE, &format!("{what} to exit"));
    Output {
        status,
        stdout: stdout.join().expect("stdout reader"),
        stderr: stderr.join().expect("stderr reader"),
    }
}

/// Run a blocking closure (starting or waiting for the binary) off the async runtime's workers,
/// bounded by [`PATIENCE`](super::PATIENCE).
pub async fn blocking<T, F>(what: &str, f: F) -> T
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    super::within(what, tokio::task::spawn_blocking(f))
        .await
        .unwrap_or_else(|err| panic!("{what}: {err}"))
}

/// Read a pipe to its end on a thread.
fn drain(mut pipe: impl Read + Send + 'static) -> thread::JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut out = Vec::new();
        let _ = pipe.read_to_end(&mut out);
        out
    })
}

/// Wait for `child` up to `timeout`; on timeout kill it and fail the test.
pub fn wait_or_kill(mut child: Child, timeout: Duration, what: &str) -> ExitStatus {
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(child.wait());
    });
    match rx.recv_timeout(timeout) {
        Ok(status) => status.expect("wait for hmr-proxy"),
        Err(_) => {
            // Not reaped yet (the waiter still blocks in wait), so the pid is still this child's.
            signal(pid, "KILL");
            let _ = rx.recv_timeout(PATIENCE);
            panic!("timed out after {timeout:?} waiting for {what}; killed it");
        }
    }
}

/// Send `signal` (a name such as `TERM`) to `pid` with kill(1).
pub fn signal(pid: u32, signal: &str) {
    let status = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .stdin(Stdio::null())
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{signal} {pid} failed: {status}");
}

/// Everything the child wrote to stderr so far, and whether the pipe has closed.
#[derive(Default)]
struct Log {
    text: String,
    closed: bool,
}

/// The log, shared between the reader thread and the test.
#[derive(Clone, Default)]
struct SharedLog(Arc<(Mutex<Log>, Condvar)>);

impl SharedLog {
    /// Forward `stderr` line by line into the log until it closes.
    fn follow(&self, stderr: ChildStderr) {
        let this = self.clone();
        thread::spawn(move || {
            let mut reader = BufReader::new(stderr);
            let mut line = Vec::new();
            loop {
                line.clear();
                let read = reader.read_until(b'\n', &mut line);
                let (lock, changed) = &*this.0;
                let mut log = lock.lock().expect("log lock");
                match read {
                    Ok(n) if n > 0 => log.text.push_str(&String::from_utf8_lossy(&line)),
                    _ => {
                        log.closed = true;
                        changed.notify_all();
                        return;
                    }
                }
                changed.notify_all();
            }
        });
    }

    fn text(&self) -> String {
        self.0.0.lock().expect("log lock").text.clone()
    }

    /// Block until a line containing `needle` has been logged; return that line. Fails the test
    /// if stderr closes first or after `timeout`.
    fn wait_for(&self, needle: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        let (lock, changed) = &*self.0;
        let mut log = lock.lock().expect("log lock");
        loop {
            if let Some(line) = log.text.lines().find(|l| l.contains(needle)) {
                return line.to_string();
            }
            if log.closed {
                panic!(
                    "hmr-proxy closed stderr before logging {needle:?}; it logged:\n{}",
                    log.text
                );
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                panic!(
                    "timed out after {timeout:?} waiting for {needle:?}; hmr-proxy logged:\n{}",
                    log.text
                );
            }
            log = changed.wait_timeout(log, left).expect("log lock").0;
        }
    }
}

/// The binary running in the background. Killed on drop.
pub struct Running {
    /// Where it listens, from its `listening on` line.
    pub addr: SocketAddr,
    /// The whole `listening on …` line.
    pub listening_line: String,
    pid: u32,
    child: Option<Child>,
    log: SharedLog,
}

impl Running {
    /// Start the binary with `args`, adding `--listen 127.0.0.1:0` unless `args` name a listen
    /// address, and wait until it is listening.
    pub fn start(args: &[&str], envs: &[(&str, &str)], cwd: &Path) -> Running {
        let mut argv: Vec<&str> = Vec::new();
        // `-l ADDR`, `-lADDR`, `--listen ADDR`, `--listen=ADDR`.
        let names_listen = args
            .iter()
            .any(|a| a.starts_with("-l") || a.starts_with("--listen"));
        if !names_listen {
            argv.extend(["--listen", "127.0.0.1:0"]);
        }
        argv.extend_from_slice(args);
        Self::start_as_given(&argv, envs, cwd)
    }

    /// Start the binary with exactly `args` (the listen address comes from wherever the test
    /// put it: flag, environment or config file) and wait until it is listening.
    pub fn start_as_given(args: &[&str], envs: &[(&str, &str)], cwd: &Path) -> Running {
        Self::spawned(command(args, envs, cwd))
    }

    /// [`Running::start`] with the binary's standard output going to `stdout`, not a pipe.
    pub fn start_with_stdout(args: &[&str], cwd: &Path, stdout: std::fs::File) -> Running {
        let mut argv = vec!["--listen", "127.0.0.1:0"];
        argv.extend_from_slice(args);
        let mut cmd = command(&argv, &[], cwd);
        cmd.stdout(stdout);
        Self::spawned(cmd)
    }

    /// Start `cmd` (from [`command`], adjusted) and wait until it is listening.
    pub fn spawned(mut cmd: Command) -> Running {
        let mut child = cmd.spawn().expect("spawn hmr-proxy");
        // Nothing is written to stdout; drain it anyway so a write can never block the child.
        if let Some(stdout) = child.stdout.take() {
            drain(stdout);
        }
        let log = SharedLog::default();
        log.follow(child.stderr.take().expect("stderr piped"));
        let pid = child.id();
        let mut running = Running {
            addr: SocketAddr::from(([0, 0, 0, 0], 0)),
            listening_line: String::new(),
            pid,
            child: Some(child),
            log,
        };
        let line = running.wait_for_log(LISTENING);
        let after = &line[line.find(LISTENING).expect("needle in line") + LISTENING.len()..];
        let addr = after.split_whitespace().next().unwrap_or_default();
        running.addr = addr
            .parse()
            .unwrap_or_else(|err| panic!("no address in {line:?}: {err}"));
        running.listening_line = line;
        running
    }

    /// `http://ADDR/path` on the running proxy.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// What the `listening on` line says it forwards to (after `→ `), e.g. `http://localhost:8000`
    /// or `files in /some/dir`.
    pub fn target(&self) -> &str {
        self.listening_line
            .split_once("→ ")
            .map(|(_, target)| target.trim())
            .unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Everything logged to stderr so far.
    pub fn log(&self) -> String {
        self.log.text()
    }

    /// Block until a stderr line contains `needle` (within [`PATIENCE`]); return the line.
    pub fn wait_for_log(&self, needle: &str) -> String {
        self.log.wait_for(needle, PATIENCE)
    }

    /// Send SIGTERM, as `docker stop` does.
    pub fn terminate(&self) {
        assert!(self.child.is_some(), "hmr-proxy was already waited for");
        signal(self.pid, "TERM");
    }

    /// Wait for the process to exit; kill it and fail the test after `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let child = self.child.take().expect("hmr-proxy not yet waited for");
        let what = format!("hmr-proxy to exit; it logged:\n{}", self.log());
        wait_or_kill(child, timeout, &what)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
