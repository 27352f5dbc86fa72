//! [`RedisServer`]: a throwaway `redis-server` process for tests that stop,
//! restart or reconfigure Redis.
//!
//! Each guard owns one process on a free port of 127.0.0.1, with its own
//! temporary directory, no persistence (`--save ""`, `--appendonly no`) and its
//! log in that directory (the process handling is [`crate::node`]'s, shared
//! with the cluster and sentinel guards). It waits for the server to answer
//! before returning, kills it on drop, and puts the log into every panic
//! message, so a test that cannot start Redis says why. The plain shared Redis
//! at 127.0.0.1:6379 is not this module's business.
//!
//! The guard is synchronous (`std::process`), so it works in any test, async or
//! not; starting blocks for the few milliseconds Redis takes to boot.

use std::net::{Ipv4Addr, SocketAddr};

use crate::node::{self, Node};

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
    node: Node,
    password: Option<String>,
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
        let node = Node::launch(
            "redis-server",
            1,
            |dir, ports| {
                let mut command = node::data_node_args(dir, ports[0], None);
                command.extend(args.iter().cloned());
                command
            },
            &[],
        );
        Self { node, password }
    }

    /// The port the server listens on (the same across restarts).
    pub fn port(&self) -> u16 {
        self.node.port()
    }

    /// `redis://127.0.0.1:<port>/`, with the `--requirepass` password if one was given.
    pub fn url(&self) -> String {
        match &self.password {
            Some(password) => format!("redis://:{password}@127.0.0.1:{}/", self.port()),
            None => format!("redis://127.0.0.1:{}/", self.port()),
        }
    }

    /// The server's address.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port()))
    }

    /// True while the process started by this guard is alive.
    pub fn is_running(&mut self) -> bool {
        self.node.is_alive()
    }

    /// Kills the server (SIGKILL, like a crash) and waits for the process to
    /// exit, so the port refuses connections when this returns. Does nothing
    /// when it is already stopped.
    pub fn stop(&mut self) {
        self.node.kill();
    }

    /// Freezes the server (SIGSTOP): connections stay open and nothing is
    /// answered, like a Redis hung on a slow disk or a long script. Undo with
    /// [`resume`](Self::resume); [`stop`](Self::stop) and drop still work.
    pub fn pause(&mut self) {
        self.node.pause();
    }

    /// Lets a [paused](Self::pause) server run again (SIGCONT).
    pub fn resume(&mut self) {
        self.node.resume();
    }

    /// Starts the server again on the same port, with the same arguments and an
    /// empty data set, and waits until it answers. Does nothing when it runs.
    ///
    /// # Panics
    ///
    /// See [the type's docs](RedisServer#panics).
    pub fn start(&mut self) {
        if !self.node.is_alive() {
            // A process that died by itself is reaped before the new one.
            self.node.kill();
        }
        self.node.restart(&[]);
    }

    /// The server's log so far, console output (argument errors) included.
    pub fn log(&self) -> String {
        self.node.log()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resp;

    fn ping(port: u16) -> bool {
        resp::call(port, None, &["PING"]).is_ok()
    }

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
