//! The command lines of a [`RedisSentinel`](super::RedisSentinel)'s
//! processes, and the configuration file of its sentinels.

use std::path::Path;

use super::SERVICE;
use crate::node::{self, Node};

/// The command line of a data node. Every node announces 127.0.0.1, the
/// address the sentinels and clients must use, whatever address its
/// connection to the master comes from. A master refuses writes
/// (`NOREPLICAS`) while no replica has acknowledged it within 2 s, as the
/// docs recommend for a cache on Sentinel: a master that froze or was cut
/// off, and was replaced meanwhile, then loses no acknowledged write when it
/// comes back and is turned into a replica. A `password` protects the node
/// and is what it replicates with (see [`node::data_node_args`]).
pub(super) fn data_args(dir: &Path, ports: &[u16], password: Option<&str>) -> Vec<String> {
    let mut args = node::data_node_args(dir, ports[0], password);
    args.extend(
        [
            "--replica-announce-ip",
            "127.0.0.1",
            "--min-replicas-to-write",
            "1",
            "--min-replicas-max-lag",
            "2",
        ]
        .map(str::to_owned),
    );
    args
}

/// `--replicaof 127.0.0.1 <master>`: the arguments that make a data node a
/// replica.
pub(super) fn replicaof(master: u16) -> [String; 3] {
    [
        "--replicaof".to_owned(),
        "127.0.0.1".to_owned(),
        master.to_string(),
    ]
}

/// Writes a sentinel's configuration file and returns its command line.
///
/// With the data nodes' `password`, the sentinel authenticates to them with
/// it (`sentinel auth-pass`); the sentinel itself stays open, as clients ask
/// sentinels without credentials.
pub(super) fn sentinel_args(
    dir: &Path,
    port: u16,
    master: u16,
    password: Option<&str>,
) -> Vec<String> {
    let conf = dir.join("sentinel.conf");
    let log = Node::log_path_in(dir);
    // Addresses stay IP literals (resolve-hostnames no): nothing to resolve,
    // nothing to time out on. A 1 s down-after makes the master's death
    // noticed quickly; the 5 s failover timeout bounds a stuck attempt;
    // parallel-syncs 2 lets both replicas follow the new master at once.
    let mut text = format!(
        "port {port}\n\
         bind 127.0.0.1\n\
         protected-mode no\n\
         daemonize no\n\
         dir \"{dir}\"\n\
         logfile \"{log}\"\n\
         sentinel resolve-hostnames no\n\
         sentinel announce-hostnames no\n\
         sentinel monitor {SERVICE} 127.0.0.1 {master} 2\n\
         sentinel down-after-milliseconds {SERVICE} 1000\n\
         sentinel failover-timeout {SERVICE} 5000\n\
         sentinel parallel-syncs {SERVICE} 2\n",
        dir = dir.display(),
        log = log.display(),
    );
    if let Some(password) = password {
        // After `sentinel monitor`, which declares the service it is for.
        text.push_str(&format!(
            "sentinel auth-pass {SERVICE} {}\n",
            quoted(password)
        ));
    }
    std::fs::write(&conf, text).unwrap_or_else(|e| panic!("cannot write {}: {e}", conf.display()));
    vec![conf.display().to_string(), "--sentinel".to_owned()]
}

/// `text` as a double-quoted string of a Redis configuration file, which
/// reads `\\`, `\"` and `\xHH` escapes inside quotes: any password survives.
fn quoted(text: &str) -> String {
    let mut quoted = String::from("\"");
    for byte in text.bytes() {
        match byte {
            b'\\' | b'"' => {
                quoted.push('\\');
                quoted.push(char::from(byte));
            }
            b' '..=b'~' => quoted.push(char::from(byte)),
            _ => quoted.push_str(&format!("\\x{byte:02x}")),
        }
    }
    quoted.push('"');
    quoted
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_escapes_what_the_config_parser_unescapes() {
        assert_eq!(quoted("s3cret"), r#""s3cret""#);
        assert_eq!(quoted(r#"a "b" \c"#), r#""a \"b\" \\c""#);
        assert_eq!(quoted("é\t"), r#""\xc3\xa9\x09""#);
    }
}
