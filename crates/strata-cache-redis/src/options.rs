//! [`RedisCacheOptions`]: where Redis is and how long to wait for it.
//!
//! Cache-wide settings only; per-entry expiration is `strata_cache::EntryOptions`.
//! Every default lives here, as a documented constant. The options turn into a
//! `redis::ConnectionInfo` in one place, [`RedisCacheOptions::connection_info`],
//! which also forces the settings Strata depends on (RESP3, `TCP_NODELAY`).

use std::fmt;
use std::time::Duration;

use redis::io::tcp::TcpSettings;
use redis::{ConnectionAddr, ConnectionInfo, IntoConnectionInfo, ProtocolVersion};
use strata_cache::{Error, ErrorKind, Result};

/// Default URL: a Redis on this machine, database 0.
pub const DEFAULT_URL: &str = "redis://127.0.0.1:6379/0";
/// Default bound on one connection attempt (TCP, TLS and handshake): 5 s, as
/// StackExchange.Redis' `connectTimeout`.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Default bound on one cache operation, from the call to the answer: 2 s.
/// A healthy Redis answers in well under a millisecond; a cache that waits
/// longer than this costs its callers more than a miss would.
pub const DEFAULT_OPERATION_TIMEOUT: Duration = Duration::from_secs(2);

/// Settings of a [`RedisCache`](crate::RedisCache) or
/// [`RedisBackplane`](crate::RedisBackplane).
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use strata_cache_redis::RedisCacheOptions;
///
/// let options = RedisCacheOptions::new("redis://:secret@cache.internal:6379/2")
///     .with_instance_name("catalog:")
///     .with_operation_timeout(Duration::from_millis(500));
/// assert_eq!(options.instance_name(), "catalog:");
/// // The password never shows in logs.
/// assert!(!format!("{options:?}").contains("secret"));
/// ```
#[derive(Clone)]
#[must_use]
pub struct RedisCacheOptions {
    url: String,
    instance_name: String,
    connect_timeout: Duration,
    operation_timeout: Duration,
}

impl Default for RedisCacheOptions {
    /// [`DEFAULT_URL`], no instance name, the default timeouts.
    fn default() -> Self {
        Self::new(DEFAULT_URL)
    }
}

impl RedisCacheOptions {
    /// Options for the Redis at `url`, with the default timeouts and no
    /// instance name.
    ///
    /// The URL is `redis://[[user]:password@]host[:port][/db]`, or `rediss://`
    /// for TLS (certificates checked against the system's roots). The port
    /// defaults to 6379 and the database to 0. Percent-encode special
    /// characters in the password. The URL is checked when the cache is built.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            instance_name: String::new(),
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            operation_timeout: DEFAULT_OPERATION_TIMEOUT,
        }
    }

    /// A prefix put before every key (`InstanceName` in .NET), so that services
    /// sharing a Redis do not see each other's entries. Default: empty.
    ///
    /// Use the same value as a .NET service to share its entries.
    pub fn with_instance_name(mut self, instance_name: impl Into<String>) -> Self {
        self.instance_name = instance_name.into();
        self
    }

    /// Bound on one connection attempt. Default: [`DEFAULT_CONNECT_TIMEOUT`].
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Bound on one operation, waiting for a connection included. Default:
    /// [`DEFAULT_OPERATION_TIMEOUT`].
    pub fn with_operation_timeout(mut self, timeout: Duration) -> Self {
        self.operation_timeout = timeout;
        self
    }

    /// The URL as given (it may hold a password: do not log it).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The key prefix.
    pub fn instance_name(&self) -> &str {
        &self.instance_name
    }

    /// The bound on one connection attempt.
    pub fn connect_timeout(&self) -> Duration {
        self.connect_timeout
    }

    /// The bound on one operation.
    pub fn operation_timeout(&self) -> Duration {
        self.operation_timeout
    }

    /// Parses and checks the options, and returns the connection settings and
    /// a password-free name of the server for messages.
    pub(crate) fn connection_info(&self) -> Result<(ConnectionInfo, String)> {
        if self.connect_timeout.is_zero() || self.operation_timeout.is_zero() {
            return Err(Error::new(
                ErrorKind::InvalidOptions,
                "a Redis timeout is zero: give the connect and operation timeouts \
                 a positive duration",
            ));
        }
        if cfg!(not(feature = "tls")) && self.url.starts_with("rediss://") {
            return Err(Error::new(
                ErrorKind::InvalidOptions,
                "a rediss:// URL needs TLS: enable the `tls` feature of strata-cache-redis \
                 (on by default)",
            ));
        }
        let info = self.url.as_str().into_connection_info().map_err(|e| {
            Error::new(
                ErrorKind::InvalidOptions,
                format!(
                    "the Redis URL is not valid ({}): expected \
                     redis://[user:password@]host[:port][/db] or rediss://... for TLS",
                    e.detail().unwrap_or("unparsable")
                ),
            )
        })?;
        let target = match info.addr() {
            ConnectionAddr::TcpTls { .. } => {
                format!("rediss://{}/{}", info.addr(), info.redis_settings().db())
            }
            addr => format!("redis://{addr}/{}", info.redis_settings().db()),
        };
        #[cfg(feature = "tls")]
        if matches!(info.addr(), ConnectionAddr::TcpTls { .. }) {
            install_crypto_provider();
        }
        // RESP3: the connection reports its own loss (a push), which lets the
        // cache reconnect before the next call fails, and carries pub/sub
        // messages beside commands. Redis 6 or later speaks it.
        let redis = info
            .redis_settings()
            .clone()
            .set_protocol(ProtocolVersion::RESP3);
        // TCP_NODELAY: redis-rs leaves Nagle on; a cache of small values wants
        // every request on the wire at once.
        let info = info
            .set_redis_settings(redis)
            .set_tcp_settings(TcpSettings::default().set_nodelay(true));
        Ok((info, target))
    }
}

#[cfg(feature = "tls")]
/// rustls needs a process-wide crypto provider. We compile in ring only, but
/// another crate may enable a second one, and then rustls refuses to guess:
/// install ring unless the application already chose.
fn install_crypto_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // Losing a race with another installer is fine: one provider is set.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}

/// Lets [`RedisCache::new`](crate::RedisCache::new) and
/// [`RedisBackplane::new`](crate::RedisBackplane::new) take options by value
/// or by reference.
impl AsRef<RedisCacheOptions> for RedisCacheOptions {
    fn as_ref(&self) -> &RedisCacheOptions {
        self
    }
}

impl fmt::Debug for RedisCacheOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisCacheOptions")
            .field("url", &redact(&self.url))
            .field("instance_name", &self.instance_name)
            .field("connect_timeout", &self.connect_timeout)
            .field("operation_timeout", &self.operation_timeout)
            .finish()
    }
}

/// The URL with its user-info part (`user:password@`) replaced by `***@`.
fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return "<not a URL>".to_owned();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}://***{}", &rest[at..]),
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_user_password_database_and_tls() {
        let options = RedisCacheOptions::new("redis://app:s%40cret@10.0.0.7:6380/3");
        let (info, target) = options.connection_info().unwrap();
        assert_eq!(info.redis_settings().username(), Some("app"));
        assert_eq!(info.redis_settings().password(), Some("s@cret"));
        assert_eq!(info.redis_settings().db(), 3);
        assert_eq!(info.redis_settings().protocol(), ProtocolVersion::RESP3);
        assert!(info.tcp_settings().nodelay());
        assert_eq!(target, "redis://10.0.0.7:6380/3");

        let tls = RedisCacheOptions::new("rediss://cache.example:6390").connection_info();
        if cfg!(feature = "tls") {
            let (info, target) = tls.unwrap();
            assert!(matches!(info.addr(), ConnectionAddr::TcpTls { .. }));
            assert_eq!(target, "rediss://cache.example:6390/0");
        } else {
            assert_eq!(tls.unwrap_err().kind(), ErrorKind::InvalidOptions);
        }
    }

    #[test]
    fn bad_urls_and_timeouts_are_invalid_options() {
        for options in [
            RedisCacheOptions::new("http://localhost"),
            RedisCacheOptions::new("not a url"),
            RedisCacheOptions::default().with_operation_timeout(Duration::ZERO),
            RedisCacheOptions::default().with_connect_timeout(Duration::ZERO),
        ] {
            let err = options.connection_info().unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidOptions, "{options:?}");
        }
    }

    #[test]
    fn debug_hides_the_password() {
        let options = RedisCacheOptions::new("redis://user:hunter2@host:1/0");
        let shown = format!("{options:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("redis://***@host:1/0"), "{shown}");
        assert_eq!(redact("redis://host/0"), "redis://host/0");
    }
}
