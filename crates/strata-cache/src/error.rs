//! The one error type of Strata: an opaque [`Error`] with a [`ErrorKind`].
//!
//! Every backend maps its own failures onto these kinds, so callers can decide
//! what to do (retry, fall back to the database, fix their options) without
//! knowing which backend is behind a `dyn DistributedCache`.

use std::error::Error as StdError;
use std::fmt;
use std::sync::Arc;

/// A `Result` whose error is Strata's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong, in terms a caller can act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The backend cannot be reached (down, refusing connections, still connecting).
    Unavailable,
    /// The backend did not answer within the operation timeout.
    Timeout,
    /// The backend refused the credentials (wrong user or password).
    Authentication,
    /// The entry options are not valid (an expiration in the past, a zero duration...).
    InvalidOptions,
    /// The key is not acceptable (empty, or longer than a configured limit).
    InvalidKey,
    /// The value is larger than the backend or a configured limit accepts.
    PayloadTooLarge,
    /// A value could not be encoded, or stored bytes could not be decoded.
    Serialization,
    /// The factory of a get-or-create call failed; its error is the
    /// [`source`](StdError::source), which can be downcast to the factory's type.
    Factory,
    /// Any other failure reported by the backend.
    Backend,
}

impl ErrorKind {
    /// A short, stable, lower-case name of the kind, fit for logs and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Authentication => "authentication",
            ErrorKind::InvalidOptions => "invalid_options",
            ErrorKind::InvalidKey => "invalid_key",
            ErrorKind::PayloadTooLarge => "payload_too_large",
            ErrorKind::Serialization => "serialization",
            ErrorKind::Factory => "factory",
            ErrorKind::Backend => "backend",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A Strata error: a [`kind`](Error::kind), a message that says how to fix the
/// problem, and optionally the underlying cause as [`source`](StdError::source).
///
/// Cloning is cheap (the error is shared): one failed factory run hands the
/// same error to every caller that waited on it. An `Error` is one pointer
/// wide, so a `Result<T>` is barely larger than `T` on the hit path.
#[derive(Clone)]
pub struct Error(Arc<Details>);

#[derive(Clone)]
struct Details {
    kind: ErrorKind,
    message: String,
    source: Option<Arc<dyn StdError + Send + Sync + 'static>>,
}

impl Error {
    /// Creates an error of `kind` with a message for the user.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self(Arc::new(Details {
            kind,
            message: message.into(),
            source: None,
        }))
    }

    /// Attaches the underlying cause, reachable through [`StdError::source`].
    #[must_use]
    pub fn with_source(mut self, source: impl StdError + Send + Sync + 'static) -> Self {
        Arc::make_mut(&mut self.0).source = Some(Arc::new(source));
        self
    }

    /// What kind of failure this is.
    pub fn kind(&self) -> ErrorKind {
        self.0.kind
    }

    /// The message, without the kind or the source.
    pub fn message(&self) -> &str {
        &self.0.message
    }

    /// True when the backend did not answer in time.
    pub fn is_timeout(&self) -> bool {
        self.0.kind == ErrorKind::Timeout
    }

    /// True when the backend could not be reached or did not answer in time:
    /// the failures a caller should ride out by falling back to the source of truth.
    pub fn is_unavailable(&self) -> bool {
        matches!(self.0.kind, ErrorKind::Unavailable | ErrorKind::Timeout)
    }

    /// Wraps the error of a failed factory; the message names the key. Takes
    /// whatever `?` produces in an application: any `std::error::Error`, a
    /// `Box<dyn Error + Send + Sync>`, an `anyhow::Error`, a `String`.
    pub fn factory(key: &str, source: impl Into<Box<dyn StdError + Send + Sync>>) -> Self {
        let mut error = Self::new(
            ErrorKind::Factory,
            format!("the factory for {key:?} failed"),
        );
        Arc::make_mut(&mut error.0).source = Some(Arc::from(source.into()));
        error
    }

    /// The factory's own error, when this is an [`ErrorKind::Factory`] error
    /// whose factory failed with an `E`: get your own error type back (a "not
    /// found" to turn into a 404, say) without walking the source chain.
    ///
    /// # Example
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// use strata_cache::{HybridCache, HybridEntryOptions};
    ///
    /// #[derive(Debug)]
    /// struct NotFound;
    /// impl std::fmt::Display for NotFound {
    ///     fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
    ///         f.write_str("no such product")
    ///     }
    /// }
    /// impl std::error::Error for NotFound {}
    ///
    /// let cache = HybridCache::builder().build();
    /// let error = cache
    ///     .get_or_create("product:404", &HybridEntryOptions::new(), |_| async {
    ///         Err::<String, _>(NotFound)
    ///     })
    ///     .await
    ///     .unwrap_err();
    /// assert!(error.factory_error::<NotFound>().is_some());
    /// # });
    /// ```
    pub fn factory_error<E: StdError + 'static>(&self) -> Option<&E> {
        if self.0.kind != ErrorKind::Factory {
            return None;
        }
        self.0.source.as_deref()?.downcast_ref::<E>()
    }

    pub(crate) fn invalid_options(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidOptions, message)
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Error");
        d.field("kind", &self.0.kind)
            .field("message", &self.0.message);
        if let Some(source) = &self.0.source {
            d.field("source", source);
        }
        d.finish()
    }
}

/// The kind and the message. The source is not repeated here: it is
/// [`source`](StdError::source), which error reporters (`anyhow`'s `{:#}`,
/// `tracing`'s error fields) print after this.
impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.0.kind, self.0.message)
    }
}

impl StdError for Error {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.0
            .source
            .as_deref()
            .map(|s| s as &(dyn StdError + 'static))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_kind_and_message_and_the_source_follows() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let err =
            Error::new(ErrorKind::Unavailable, "redis at 127.0.0.1:1 is down").with_source(io);
        assert_eq!(err.kind(), ErrorKind::Unavailable);
        assert!(err.is_unavailable());
        assert!(!err.is_timeout());
        assert_eq!(err.to_string(), "unavailable: redis at 127.0.0.1:1 is down");
        assert_eq!(
            StdError::source(&err).map(ToString::to_string).as_deref(),
            Some("refused")
        );
        assert_eq!(std::mem::size_of::<Error>(), std::mem::size_of::<usize>());
    }

    #[derive(Debug)]
    struct NotFound;

    impl fmt::Display for NotFound {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("not found")
        }
    }

    impl StdError for NotFound {}

    #[test]
    fn a_factory_error_gives_back_its_own_type() {
        let err = Error::factory("k", NotFound);
        assert!(err.factory_error::<NotFound>().is_some());
        assert!(err.factory_error::<std::io::Error>().is_none());
        let boxed: Box<dyn StdError + Send + Sync> = "no row".into();
        let err = Error::factory("k", boxed);
        assert_eq!(
            StdError::source(&err).map(ToString::to_string).as_deref(),
            Some("no row")
        );
        let other = Error::new(ErrorKind::Timeout, "slow").with_source(NotFound);
        assert!(
            other.factory_error::<NotFound>().is_none(),
            "only factory errors"
        );
    }
}
