//! Which [`Codec`] a HybridCache writes with, as a value (the builder picks one
//! at run time, and an envelope names the codec it was written with, so that
//! entries written by a differently configured instance still decode).

use serde::Serialize;
use serde::de::DeserializeOwned;

#[cfg(feature = "postcard")]
use crate::codec::Postcard;
use crate::codec::{Codec, Json};
use crate::error::{Error, ErrorKind, Result};

/// The codec choice of one cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CodecChoice {
    Json,
    #[cfg(feature = "postcard")]
    Postcard,
}

impl CodecChoice {
    /// The codec id written into envelopes.
    pub(crate) fn id(self) -> u8 {
        match self {
            CodecChoice::Json => Json::ID,
            #[cfg(feature = "postcard")]
            CodecChoice::Postcard => Postcard::ID,
        }
    }

    /// The codec with this envelope id, if this build knows it.
    pub(crate) fn from_id(id: u8) -> Option<Self> {
        match id {
            Json::ID => Some(CodecChoice::Json),
            #[cfg(feature = "postcard")]
            Postcard::ID => Some(CodecChoice::Postcard),
            _ => None,
        }
    }

    pub(crate) fn encode<T: Serialize>(self, value: &T) -> Result<Vec<u8>> {
        match self {
            CodecChoice::Json => Json.encode(value),
            #[cfg(feature = "postcard")]
            CodecChoice::Postcard => Postcard.encode(value),
        }
    }

    pub(crate) fn decode<T: DeserializeOwned>(self, bytes: &[u8]) -> Result<T> {
        match self {
            CodecChoice::Json => Json.decode(bytes),
            #[cfg(feature = "postcard")]
            CodecChoice::Postcard => Postcard.decode(bytes),
        }
    }
}

/// The error for a value whose encoding exceeds the configured limit.
pub(crate) fn too_large(key: &str, len: usize, max: usize) -> Error {
    Error::new(
        ErrorKind::PayloadTooLarge,
        format!(
            "the value for {key:?} encodes to {len} bytes, over the limit of {max}: \
             cache smaller values, or raise HybridCacheBuilder::max_payload_bytes"
        ),
    )
}
