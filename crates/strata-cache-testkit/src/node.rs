//! One `redis-server` process, of a [`RedisServer`](crate::RedisServer) or
//! of a multi-node deployment ([`RedisCluster`](crate::RedisCluster),
//! [`RedisSentinel`](crate::RedisSentinel)), and the polling that waits for
//! such a deployment to settle.
//!
//! A [`Node`] owns its process, its free port on 127.0.0.1 and its temporary
//! directory (configuration, log, `nodes.conf`); it kills the process on drop,
//! so a deployment whose start panics half-way leaves nothing behind. What the
//! node is (cluster member, replica, sentinel) is its owner's business: the
//! owner builds the command line; [`RedisServer`](crate::RedisServer) is one
//! such node with a single-server API (`stop`/`start`).

use std::fs::OpenOptions;
use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::resp;

/// How long a fresh process has to answer PING.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause between two PINGs while a process boots.
const BOOT_POLL: Duration = Duration::from_millis(10);
/// Pause between two looks at a deployment that is settling: each look sends
/// a few commands to every node, which is not free on a loaded machine.
const SETTLE_POLL: Duration = Duration::from_millis(50);
/// How often a port collision (another process took a port between our probe
/// and Redis' bind) is retried with new ports at first start.
const PORT_ATTEMPTS: usize = 5;
/// How many lines of each node's log a panic message carries.
const LOG_TAIL: usize = 60;

/// A `redis-server` process of a deployment, killed when dropped.
#[derive(Debug)]
pub(crate) struct Node {
    /// What the node is, for messages: "cluster node", "sentinel"...
    role: &'static str,
    port: u16,
    /// The command line of every start; a restart may add to it.
    args: Vec<String>,
    dir: TempDir,
    child: Option<Child>,
    paused: bool,
}

impl Node {
    /// Starts a node on free ports: `make_args` gets the node's directory and
    /// `ports_needed` free ports (the first is the node's own) and returns the
    /// command line of `redis-server`; `extra` is added to the first start
    /// only.
    ///
    /// # Panics
    ///
    /// When the process does not answer PING within 10 s, with its log.
    pub(crate) fn launch(
        role: &'static str,
        ports_needed: usize,
        mut make_args: impl FnMut(&Path, &[u16]) -> Vec<String>,
        extra: &[String],
    ) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("strata-redis-")
            .tempdir()
            .unwrap_or_else(|e| panic!("cannot create a temp dir for a {role}: {e}"));
        let mut node = Self {
            role,
            port: 0,
            args: Vec::new(),
            dir,
            child: None,
            paused: false,
        };
        for attempt in 1..=PORT_ATTEMPTS {
            let ports = free_ports(ports_needed.max(1));
            node.port = ports[0];
            node.args = make_args(node.dir.path(), &ports);
            match node.spawn(extra) {
                Ok(()) => return node,
                Err(log) if attempt < PORT_ATTEMPTS && log.contains("Address already in use") => {}
                Err(log) => node.fail(&log),
            }
        }
        unreachable!("the last attempt returns or panics")
    }

    /// The port the node serves on (the same across restarts).
    pub(crate) fn port(&self) -> u16 {
        self.port
    }

    /// The node's temporary directory.
    pub(crate) fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// True when the process was started and not killed since. A paused
    /// node is started.
    pub(crate) fn is_started(&self) -> bool {
        self.child.is_some()
    }

    /// True while the process started last is alive (it may be paused).
    pub(crate) fn is_alive(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|child| matches!(child.try_wait(), Ok(None)))
    }

    /// True when the node is started and not paused: it should answer.
    pub(crate) fn is_live(&self) -> bool {
        self.child.is_some() && !self.paused
    }

    /// Starts a killed node again with the arguments of its first start plus
    /// `extra`, and waits until it answers PING. Does nothing when it runs.
    ///
    /// # Panics
    ///
    /// When it does not answer PING within 10 s (tried twice), with its log.
    pub(crate) fn restart(&mut self, extra: &[String]) {
        if self.child.is_some() {
            return;
        }
        // A second try when the first did not answer in time: on a machine
        // loaded by parallel builds a start can stall once.
        if let Err(log) = self.spawn(extra).or_else(|_| self.spawn(extra)) {
            self.fail(&log);
        }
    }

    /// SIGKILL, like a crash, and waits for the process to exit so the port
    /// refuses connections when this returns. Does nothing when not running.
    pub(crate) fn kill(&mut self) {
        // A stopped process must run again to die of SIGKILL promptly.
        self.resume();
        if let Some(mut child) = self.child.take() {
            // Already exited is fine: we only want it gone.
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGSTOP: connections stay open and nothing is answered.
    pub(crate) fn pause(&mut self) {
        if self.child.is_some() {
            self.signal("-STOP");
            self.paused = true;
        }
    }

    /// SIGCONT: a paused node runs again.
    pub(crate) fn resume(&mut self) {
        if self.paused {
            self.signal("-CONT");
            self.paused = false;
        }
    }

    fn signal(&self, signal: &str) {
        if let Some(child) = &self.child {
            // `kill` from the system: the workspace forbids the `unsafe` a
            // direct libc call would need. A process already gone is fine.
            let _ = Command::new("kill")
                .arg(signal)
                .arg(child.id().to_string())
                .status();
        }
    }

    /// The node's log so far, console output (argument errors) included.
    pub(crate) fn log(&self) -> String {
        let read = |path: PathBuf| std::fs::read_to_string(path).unwrap_or_default();
        let mut log = read(self.console_path());
        log.push_str(&read(self.log_path()));
        log
    }

    /// A heading and the last lines of the log, for panic messages.
    pub(crate) fn log_tail(&self) -> String {
        let log = self.log();
        let lines: Vec<&str> = log.lines().collect();
        let state = match (self.child.is_some(), self.paused) {
            (false, _) => "killed",
            (true, true) => "paused",
            (true, false) => "running",
        };
        format!(
            "--- {} 127.0.0.1:{} ({state}), last lines of {} ---\n{}\n",
            self.role,
            self.port,
            self.log_path().display(),
            lines[lines.len().saturating_sub(LOG_TAIL)..].join("\n")
        )
    }

    /// The logfile every owner points `redis-server` at.
    pub(crate) fn log_path_in(dir: &Path) -> PathBuf {
        dir.join("redis.log")
    }

    fn log_path(&self) -> PathBuf {
        Self::log_path_in(self.dir.path())
    }

    fn console_path(&self) -> PathBuf {
        self.dir.path().join("console.log")
    }

    /// Spawns the process and waits for PING; on failure returns the log.
    fn spawn(&mut self, extra: &[String]) -> Result<(), String> {
        // Errors in the arguments are printed before the logfile is open, so
        // the console output goes to a file too; appended, to keep the first
        // start's output after a restart.
        let console = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.console_path())
            .and_then(|file| Ok((file.try_clone()?, file)))
            .map_err(|e| format!("cannot create the console file of a {}: {e}", self.role))?;
        let child = Command::new("redis-server")
            .args(&self.args)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(console.0)
            .stderr(console.1)
            .spawn()
            .map_err(|e| {
                format!(
                    "cannot run redis-server ({e}): install it (apt-get install redis-server) \
                     and make sure it is on PATH"
                )
            })?;
        self.child = Some(child);
        self.paused = false;
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            // `-NOAUTH`: up, and protected by a password, which the node's
            // owner knows and this readiness check does not need.
            match resp::call(self.port, None, &["PING"]) {
                Ok(_) => return Ok(()),
                Err(e) if e.contains("-NOAUTH") => return Ok(()),
                Err(_) => {}
            }
            let exited = self
                .child
                .as_mut()
                .is_some_and(|child| !matches!(child.try_wait(), Ok(None)));
            if exited {
                self.kill();
                return Err(format!("redis-server exited at start.\n{}", self.log()));
            }
            if Instant::now() >= deadline {
                self.kill();
                return Err(format!(
                    "redis-server did not answer PING within {START_TIMEOUT:?}.\n{}",
                    self.log()
                ));
            }
            std::thread::sleep(BOOT_POLL);
        }
    }

    fn fail(&self, log: &str) -> ! {
        panic!(
            "could not start a {} on 127.0.0.1:{} (args {:?}): {log}",
            self.role, self.port, self.args
        )
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The command line of a data node without persistence: its port on
/// 127.0.0.1, its directory, its logfile, and replication that starts at once
/// (diskless, without the default 5 s wait for more replicas to join).
///
/// With a `password`, clients must authenticate (`--requirepass`) and so
/// must the node when it replicates from a master (`--masterauth`): every
/// data node of a deployment shares the password, as any of them may become
/// a master.
pub(crate) fn data_node_args(dir: &Path, port: u16, password: Option<&str>) -> Vec<String> {
    let dir_arg = dir.display().to_string();
    let log = Node::log_path_in(dir).display().to_string();
    let mut args: Vec<String> = [
        "--port",
        &port.to_string(),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        "--daemonize",
        "no",
        "--dir",
        &dir_arg,
        "--logfile",
        &log,
        "--repl-diskless-sync",
        "yes",
        "--repl-diskless-sync-delay",
        "0",
    ]
    .map(str::to_owned)
    .to_vec();
    if let Some(password) = password {
        for option in ["--requirepass", "--masterauth"] {
            args.push(option.to_owned());
            args.push(password.to_owned());
        }
    }
    args
}

/// Checks a password given to a deployment guard.
///
/// # Panics
///
/// When it is empty (`requirepass ""` turns authentication off) or starts
/// with `--` (`redis-server` would read it as the next option).
pub(crate) fn check_password(guard: &str, password: &str) {
    assert!(
        !password.is_empty() && !password.starts_with("--"),
        "{guard}::with_password: the password must not be empty nor start with `--`"
    );
}

/// The user-info part of a URL for `password` (`:<password>@`, the password
/// percent-encoded), or nothing without one.
pub(crate) fn url_credentials(password: Option<&str>) -> String {
    let Some(password) = password else {
        return String::new();
    };
    let mut encoded = String::with_capacity(password.len());
    for byte in password.bytes() {
        // RFC 3986's unreserved characters stand for themselves; everything
        // else (`@`, `:`, `/`, `%`, non-ASCII) is escaped.
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    format!(":{encoded}@")
}

/// `n` distinct ports that were free a moment ago: all listeners are held
/// until the last is bound, so the kernel cannot hand out one port twice.
pub(crate) fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| {
            TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
                .unwrap_or_else(|e| panic!("cannot find a free port on 127.0.0.1: {e}"))
        })
        .collect();
    listeners
        .iter()
        .map(|listener| {
            listener
                .local_addr()
                .map(|addr| addr.port())
                .unwrap_or_else(|e| panic!("cannot find a free port on 127.0.0.1: {e}"))
        })
        .collect()
}

/// Calls `probe` until it returns `Ok` or `timeout` passes; the `Err` is the
/// probe's last complaint, to say what never happened.
pub(crate) fn poll_until<T>(
    timeout: Duration,
    mut probe: impl FnMut() -> Result<T, String>,
) -> Result<T, String> {
    let deadline = Instant::now() + timeout;
    loop {
        match probe() {
            Ok(value) => return Ok(value),
            Err(e) if Instant::now() >= deadline => {
                return Err(format!("not within {timeout:?}; last: {e}"));
            }
            Err(_) => std::thread::sleep(SETTLE_POLL),
        }
    }
}

/// The last lines of every node's log, for a deployment's panic messages.
pub(crate) fn logs<'a>(nodes: impl IntoIterator<Item = &'a Node>) -> String {
    nodes.into_iter().map(Node::log_tail).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_ports_are_distinct() {
        let mut ports = free_ports(12);
        ports.sort_unstable();
        ports.dedup();
        assert_eq!(ports.len(), 12);
    }

    #[test]
    fn passwords_are_percent_encoded_in_urls() {
        assert_eq!(url_credentials(None), "");
        assert_eq!(url_credentials(Some("s3cret-_.~")), ":s3cret-_.~@");
        assert_eq!(
            url_credentials(Some("p@ss:w/rd%é")),
            ":p%40ss%3Aw%2Frd%25%C3%A9@"
        );
    }

    #[test]
    fn poll_until_reports_the_last_complaint() {
        let mut calls = 0;
        let outcome: Result<(), String> = poll_until(Duration::from_millis(120), || {
            calls += 1;
            Err(format!("call {calls}"))
        });
        let message = outcome.expect_err("never succeeds");
        assert!(message.contains(&format!("call {calls}")), "{message}");
    }
}
