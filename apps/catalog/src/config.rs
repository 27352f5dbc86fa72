//! [`Config`]: every setting of the service, read from flags and environment
//! variables by clap, with its default documented in `--help`.
//!
//! This module only parses and describes settings; [`crate::app`] acts on them.

use std::fmt;

use clap::{Parser, ValueEnum};

/// The default database: an embedded SQLite file in the working directory,
/// created on first run, so that `cargo run` works with nothing installed.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://catalog.db";

/// The settings of the Catalog service.
///
/// Every field is a flag and an environment variable; the flag wins.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "catalog",
    version,
    about = "The Strata reference Product API: a cached, multi-instance-safe catalog.",
    long_about = None,
    after_help = "Span export to OpenTelemetry (off by default) follows the standard OTEL_* \
                  variables: OTEL_EXPORTER_OTLP_ENDPOINT=http://collector:4318 turns it on."
)]
pub struct Config {
    /// TCP port to listen on (all interfaces).
    #[arg(long, env = "PORT", default_value_t = 8080)]
    pub port: u16,

    /// Database URL: `sqlite://FILE` (created when missing) or
    /// `postgres://USER[:PASSWORD]@HOST:PORT/DB`.
    /// Its value is never printed (`--help` included): it may hold a password.
    #[arg(long, env = "DATABASE_URL", default_value = DEFAULT_DATABASE_URL, hide_env_values = true)]
    pub database_url: String,

    /// Redis URL, `redis://[user:password@]host:port/db` or `rediss://` (TLS).
    /// With CACHE=hybrid it adds Redis as L2 and as the invalidation backplane.
    /// Its value is never printed: it may hold a password.
    #[arg(long, env = "REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<String>,

    /// Caching strategy; see the variants.
    #[arg(long, env = "CACHE", value_enum, default_value_t = CacheMode::Hybrid)]
    pub cache: CacheMode,

    /// Prefix of every cache key in Redis, so that several services or
    /// environments can share one Redis (the article's `InstanceName`).
    #[arg(long, env = "INSTANCE_NAME", default_value = "catalog:")]
    pub instance_name: String,

    /// Bound on one Redis operation, in milliseconds. Past it the call counts
    /// as a cache failure and the database answers.
    #[arg(long, env = "REDIS_TIMEOUT_MS", default_value_t = 500)]
    pub redis_timeout_ms: u64,

    /// Upper bound of the in-process (L1) cache, in MiB.
    #[arg(long, env = "L1_CAPACITY_MB", default_value_t = 64)]
    pub l1_capacity_mb: u64,

    /// Seed 1,000 products when the database is empty.
    #[arg(long, env = "SEED", default_value_t = true, action = clap::ArgAction::Set)]
    pub seed: bool,

    /// Time to receive a request's line and headers, in milliseconds; also
    /// how long an idle keep-alive connection stays open. Past it the
    /// connection is closed without a response.
    #[arg(long, env = "HEADER_TIMEOUT_MS", default_value_t = 10_000)]
    pub header_timeout_ms: u64,

    /// Time to receive a request body once its headers are in, in
    /// milliseconds (past it: 408), and how long a response write may stay
    /// blocked on a client that does not read (past it: disconnected).
    #[arg(long, env = "BODY_TIMEOUT_MS", default_value_t = 10_000)]
    pub body_timeout_ms: u64,

    /// Connections served at once; past it a new connection gets a 503 and
    /// is closed. Keep it under the process's file limit (`ulimit -n`).
    #[arg(long, env = "MAX_CONNECTIONS", default_value_t = 1024)]
    pub max_connections: usize,

    /// On SIGTERM or ctrl-c, how long requests in flight may take to finish,
    /// in milliseconds; then the connections still open are closed.
    #[arg(long, env = "SHUTDOWN_TIMEOUT_MS", default_value_t = 20_000)]
    pub shutdown_timeout_ms: u64,

    /// Log filter, `tracing_subscriber::EnvFilter` syntax: `info`, `warn`,
    /// `info,catalog=debug` (adds a line per cache lookup: hit or miss, and
    /// the key), `debug` (everything, SQL included).
    #[arg(long, env = "LOG", default_value = "info")]
    pub log: String,
}

/// Which caching strategy the service uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CacheMode {
    /// No cache: every request reads the database.
    None,
    /// A per-instance `MemoryDistributedCache` through the typed helpers: the
    /// article's IMemoryCache setup. Fast, but each instance has its own copy,
    /// so writes on one instance leave the others stale until expiry.
    Memory,
    /// `RedisCache` only (no in-process layer): consistent, one network round
    /// trip per read. Requires REDIS_URL.
    Redis,
    /// `HybridCache`: in-process L1; with REDIS_URL also Redis as L2 and as the
    /// backplane that evicts every instance's L1 on a write.
    Hybrid,
}

impl fmt::Display for CacheMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CacheMode::None => "none",
            CacheMode::Memory => "memory",
            CacheMode::Redis => "redis",
            CacheMode::Hybrid => "hybrid",
        })
    }
}

impl Config {
    /// The configuration with every default and no Redis: SQLite `catalog.db`,
    /// hybrid cache (L1 only), port 8080. Tests start from here.
    ///
    /// Built field by field rather than parsed, so that the environment of the
    /// calling process (a `DATABASE_URL` exported for tests) cannot leak in.
    pub fn defaults() -> Self {
        Self {
            port: 8080,
            database_url: DEFAULT_DATABASE_URL.into(),
            redis_url: None,
            cache: CacheMode::Hybrid,
            instance_name: "catalog:".into(),
            redis_timeout_ms: 500,
            l1_capacity_mb: 64,
            seed: true,
            header_timeout_ms: 10_000,
            body_timeout_ms: 10_000,
            max_connections: 1024,
            shutdown_timeout_ms: 20_000,
            log: "info".into(),
        }
    }

    /// Checks combinations that clap cannot express.
    ///
    /// # Errors
    ///
    /// A message that says how to fix the setting: `CACHE=redis` without
    /// `REDIS_URL`, or an empty `INSTANCE_NAME` while Redis is used.
    pub fn validate(&self) -> Result<(), String> {
        if self.cache == CacheMode::Redis && self.redis_url.is_none() {
            return Err(
                "CACHE=redis needs REDIS_URL (for example redis://127.0.0.1:6379); \
                 use CACHE=hybrid or CACHE=memory to run without Redis"
                    .into(),
            );
        }
        if self.redis_url.is_some() && self.instance_name.is_empty() {
            return Err(
                "INSTANCE_NAME is empty: set a prefix such as \"catalog:\" so that keys \
                 of other services sharing this Redis cannot collide"
                    .into(),
            );
        }
        Ok(())
    }

    /// One line describing the effective cache topology, for the start-up log.
    pub fn cache_topology(&self) -> String {
        match (self.cache, self.redis_url.is_some()) {
            (CacheMode::None, _) => "none (every read goes to the database)".into(),
            (CacheMode::Memory, _) => "memory (per-instance, stale across instances)".into(),
            (CacheMode::Redis, _) => "redis (RedisCache only, no L1)".into(),
            (CacheMode::Hybrid, false) => {
                "hybrid: L1 only (set REDIS_URL for L2 + backplane)".into()
            }
            (CacheMode::Hybrid, true) => "hybrid: L1 + Redis L2 + Redis backplane".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use clap::CommandFactory;

    fn clap_default(id: &str) -> String {
        let command = Config::command();
        let arg = command
            .get_arguments()
            .find(|a| a.get_id() == id)
            .unwrap_or_else(|| panic!("no argument {id}"));
        let values: Vec<_> = arg.get_default_values().iter().collect();
        values[0].to_string_lossy().into_owned()
    }

    #[test]
    fn defaults_match_the_clap_defaults() {
        let c = Config::defaults();
        assert_eq!(c.port.to_string(), clap_default("port"));
        assert_eq!(c.database_url, clap_default("database_url"));
        assert_eq!(c.cache.to_string(), clap_default("cache"));
        assert_eq!(c.instance_name, clap_default("instance_name"));
        assert_eq!(c.l1_capacity_mb.to_string(), clap_default("l1_capacity_mb"));
        assert_eq!(
            c.redis_timeout_ms.to_string(),
            clap_default("redis_timeout_ms")
        );
        assert_eq!(c.seed.to_string(), clap_default("seed"));
        assert_eq!(
            c.header_timeout_ms.to_string(),
            clap_default("header_timeout_ms")
        );
        assert_eq!(
            c.body_timeout_ms.to_string(),
            clap_default("body_timeout_ms")
        );
        assert_eq!(
            c.max_connections.to_string(),
            clap_default("max_connections")
        );
        assert_eq!(
            c.shutdown_timeout_ms.to_string(),
            clap_default("shutdown_timeout_ms")
        );
        assert_eq!(c.log, clap_default("log"));
        assert!(c.validate().is_ok());
    }

    #[test]
    fn redis_mode_without_url_is_rejected_with_a_fix() {
        let c = Config {
            cache: CacheMode::Redis,
            ..Config::defaults()
        };
        let err = c.validate().unwrap_err();
        assert!(err.contains("REDIS_URL"), "{err}");
    }

    #[test]
    fn clap_definition_is_consistent() {
        Config::command().debug_assert();
    }
}
