//! A minimal synchronous RESP2 client for the admin commands of the
//! deployment guards ([`RedisCluster`](crate::RedisCluster),
//! [`RedisSentinel`](crate::RedisSentinel)).
//!
//! It sends one command and reads one reply, with every step bounded by a
//! timeout, so a guard never hangs on a node that stopped answering. On a
//! password-protected node a connection authenticates first (`AUTH`). It is not
//! a client for tests to use: no pipelining, no RESP3, no redirections (an
//! `-ASK` or `-MOVED` is an error like any other). A `redis-cli` subprocess
//! would do the same at the cost of parsing its human-oriented output and of a
//! process per command; a slot migration sends thousands of commands.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::Duration;

/// How long a connection to a node on 127.0.0.1 may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// How long one command may take. Above `MIGRATE`'s own 5 s timeout, so a slow
/// migration reports its own error rather than a read timeout.
const IO_TIMEOUT: Duration = Duration::from_secs(10);
/// A bulk reply longer than this is a protocol error: admin replies are small.
const MAX_BULK: usize = 64 << 20;

/// One RESP2 reply. Error replies are not a variant: [`Conn::call`] returns
/// them as `Err`, since every caller treats them as failures.
#[derive(Debug)]
pub(crate) enum Reply {
    /// `+OK` and the like.
    Status(String),
    /// `:1`.
    Int(i64),
    /// `$3\r\nfoo`; `None` for the nil bulk `$-1`.
    Bulk(Option<Vec<u8>>),
    /// `*2\r\n...`; `None` for the nil array `*-1`.
    Array(Option<Vec<Reply>>),
}

impl Reply {
    /// The text of a status, integer or non-nil bulk reply.
    pub(crate) fn text(self) -> Result<String, String> {
        match self {
            Reply::Status(text) => Ok(text),
            Reply::Int(n) => Ok(n.to_string()),
            Reply::Bulk(Some(bytes)) => Ok(String::from_utf8_lossy(&bytes).into_owned()),
            other => Err(format!("expected a string reply, got {other:?}")),
        }
    }

    /// The elements of a non-nil array reply.
    pub(crate) fn array(self) -> Result<Vec<Reply>, String> {
        match self {
            Reply::Array(Some(items)) => Ok(items),
            other => Err(format!("expected an array reply, got {other:?}")),
        }
    }
}

/// One connection to a node on 127.0.0.1.
#[derive(Debug)]
pub(crate) struct Conn {
    port: u16,
    stream: BufReader<TcpStream>,
}

impl Conn {
    /// Connects to `127.0.0.1:port`, and authenticates with `password`
    /// (`AUTH <password>`) when there is one.
    pub(crate) fn open(port: u16, password: Option<&str>) -> Result<Self, String> {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let stream = TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT)
            .map_err(|e| format!("cannot connect to 127.0.0.1:{port}: {e}"))?;
        let timeout = Some(IO_TIMEOUT);
        stream
            .set_read_timeout(timeout)
            .and_then(|()| stream.set_write_timeout(timeout))
            .and_then(|()| stream.set_nodelay(true))
            .map_err(|e| format!("cannot configure the connection to 127.0.0.1:{port}: {e}"))?;
        let mut conn = Self {
            port,
            stream: BufReader::new(stream),
        };
        if let Some(password) = password {
            conn.call(&["AUTH", password])?;
        }
        Ok(conn)
    }

    /// Sends one command and reads its reply; an error reply is an `Err`
    /// holding the server's message (`ERR ...`, `MOVED ...`).
    ///
    /// After an `Err` the connection may be out of step: open a new one.
    pub(crate) fn call<S: AsRef<[u8]>>(&mut self, args: &[S]) -> Result<Reply, String> {
        let mut request = format!("*{}\r\n", args.len()).into_bytes();
        for arg in args {
            let arg = arg.as_ref();
            request.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
            request.extend_from_slice(arg);
            request.extend_from_slice(b"\r\n");
        }
        let port = self.port;
        let name = args
            .first()
            .map(|a| String::from_utf8_lossy(a.as_ref()).into_owned())
            .unwrap_or_default();
        self.stream
            .get_mut()
            .write_all(&request)
            .map_err(|e| format!("127.0.0.1:{port}: cannot send {name}: {e}"))?;
        self.read()
            .map_err(|e| format!("127.0.0.1:{port} answered {name} with {e}"))
    }

    fn read(&mut self) -> Result<Reply, String> {
        let line = self.line()?;
        let (kind, rest) = line.split_at(1);
        match kind {
            "+" => Ok(Reply::Status(rest.to_owned())),
            "-" => Err(format!("-{rest}")),
            ":" => rest
                .parse()
                .map(Reply::Int)
                .map_err(|_| format!("a bad integer {line:?}")),
            "$" => match length(rest)? {
                None => Ok(Reply::Bulk(None)),
                Some(len) => {
                    let mut bytes = vec![0u8; len + 2];
                    self.stream
                        .read_exact(&mut bytes)
                        .map_err(|e| format!("a cut bulk reply: {e}"))?;
                    bytes.truncate(len);
                    Ok(Reply::Bulk(Some(bytes)))
                }
            },
            "*" => match length(rest)? {
                None => Ok(Reply::Array(None)),
                Some(len) => (0..len)
                    .map(|_| self.read())
                    .collect::<Result<_, _>>()
                    .map(|items| Reply::Array(Some(items))),
            },
            _ => Err(format!("an unknown reply {line:?}")),
        }
    }

    /// One `\r\n`-terminated line, never empty.
    fn line(&mut self) -> Result<String, String> {
        let mut line = String::new();
        match self.stream.read_line(&mut line) {
            Ok(0) => return Err("a closed connection".to_owned()),
            Ok(_) => {}
            Err(e) => return Err(format!("an I/O error: {e}")),
        }
        let line = line.trim_end_matches(['\r', '\n']);
        if line.is_empty() {
            return Err("an empty line".to_owned());
        }
        Ok(line.to_owned())
    }
}

/// The length of a bulk or array header; `None` for `-1` (nil).
fn length(text: &str) -> Result<Option<usize>, String> {
    if text == "-1" {
        return Ok(None);
    }
    match text.parse::<usize>() {
        Ok(len) if len <= MAX_BULK => Ok(Some(len)),
        _ => Err(format!("a bad length {text:?}")),
    }
}

/// Opens a connection (authenticated with `password` when there is one),
/// sends one command and returns its reply.
pub(crate) fn call<S: AsRef<[u8]>>(
    port: u16,
    password: Option<&str>,
    args: &[S],
) -> Result<Reply, String> {
    Conn::open(port, password)?.call(args)
}

/// The value of `field` in an `INFO`-style reply (`field:value` lines).
pub(crate) fn info_field<'a>(info: &'a str, field: &str) -> Option<&'a str> {
    info.lines().find_map(|line| {
        line.strip_prefix(field)
            .and_then(|rest| rest.strip_prefix(':'))
            .map(str::trim)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_fields_are_found_by_exact_name() {
        let info = "# Cluster\r\ncluster_state:ok\r\ncluster_slots_ok:16384\r\n";
        assert_eq!(info_field(info, "cluster_state"), Some("ok"));
        assert_eq!(info_field(info, "cluster_slots_ok"), Some("16384"));
        assert_eq!(info_field(info, "cluster_slots"), None);
    }

    #[test]
    fn lengths_accept_nil_and_reject_garbage() {
        assert_eq!(length("-1"), Ok(None));
        assert_eq!(length("3"), Ok(Some(3)));
        assert!(length("x").is_err());
        assert!(length("-2").is_err());
    }
}
