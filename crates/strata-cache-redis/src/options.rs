//! [`RedisCacheOptions`]: where Redis is and how long to wait for it.
//!
//! Cache-wide settings only; per-entry expiration is `strata_cache::EntryOptions`.
//! Every default lives here, as a documented constant. The options turn into
//! an endpoint (one server, a cluster's seeds, or sentinels and a service) in
//! one place, `RedisCacheOptions::endpoint`, which also forces the settings
//! Strata depends on (RESP3, `TCP_NODELAY`).

use std::fmt;
use std::time::Duration;

use redis::io::tcp::TcpSettings;
use redis::sentinel::SentinelNodeConnectionInfo;
use redis::{ConnectionInfo, IntoConnectionInfo, ProtocolVersion};
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
    /// The URL is one of (each also as `rediss` for TLS, certificates checked
    /// against the system's roots):
    ///
    /// - `redis://[[user]:password@]host[:port][/db]`: one server;
    /// - `redis+cluster://[[user]:password@]host:port[,host:port...]`: a Redis
    ///   Cluster, given by some of its nodes (the others are discovered);
    /// - `redis+sentinel://[[user]:password@]host[:port][,...]/service[/db]`:
    ///   the master the sentinels name for `service` (sentinels listen on
    ///   26379 unless a port is given; they are asked without credentials,
    ///   which are the data nodes').
    ///
    /// The port defaults to 6379 and the database to 0 (a cluster has only
    /// 0). Percent-encode special characters in the password. The URL is
    /// checked when the cache is built.
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

    /// Parses and checks the options, and returns where to connect and a
    /// password-free name of the deployment for messages.
    pub(crate) fn endpoint(&self) -> Result<(Endpoint, String)> {
        if self.connect_timeout.is_zero() || self.operation_timeout.is_zero() {
            return Err(Error::new(
                ErrorKind::InvalidOptions,
                "a Redis timeout is zero: give the connect and operation timeouts \
                 a positive duration",
            ));
        }
        let (scheme, rest) = self.url.split_once("://").unwrap_or(("", &self.url));
        let (base, topology) = scheme.split_once('+').unwrap_or((scheme, ""));
        if !matches!(base, "redis" | "rediss") || !matches!(topology, "" | "cluster" | "sentinel") {
            return Err(invalid_url("unknown scheme"));
        }
        if cfg!(not(feature = "tls")) && base == "rediss" {
            return Err(Error::new(
                ErrorKind::InvalidOptions,
                "a rediss:// URL needs TLS: enable the `tls` feature of strata-cache-redis \
                 (on by default)",
            ));
        }
        #[cfg(feature = "tls")]
        if base == "rediss" {
            install_crypto_provider();
        }
        match topology {
            "" => {
                let info = node_info(&self.url)?;
                let target = format!("{base}://{}/{}", info.addr(), info.redis_settings().db());
                Ok((Endpoint::Single(info), target))
            }
            "cluster" => {
                let (userinfo, hosts, path) = split_authority(rest)?;
                if !matches!(path, "" | "0") {
                    return Err(invalid_url("a cluster has only database 0"));
                }
                let seeds = hosts
                    .iter()
                    .map(|host| node_info(&format!("{base}://{userinfo}{host}")))
                    .collect::<Result<Vec<_>>>()?;
                let target = format!("{base}+cluster://{}", hosts.join(","));
                Ok((Endpoint::Cluster(seeds), target))
            }
            _ => {
                let (userinfo, hosts, path) = split_authority(rest)?;
                let (service, db) = path.split_once('/').unwrap_or((path, ""));
                if service.is_empty() {
                    return Err(invalid_url("the sentinel URL names no service"));
                }
                // The credentials and the database are the data nodes'; the
                // sentinels are asked without them.
                let node = node_info(&format!("{base}://{userinfo}sentinel-master/{db}"))?;
                let sentinels = hosts
                    .iter()
                    .map(|host| {
                        let host = if host.rsplit_once(':').is_some_and(|(_, p)| !p.contains(']')) {
                            (*host).to_owned()
                        } else {
                            format!("{host}:{DEFAULT_SENTINEL_PORT}")
                        };
                        node_info(&format!("{base}://{host}"))
                    })
                    .collect::<Result<Vec<_>>>()?;
                let mut node_settings = SentinelNodeConnectionInfo::default()
                    .set_redis_connection_info(node.redis_settings().clone())
                    .set_tcp_settings(node.tcp_settings().clone());
                if base == "rediss" {
                    node_settings = node_settings.set_tls_mode(redis::TlsMode::Secure);
                }
                let target = format!(
                    "{base}+sentinel://{}/{service}/{}",
                    hosts.join(","),
                    node.redis_settings().db()
                );
                Ok((
                    Endpoint::Sentinel {
                        sentinels,
                        service: service.to_owned(),
                        node: node_settings,
                        master: node,
                    },
                    target,
                ))
            }
        }
    }
}

/// Where the cache connects, parsed from the URL.
pub(crate) enum Endpoint {
    /// One server.
    Single(ConnectionInfo),
    /// A Redis Cluster, known by some of its nodes.
    Cluster(Vec<ConnectionInfo>),
    /// The master of `service`, as the sentinels name it.
    Sentinel {
        sentinels: Vec<ConnectionInfo>,
        service: String,
        node: SentinelNodeConnectionInfo,
        /// The data nodes' settings (credentials, database, TLS) with a
        /// placeholder address: a master the sentinels announced gets them.
        master: ConnectionInfo,
    },
}

/// The port of a sentinel written without one.
const DEFAULT_SENTINEL_PORT: u16 = 26379;

fn invalid_url(why: &str) -> Error {
    Error::new(
        ErrorKind::InvalidOptions,
        format!(
            "the Redis URL is not valid ({why}): expected \
             redis://[user:password@]host[:port][/db], \
             redis+cluster://[user:password@]host:port[,host:port...] or \
             redis+sentinel://[user:password@]host:port[,host:port...]/service[/db], \
             each with rediss for TLS"
        ),
    )
}

/// `userinfo@` (or empty), the comma-separated hosts, and the path without its
/// leading slash, of a cluster or sentinel URL's part after `://`.
fn split_authority(rest: &str) -> Result<(&str, Vec<&str>, &str)> {
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let (userinfo, hosts) = match authority.rfind('@') {
        Some(at) => (&authority[..=at], &authority[at + 1..]),
        None => ("", authority),
    };
    let hosts: Vec<&str> = hosts.split(',').map(str::trim).collect();
    if hosts.iter().any(|h| h.is_empty()) {
        return Err(invalid_url("an empty host in the list"));
    }
    Ok((userinfo, hosts, path.trim_end_matches('/')))
}

/// One node's settings, with those Strata depends on forced.
fn node_info(url: &str) -> Result<ConnectionInfo> {
    let info = url
        .into_connection_info()
        .map_err(|e| invalid_url(e.detail().unwrap_or("unparsable")))?;
    // RESP3: the connection reports its own loss (a push), which lets the
    // cache reconnect before the next call fails, and carries pub/sub
    // messages beside commands. Redis 6 or later speaks it.
    let redis = info
        .redis_settings()
        .clone()
        .set_protocol(ProtocolVersion::RESP3);
    // TCP_NODELAY: redis-rs leaves Nagle on; a cache of small values wants
    // every request on the wire at once.
    Ok(info
        .set_redis_settings(redis)
        .set_tcp_settings(TcpSettings::default().set_nodelay(true)))
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
    use redis::ConnectionAddr;

    fn single(url: &str) -> (ConnectionInfo, String) {
        match RedisCacheOptions::new(url).endpoint().unwrap() {
            (Endpoint::Single(info), target) => (info, target),
            _ => panic!("{url} is not a single server"),
        }
    }

    #[test]
    fn parses_user_password_database_and_tls() {
        let (info, target) = single("redis://app:s%40cret@10.0.0.7:6380/3");
        assert_eq!(info.redis_settings().username(), Some("app"));
        assert_eq!(info.redis_settings().password(), Some("s@cret"));
        assert_eq!(info.redis_settings().db(), 3);
        assert_eq!(info.redis_settings().protocol(), ProtocolVersion::RESP3);
        assert!(info.tcp_settings().nodelay());
        assert_eq!(target, "redis://10.0.0.7:6380/3");

        if cfg!(feature = "tls") {
            let (info, target) = single("rediss://cache.example:6390");
            assert!(matches!(info.addr(), ConnectionAddr::TcpTls { .. }));
            assert_eq!(target, "rediss://cache.example:6390/0");
        } else {
            let err = RedisCacheOptions::new("rediss://cache.example:6390").endpoint();
            assert_eq!(err.err().map(|e| e.kind()), Some(ErrorKind::InvalidOptions));
        }
    }

    #[test]
    fn parses_a_cluster_with_credentials_for_every_seed() {
        let options = RedisCacheOptions::new("redis+cluster://app:pw@10.0.0.1:7000,10.0.0.2:7001/");
        let Ok((Endpoint::Cluster(seeds), target)) = options.endpoint() else {
            panic!("not a cluster");
        };
        assert_eq!(target, "redis+cluster://10.0.0.1:7000,10.0.0.2:7001");
        let addrs: Vec<String> = seeds.iter().map(|s| s.addr().to_string()).collect();
        assert_eq!(addrs, ["10.0.0.1:7000", "10.0.0.2:7001"]);
        for seed in &seeds {
            assert_eq!(seed.redis_settings().username(), Some("app"));
            assert_eq!(seed.redis_settings().password(), Some("pw"));
            assert_eq!(seed.redis_settings().protocol(), ProtocolVersion::RESP3);
            assert!(seed.tcp_settings().nodelay());
        }
    }

    #[test]
    fn parses_sentinels_service_and_database() {
        let options = RedisCacheOptions::new("redis+sentinel://:pw@s1:5000,s2/orders/2");
        let Ok((
            Endpoint::Sentinel {
                sentinels, service, ..
            },
            target,
        )) = options.endpoint()
        else {
            panic!("not a sentinel deployment");
        };
        assert_eq!(service, "orders");
        assert_eq!(target, "redis+sentinel://s1:5000,s2/orders/2");
        let addrs: Vec<String> = sentinels.iter().map(|s| s.addr().to_string()).collect();
        // A sentinel written without a port is on 26379.
        assert_eq!(addrs, ["s1:5000", "s2:26379"]);
        // The password is the data nodes', not the sentinels'.
        assert!(
            sentinels
                .iter()
                .all(|s| s.redis_settings().password().is_none())
        );
    }

    #[test]
    fn bad_urls_and_timeouts_are_invalid_options() {
        for options in [
            RedisCacheOptions::new("http://localhost"),
            RedisCacheOptions::new("not a url"),
            RedisCacheOptions::new("redis+mesh://a:1"),
            RedisCacheOptions::new("redis+cluster://a:1,,b:2"),
            RedisCacheOptions::new("redis+cluster://a:1,b:2/3"),
            RedisCacheOptions::new("redis+sentinel://a:1,b:2"),
            RedisCacheOptions::new("redis+sentinel://a:1,b:2/"),
            RedisCacheOptions::default().with_operation_timeout(Duration::ZERO),
            RedisCacheOptions::default().with_connect_timeout(Duration::ZERO),
        ] {
            let err = options.endpoint().err().map(|e| e.kind());
            assert_eq!(err, Some(ErrorKind::InvalidOptions), "{options:?}");
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
