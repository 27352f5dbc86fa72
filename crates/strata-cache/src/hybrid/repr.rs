//! How a cached value is represented: [`Serde`] values go through the cache's
//! codec, [`Raw`] bytes are stored as they are (codec id 0 in the envelope).
//!
//! Both share every other part of the cache (stampede protection, tags,
//! fail-safe, the backplane, the invalidation race fix): the miss path is
//! generic over a [`Repr`]. A raw value is held in L1 as a private newtype, so
//! a typed reader (even of `Bytes`) never sees a raw entry and a raw reader
//! never sees a typed one: each is a miss for the other, in L1 as in L2.

use std::any::Any;
use std::marker::PhantomData;

use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::codec::CodecChoice;
use crate::error::{Error, ErrorKind, Result};

/// The envelope codec id of raw bytes: the payload is the value.
pub(crate) const RAW_CODEC_ID: u8 = 0;

/// Why an L2 payload gave no value.
#[derive(Debug)]
pub(crate) enum Undecodable {
    /// Written by the other representation, or by a codec this build does not know.
    OtherCodec(u8),
    /// The codec matches but the bytes do not decode.
    Invalid(Error),
}

/// One representation of cached values.
pub(crate) trait Repr: Send + Sync + 'static {
    /// What callers pass and get back.
    type Value: Clone + Send + Sync + 'static;

    /// The envelope codec id and payload of `value`.
    fn encode(codec: CodecChoice, value: &Self::Value) -> Result<(u8, Bytes)>;

    /// The value of an envelope's payload written with `codec_id`.
    fn decode(codec_id: u8, payload: Bytes) -> std::result::Result<Self::Value, Undecodable>;

    /// The value as L1 holds it.
    fn store(value: Self::Value) -> Box<dyn Any + Send + Sync>;

    /// The value L1 holds, when it is of this representation.
    fn load(stored: &(dyn Any + Send + Sync)) -> Option<Self::Value>;
}

/// Serde values, encoded with the cache's codec.
pub(crate) struct Serde<T>(PhantomData<fn() -> T>);

impl<T> Repr for Serde<T>
where
    T: Clone + Serialize + DeserializeOwned + Send + Sync + 'static,
{
    type Value = T;

    fn encode(codec: CodecChoice, value: &T) -> Result<(u8, Bytes)> {
        Ok((codec.id(), Bytes::from(codec.encode(value)?)))
    }

    fn decode(codec_id: u8, payload: Bytes) -> std::result::Result<T, Undecodable> {
        let codec = CodecChoice::from_id(codec_id).ok_or(Undecodable::OtherCodec(codec_id))?;
        codec.decode(&payload).map_err(Undecodable::Invalid)
    }

    #[inline]
    fn store(value: T) -> Box<dyn Any + Send + Sync> {
        Box::new(value)
    }

    #[inline]
    fn load(stored: &(dyn Any + Send + Sync)) -> Option<T> {
        stored.downcast_ref::<T>().cloned()
    }
}

/// Pre-encoded bytes, stored and served as they are.
pub(crate) struct Raw;

/// How L1 holds a raw value: a type no typed caller can ask for.
#[derive(Clone)]
struct RawValue(Bytes);

impl Repr for Raw {
    type Value = Bytes;

    fn encode(_: CodecChoice, value: &Bytes) -> Result<(u8, Bytes)> {
        Ok((RAW_CODEC_ID, value.clone()))
    }

    fn decode(codec_id: u8, payload: Bytes) -> std::result::Result<Bytes, Undecodable> {
        if codec_id == RAW_CODEC_ID {
            Ok(payload)
        } else {
            Err(Undecodable::OtherCodec(codec_id))
        }
    }

    #[inline]
    fn store(value: Bytes) -> Box<dyn Any + Send + Sync> {
        Box::new(RawValue(value))
    }

    #[inline]
    fn load(stored: &(dyn Any + Send + Sync)) -> Option<Bytes> {
        stored.downcast_ref::<RawValue>().map(|raw| raw.0.clone())
    }
}

/// The error for a key whose cached value is of another type than asked.
pub(crate) fn type_mismatch<R: Repr>(key: &str) -> Error {
    Error::new(
        ErrorKind::Serialization,
        format!(
            "the entry for {key:?} holds another type than {}: use one type per key",
            std::any::type_name::<R::Value>()
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_and_typed_do_not_read_each_other() {
        let raw = Raw::store(Bytes::from_static(b"[1,2]"));
        assert_eq!(Raw::load(&*raw), Some(Bytes::from_static(b"[1,2]")));
        assert_eq!(Serde::<Bytes>::load(&*raw), None);
        assert_eq!(Serde::<Vec<u8>>::load(&*raw), None);
        let typed = Serde::<Bytes>::store(Bytes::from_static(b"x"));
        assert_eq!(Raw::load(&*typed), None);

        let (id, payload) = Raw::encode(CodecChoice::Json, &Bytes::from_static(b"[1,2]")).unwrap();
        assert_eq!(id, RAW_CODEC_ID);
        assert!(matches!(
            Serde::<Vec<u8>>::decode(id, payload.clone()),
            Err(Undecodable::OtherCodec(0))
        ));
        let (json, payload) = Serde::<Vec<u8>>::encode(CodecChoice::Json, &vec![1, 2]).unwrap();
        assert!(matches!(
            Raw::decode(json, payload),
            Err(Undecodable::OtherCodec(1))
        ));
        assert!(matches!(
            Serde::<u32>::decode(json, Bytes::from_static(b"\"x\"")),
            Err(Undecodable::Invalid(_))
        ));
    }
}
