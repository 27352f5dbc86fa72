//! [`Codec`]: how typed values become the bytes a [`DistributedCache`](crate::DistributedCache)
//! stores. [`Json`] is the default (readable in any Redis GUI, shared with .NET
//! services); [`Postcard`] is compact and faster to decode.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::Result;
#[cfg(any(feature = "json", feature = "postcard"))]
use crate::error::{Error, ErrorKind};

/// Turns serde types into bytes and back.
///
/// Each codec has a one-byte [`ID`](Codec::ID), written into the HybridCache
/// envelope so that bytes are never decoded with the wrong codec.
pub trait Codec: Send + Sync + 'static {
    /// The codec's identifier in persisted envelopes. Never reuse a value.
    const ID: u8;
    /// A short name for logs.
    const NAME: &'static str;

    /// Encodes `value`.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Serialization`] when the value cannot be represented (a map
    /// with non-string keys in JSON, for example).
    fn encode<T: Serialize + ?Sized>(&self, value: &T) -> Result<Vec<u8>>;

    /// Decodes bytes written by [`encode`](Codec::encode).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Serialization`] when the bytes are not a valid `T`.
    fn decode<T: DeserializeOwned>(&self, bytes: &[u8]) -> Result<T>;
}

/// JSON through `serde_json`: the default codec (feature `json`).
#[cfg(feature = "json")]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Json;

#[cfg(feature = "json")]
impl Codec for Json {
    const ID: u8 = 1;
    const NAME: &'static str = "json";

    fn encode<T: Serialize + ?Sized>(&self, value: &T) -> Result<Vec<u8>> {
        serde_json::to_vec(value).map_err(|e| encode_error(Self::NAME, e))
    }

    fn decode<T: DeserializeOwned>(&self, bytes: &[u8]) -> Result<T> {
        serde_json::from_slice(bytes).map_err(|e| decode_error::<T>(Self::NAME, e))
    }
}

/// The compact binary format of the `postcard` crate (feature `postcard`).
/// Not self-describing: a changed struct must change its cache keys (or the
/// envelope version).
#[cfg(feature = "postcard")]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Postcard;

#[cfg(feature = "postcard")]
impl Codec for Postcard {
    const ID: u8 = 2;
    const NAME: &'static str = "postcard";

    fn encode<T: Serialize + ?Sized>(&self, value: &T) -> Result<Vec<u8>> {
        postcard::to_stdvec(value).map_err(|e| encode_error(Self::NAME, e))
    }

    fn decode<T: DeserializeOwned>(&self, bytes: &[u8]) -> Result<T> {
        postcard::from_bytes(bytes).map_err(|e| decode_error::<T>(Self::NAME, e))
    }
}

#[cfg(any(feature = "json", feature = "postcard"))]
fn encode_error(codec: &str, e: impl std::error::Error + Send + Sync + 'static) -> Error {
    Error::new(
        ErrorKind::Serialization,
        format!("the value cannot be encoded as {codec}; check its Serialize implementation"),
    )
    .with_source(e)
}

#[cfg(any(feature = "json", feature = "postcard"))]
fn decode_error<T>(codec: &str, e: impl std::error::Error + Send + Sync + 'static) -> Error {
    Error::new(
        ErrorKind::Serialization,
        format!(
            "the cached bytes are not a valid {} in {codec}; \
             if the type changed, change its cache keys",
            std::any::type_name::<T>()
        ),
    )
    .with_source(e)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Sample {
        id: u32,
        name: String,
        tags: Vec<String>,
    }

    fn sample() -> Sample {
        Sample {
            id: 7,
            name: "Ünïcode".into(),
            tags: vec!["a".into(), String::new()],
        }
    }

    fn round_trip<C: Codec>(codec: C) {
        let bytes = codec.encode(&sample()).unwrap();
        assert_eq!(codec.decode::<Sample>(&bytes).unwrap(), sample());
        let err = codec.decode::<Sample>(&[0xff, 0x00, 0x13]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Serialization);
        assert!(err.message().contains("Sample"), "{err}");
    }

    #[test]
    fn json_round_trips_and_rejects_garbage() {
        round_trip(Json);
        assert_eq!(
            Json.encode(&sample()).unwrap(),
            r#"{"id":7,"name":"Ünïcode","tags":["a",""]}"#.as_bytes()
        );
    }

    #[test]
    fn postcard_round_trips_and_rejects_garbage() {
        round_trip(Postcard);
    }
}
