//! [`RedisServer`]: a throwaway `redis-server` process for tests that stop,
//! restart or reconfigure Redis.
//!
//! Each guard owns one process on a free port of 127.0.0.1, with its own
//! temporary directory, no persistence (`--save ""`, `--appendonly no`) and its
//! log in that directory. It waits for the server to answer before returning,
//! kills it on drop, and puts the log into every panic message, so a test that
//! cannot start Redis says why. The plain shared Redis at 127.0.0.1:6379 is not
//! this module's business.
//!
//! The guard is synchronous (`std::process`), so it works in any test, async or
//! not; starting blocks for the few milliseconds Redis takes to boot.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// How long [`RedisServer`] waits for a fresh process to answer PING.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause between two PING attempts while Redis boots.
const POLL_INTERVAL: Duration = Duration::from_millis(10);
/// How often a port collision (another process grabbed the free port between
/// our probe and Redis' bind) is retried with a new port at first start.
const PORT_ATTEMPTS: usize = 5;

/// A `redis-server` child process, killed when the guard drops.
///
/// # Example
///
/// ```no_run
/// use strata_cache_testkit::RedisServer;
///
/// let mut server = RedisServer::new();
/// let url = server.url(); // redis://127.0.0.1:<port>/
/// server.stop(); // the port now refuses connections
/// server.start(); // same port, empty data set
/// # drop(url);
/// ```
///
/// # Panics
///
/// Starting panics when `redis-server` is not on `PATH` or does not answer PING
/// within 10 s; the message holds the server's log.
#[derive(Debug)]
pub struct RedisServer {
    port: u16,
    args: Vec<String>,
    password: Option<String>,
    dir: TempDir,
    child: Option<Child>,
}

impl Default for RedisServer {
    fn default() -> Self {
        Self::new()
    }
}

impl RedisServer {
    /// Starts a server on a free port with the default configuration.
    ///
    /// # Panics
    ///
    /// See [the type's docs](RedisServer#panics).
    #[must_use]
    pub fn new() -> Self {
        Self::with_args(std::iter::empty::<String>())
    }

    /// Starts a server with extra command-line arguments, for example
    /// `["--requirepass", "secret"]` or `["--maxmemory", "10mb"]`.
    ///
    /// With `--requirepass`, readiness counts a `-NOAUTH` answer as up, and
    /// [`url`](RedisServer::url) carries the password.
    ///
    /// # Panics
    ///
    /// See [the type's docs](RedisServer#panics).
    #[must_use]
    pub fn with_args<I, S>(args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let args: Vec<String> = args.into_iter().map(Into::into).collect();
        let password = args
            .iter()
            .position(|a| a == "--requirepass")
            .and_then(|i| args.get(i + 1))
            .cloned();
        let dir = tempfile::Builder::new()
            .prefix("strata-redis-")
            .tempdir()
            .unwrap_or_else(|e| panic!("cannot create a temp dir for redis-server: {e}"));
        let mut server = Self {
            port: 0,
            args,
            password,
            dir,
            child: None,
        };
        for attempt in 1..=PORT_ATTEMPTS {
            server.port = free_port();
            match server.try_start() {
                Ok(()) => return server,
                Err(log) if attempt < PORT_ATTEMPTS && log.contains("Address already in use") => {}
                Err(log) => server.fail(&log),
            }
        }
        unreachable!("the last attempt returns or panics")
    }

    /// The port the server listens on (the same across restarts).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:<port>/`, with the `--requirepass` password if one was given.
    pub fn url(&self) -> String {
        match &self.password {
            Some(password) => format!("redis://:{password}@127.0.0.1:{}/", self.port),
            None => format!("redis://127.0.0.1:{}/", self.port),
        }
    }

    /// The server's address.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }

    /// True while the process started by this guard is alive.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|child| matches!(child.try_wait(), Ok(None)))
    }

    /// Kills the server (SIGKILL, like a crash) and waits for the process to
    /// exit, so the port refuses connections when this returns. Does nothing
    /// when it is already stopped.
    pub fn stop(&mut self) {
        // A paused process must run again to die of SIGKILL promptly.
        self.resume();
        if let Some(mut child) = self.child.take() {
            // Already exited is fine: we only want it gone.
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Freezes the server (SIGSTOP): connections stay open and nothing is
    /// answered, like a Redis hung on a slow disk or a long script. Undo with
    /// [`resume`](Self::resume); [`stop`](Self::stop) and drop still work.
    pub fn pause(&mut self) {
        self.signal("-STOP");
    }

    /// Lets a [paused](Self::pause) server run again (SIGCONT).
    pub fn resume(&mut self) {
        self.signal("-CONT");
    }

    fn signal(&mut self, signal: &str) {
        if let Some(child) = &self.child {
            // `kill` from the system: the workspace forbids the `unsafe` a
            // direct libc call would need. A server already gone is fine.
            let _ = Command::new("kill")
                .arg(signal)
                .arg(child.id().to_string())
                .status();
        }
    }

    /// Starts the server again on the same port, with the same arguments and an
    /// empty data set, and waits until it answers. Does nothing when it runs.
    ///
    /// # Panics
    ///
    /// See [the type's docs](RedisServer#panics).
    pub fn start(&mut self) {
        if self.is_running() {
            return;
        }
        // A second try when the first did not answer in time: on a machine
        // loaded by parallel builds a start can stall once.
        if let Err(log) = self.try_start().or_else(|_| self.try_start()) {
            self.fail(&log);
        }
    }

    /// The server's log so far, console output (argument errors) included.
    pub fn log(&self) -> String {
        let read = |path: PathBuf| std::fs::read_to_string(path).unwrap_or_default();
        let mut log = read(self.console_path());
        log.push_str(&read(self.log_path()));
        log
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("redis.log")
    }

    fn console_path(&self) -> PathBuf {
        self.dir.path().join("console.log")
    }

    /// Spawns the process and waits for PING; on failure returns the log.
    fn try_start(&mut self) -> Result<(), String> {
        // Errors in the arguments are printed before the logfile is open, so
        // the console output goes to a file too.
        let console = std::fs::File::create(self.console_path())
            .map_err(|e| format!("cannot create the console file of redis-server: {e}"))?;
        let console_err = console
            .try_clone()
            .map_err(|e| format!("cannot create the console file of redis-server: {e}"))?;
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port"])
            .arg(self.port.to_string())
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .arg("--logfile")
            .arg(self.log_path())
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(console)
            .stderr(console_err)
            .spawn()
            .map_err(|e| {
                format!(
                    "cannot run redis-server ({e}): install it (apt-get install redis-server) \
                     and make sure it is on PATH"
                )
            })?;
        self.child = Some(child);
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if ping(self.port) {
                return Ok(());
            }
            if !self.is_running() {
                self.stop();
                return Err(format!("redis-server exited at start.\n{}", self.log()));
            }
            if Instant::now() >= deadline {
                self.stop();
                return Err(format!(
                    "redis-server did not answer PING within {START_TIMEOUT:?}.\n{}",
                    self.log()
                ));
            }
            std::thread::sleep(POLL_INTERVAL);
        }
    }

    fn fail(&self, log: &str) -> ! {
        panic!(
            "could not start redis-server on 127.0.0.1:{} (args {:?}): {log}",
            self.port, self.args
        )
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A port that was free a moment ago: bind port 0 and let the kernel choose.
fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .unwrap_or_else(|e| panic!("cannot find a free port on 127.0.0.1: {e}"))
}

/// One raw RESP PING. `-NOAUTH` means the server is up but wants a password,
/// which is ready enough for a guard that does not know about clients.
fn ping(port: u16) -> bool {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    let timeout = Some(Duration::from_millis(500));
    if stream.set_read_timeout(timeout).is_err() || stream.set_write_timeout(timeout).is_err() {
        return false;
    }
    if stream.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut reply = [0u8; 64];
    match stream.read(&mut reply) {
        Ok(n) => {
            let reply = &reply[..n];
            reply.starts_with(b"+PONG") || reply.starts_with(b"-NOAUTH")
        }
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_stops_and_restarts_on_the_same_port() {
        let mut server = RedisServer::new();
        let port = server.port();
        assert!(ping(port), "not answering after new()");
        assert_eq!(server.url(), format!("redis://127.0.0.1:{port}/"));
        server.stop();
        assert!(!ping(port), "still answering after stop()");
        server.start();
        assert_eq!(server.port(), port);
        assert!(ping(port), "not answering after start()");
        assert!(server.log().contains("Ready to accept connections"));
    }

    #[test]
    fn a_password_goes_into_the_url() {
        let server = RedisServer::with_args(["--requirepass", "secret"]);
        assert_eq!(
            server.url(),
            format!("redis://:secret@127.0.0.1:{}/", server.port())
        );
    }

    #[test]
    fn drop_kills_the_server() {
        let port = RedisServer::new().port();
        assert!(!ping(port));
    }

    #[test]
    fn a_bad_argument_panics_with_the_log() {
        let panic = std::panic::catch_unwind(|| RedisServer::with_args(["--no-such-option"]))
            .expect_err("started with a bad option");
        let message = panic.downcast_ref::<String>().cloned().unwrap_or_default();
        assert!(message.contains("no-such-option"), "{message}");
    }
}
