//! Maps redis-rs failures onto Strata's [`ErrorKind`]s, with messages that say
//! what to check.
//!
//! One place decides what a Redis error means to a caller: credentials
//! ([`ErrorKind::Authentication`]), a server out of reach
//! ([`ErrorKind::Unavailable`]) or anything else ([`ErrorKind::Backend`]).
//! Messages name the server as `redis://host:port/db`, never with the password.

use std::time::Duration;

use redis::{RedisError, ServerErrorKind};
use strata_cache::{Error, ErrorKind};

/// Turns a redis-rs error from talking to `target` into a Strata error.
pub(crate) fn from_redis(err: RedisError, target: &str) -> Error {
    // A refused transaction reports EXECABORT; the reason is in its parts.
    let out_of_memory = err
        .clone()
        .into_server_errors()
        .is_some_and(|errors| errors.iter().any(|(_, e)| e.code() == "OOM"));
    // A cluster connection whose seeds all refused the credentials reports
    // one I/O error, the nodes' answers only in its text.
    let refused = if err.code().is_none() && err.is_io_error() {
        let text = err.to_string();
        ["WRONGPASS", "NOAUTH"]
            .into_iter()
            .find(|code| text.contains(code))
    } else {
        None
    };
    let code = if out_of_memory {
        "OOM"
    } else if let Some(code) = refused {
        code
    } else {
        err.code().unwrap_or("")
    };
    let (kind, message) = match (err.kind(), code) {
        (redis::ErrorKind::AuthenticationFailed, _) | (_, "WRONGPASS") => (
            ErrorKind::Authentication,
            format!(
                "Redis at {target} refused the credentials: check the user and password \
                 in the URL (redis://user:password@host:port/db)"
            ),
        ),
        (_, "NOAUTH") => (
            ErrorKind::Authentication,
            format!(
                "Redis at {target} requires a password: put it in the URL \
                 (redis://:password@host:port/db)"
            ),
        ),
        (redis::ErrorKind::Server(ServerErrorKind::NoPerm), _) | (_, "NOPERM") => (
            ErrorKind::Authentication,
            format!(
                "the Redis user may not run this command on {target}: grant it \
                 +@hash +@keyspace +@scripting +@pubsub in the ACL"
            ),
        ),
        (_, "OOM") => (
            ErrorKind::Backend,
            format!(
                "Redis at {target} is out of memory and refuses writes: give it more \
                 maxmemory, or let it evict (maxmemory-policy volatile-lru)"
            ),
        ),
        (_, "NOTSTAMP") => (
            ErrorKind::Serialization,
            format!(
                "the key on {target} holds a value that is not a stamp: tag and clear \
                 records need keys of their own"
            ),
        ),
        (redis::ErrorKind::RESP3NotSupported, _) => (
            ErrorKind::Backend,
            format!(
                "Redis at {target} does not support RESP3 (the HELLO command): \
                 Strata needs Redis 6 or later"
            ),
        ),
        (
            redis::ErrorKind::MasterNameNotFoundBySentinel
            | redis::ErrorKind::NoValidReplicasFoundBySentinel,
            _,
        ) => (
            ErrorKind::Unavailable,
            format!(
                "the sentinels of {target} name no reachable master (a failover may be                  under way); reconnecting in the background: check the service name"
            ),
        ),
        (
            redis::ErrorKind::Server(ServerErrorKind::ClusterDown | ServerErrorKind::TryAgain)
            | redis::ErrorKind::ClusterConnectionNotFound,
            _,
        ) => (
            ErrorKind::Unavailable,
            format!(
                "the Redis Cluster at {target} does not serve this key's slot now (a                  failover or a resharding may be under way)"
            ),
        ),
        (redis::ErrorKind::Server(ServerErrorKind::BusyLoading), _) => (
            ErrorKind::Unavailable,
            format!("Redis at {target} is loading its data set; retry in a moment"),
        ),
        _ if err.is_io_error() || err.is_connection_dropped() || err.is_connection_refusal() => (
            ErrorKind::Unavailable,
            format!(
                "Redis at {target} cannot be reached; reconnecting in the background: \
                 check that it runs and that the URL's host and port are right"
            ),
        ),
        _ => (ErrorKind::Backend, format!("Redis at {target} failed")),
    };
    Error::new(kind, message).with_source(err)
}

/// The error of an operation that ran out of time.
pub(crate) fn timeout(target: &str, after: Duration) -> Error {
    Error::new(
        ErrorKind::Timeout,
        format!(
            "Redis at {target} did not answer within the operation timeout of {after:?}: \
             check its load and the network, or raise RedisCacheOptions::with_operation_timeout"
        ),
    )
}

/// The error of a connection attempt that ran out of time.
pub(crate) fn connect_timeout(target: &str, after: Duration) -> Error {
    Error::new(
        ErrorKind::Unavailable,
        format!(
            "could not connect to Redis at {target} within {after:?}; retrying in the \
             background: check the host, port and firewall, or raise \
             RedisCacheOptions::with_connect_timeout"
        ),
    )
}

/// The error of a call made while the connection is down.
pub(crate) fn lost(target: &str) -> Error {
    Error::new(
        ErrorKind::Unavailable,
        format!("the connection to Redis at {target} was lost; reconnecting in the background"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_errors_are_unavailable_and_keep_their_source() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let err = from_redis(RedisError::from(io), "redis://h:1/0");
        assert_eq!(err.kind(), ErrorKind::Unavailable);
        assert!(err.message().contains("redis://h:1/0"));
        assert!(std::error::Error::source(&err).is_some());
    }

    #[test]
    fn auth_failures_are_authentication() {
        let err = RedisError::from((redis::ErrorKind::AuthenticationFailed, "bad"));
        assert_eq!(from_redis(err, "t").kind(), ErrorKind::Authentication);
    }
}
