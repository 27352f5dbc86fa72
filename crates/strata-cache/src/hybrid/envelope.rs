//! The L2 byte format of HybridCache entries, and the L2 key namespace.
//!
//! An L2 value is an envelope around the encoded payload, so that an entry
//! carries its logical expiry apart from the backend's physical TTL (what
//! makes fail-safe possible), its creation time and tags (what makes tag
//! invalidation possible) and the codec it was written with.
//!
//! Format version 1, all integers big-endian:
//!
//! ```text
//! magic "STRH" | version u8 = 1 | codec id u8 | created-at u64 (Unix ms)
//! | logical expiry u64 (Unix ms) | tag count u16 | (tag len u16, tag UTF-8)*
//! | payload (the rest)
//! ```
//!
//! Codec ids: 0 raw bytes (the payload is the value, see `repr`), 1 JSON,
//! 2 Postcard. A reader that does not know an id, or asks for another kind of
//! value, treats the entry as a miss.
//!
//! The version is also part of every L2 key (`v1:` + key): a future format
//! writes under new keys instead of confusing old readers. Tag and clear
//! records live under `v1#tag:` + tag and `v1#clear`; entry keys always start
//! with `v1:`, so no user key can collide with them. Bytes that are not a valid
//! envelope are a miss, never a panic.

use bytes::Bytes;

/// The envelope's magic bytes.
const MAGIC: [u8; 4] = *b"STRH";
/// The envelope format version written by this build.
pub(crate) const FORMAT_VERSION: u8 = 1;
/// Bytes before the tags: magic, version, codec, created-at, expiry, tag count.
const HEADER_LEN: usize = 4 + 1 + 1 + 8 + 8 + 2;

/// The L2 key of the entry under `key`.
pub(crate) fn entry_key(key: &str) -> String {
    let mut out = String::with_capacity(3 + key.len());
    out.push_str("v1:");
    out.push_str(key);
    out
}

/// The L2 key of the invalidation record of `tag`.
pub(crate) fn tag_key(tag: &str) -> String {
    let mut out = String::with_capacity(8 + tag.len());
    out.push_str("v1#tag:");
    out.push_str(tag);
    out
}

/// The L2 key of the record of the last `clear()`.
pub(crate) const CLEAR_KEY: &str = "v1#clear";

/// A decoded envelope; the payload is a zero-copy slice of the L2 bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Envelope {
    pub(crate) codec: u8,
    pub(crate) created_ms: u64,
    pub(crate) logical_expiry_ms: u64,
    pub(crate) tags: Vec<String>,
    pub(crate) payload: Bytes,
}

impl Envelope {
    /// Encodes the envelope (format version 1). Tags longer than 65,535 bytes
    /// or more than 65,535 tags cannot be represented: callers reject them first.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let tags_len: usize = self.tags.iter().map(|t| 2 + t.len()).sum();
        let mut out = Vec::with_capacity(HEADER_LEN + tags_len + self.payload.len());
        out.extend_from_slice(&MAGIC);
        out.push(FORMAT_VERSION);
        out.push(self.codec);
        out.extend_from_slice(&self.created_ms.to_be_bytes());
        out.extend_from_slice(&self.logical_expiry_ms.to_be_bytes());
        let count = u16::try_from(self.tags.len()).unwrap_or(u16::MAX);
        out.extend_from_slice(&count.to_be_bytes());
        for tag in self.tags.iter().take(usize::from(count)) {
            let len = u16::try_from(tag.len()).unwrap_or(u16::MAX);
            out.extend_from_slice(&len.to_be_bytes());
            out.extend_from_slice(&tag.as_bytes()[..usize::from(len)]);
        }
        out.extend_from_slice(&self.payload);
        out
    }

    /// Decodes bytes written by [`encode`](Self::encode); `None` for anything
    /// else (another program's value, another version, truncated bytes).
    pub(crate) fn decode(bytes: &Bytes) -> Option<Self> {
        let header = bytes.get(..HEADER_LEN)?;
        let (magic, rest) = header.split_first_chunk::<4>()?;
        if *magic != MAGIC {
            return None;
        }
        let (&[version, codec], rest) = rest.split_first_chunk::<2>()?;
        if version != FORMAT_VERSION {
            return None;
        }
        let (created, rest) = rest.split_first_chunk::<8>()?;
        let (expiry, rest) = rest.split_first_chunk::<8>()?;
        let (count, _) = rest.split_first_chunk::<2>()?;
        let mut at = HEADER_LEN;
        let mut tags = Vec::with_capacity(usize::from(u16::from_be_bytes(*count)).min(64));
        for _ in 0..u16::from_be_bytes(*count) {
            let len = bytes.get(at..at + 2)?;
            let len = usize::from(u16::from_be_bytes([len[0], len[1]]));
            let tag = bytes.get(at + 2..at + 2 + len)?;
            tags.push(std::str::from_utf8(tag).ok()?.to_owned());
            at += 2 + len;
        }
        Some(Self {
            codec,
            created_ms: u64::from_be_bytes(*created),
            logical_expiry_ms: u64::from_be_bytes(*expiry),
            tags,
            payload: bytes.slice(at..),
        })
    }
}

/// Encodes a tag or clear record: the invalidation time as decimal Unix
/// milliseconds, readable in any Redis GUI.
pub(crate) fn encode_time(ms: u64) -> Bytes {
    Bytes::from(ms.to_string())
}

/// Decodes a tag or clear record; `None` for foreign bytes.
pub(crate) fn decode_time(bytes: &[u8]) -> Option<u64> {
    std::str::from_utf8(bytes).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Envelope {
        Envelope {
            codec: 1,
            created_ms: 1_764_000_000_123,
            logical_expiry_ms: 1_764_000_300_123,
            tags: vec!["products".into(), "ü".into()],
            payload: Bytes::from_static(br#"{"id":7}"#),
        }
    }

    #[test]
    fn round_trips() {
        let env = sample();
        assert_eq!(Envelope::decode(&Bytes::from(env.encode())), Some(env));
        let empty = Envelope {
            tags: vec![],
            payload: Bytes::new(),
            ..sample()
        };
        assert_eq!(Envelope::decode(&Bytes::from(empty.encode())), Some(empty));
    }

    #[test]
    fn version_one_bytes_stay_readable() {
        // Sample bytes of format version 1: keep them, whatever changes later.
        let bytes = Bytes::from_static(
            b"STRH\x01\x01\x00\x00\x01\x9a\xb6\x97\xe8\x7b\x00\x00\x01\x9a\xb6\x9c\x7c\x5b\
              \x00\x02\x00\x08products\x00\x02\xc3\xbc{\"id\":7}",
        );
        assert_eq!(Envelope::decode(&bytes), Some(sample()));
        assert_eq!(sample().encode(), bytes.to_vec());
    }

    #[test]
    fn version_one_raw_bytes_stay_readable() {
        // Codec id 0 (raw, added without a format change): sample bytes.
        let bytes = Bytes::from_static(
            b"STRH\x01\x00\x00\x00\x01\x9a\xb6\x97\xe8\x7b\x00\x00\x01\x9a\xb6\x9c\x7c\x5b\
              \x00\x00[1,2]",
        );
        let raw = Envelope {
            codec: 0,
            tags: vec![],
            payload: Bytes::from_static(b"[1,2]"),
            ..sample()
        };
        assert_eq!(Envelope::decode(&bytes), Some(raw.clone()));
        assert_eq!(raw.encode(), bytes.to_vec());
    }

    #[test]
    fn foreign_bytes_are_not_envelopes() {
        let good = sample().encode();
        let mut other_version = good.clone();
        other_version[4] = 2;
        let cases: [&[u8]; 5] = [
            b"",
            br#"{"id":7}"#,
            &good[..HEADER_LEN - 1],
            &good[..HEADER_LEN + 3],
            &other_version,
        ];
        for bytes in cases {
            assert_eq!(Envelope::decode(&Bytes::copy_from_slice(bytes)), None);
        }
    }

    #[test]
    fn keys_are_namespaced_by_version() {
        assert_eq!(entry_key("product:1"), "v1:product:1");
        assert_eq!(tag_key("products"), "v1#tag:products");
        assert_eq!(decode_time(&encode_time(42)), Some(42));
        assert_eq!(decode_time(b"x"), None);
    }
}
