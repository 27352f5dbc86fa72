//! The L2 byte format of HybridCache entries, and the L2 key namespace.
//!
//! An L2 value is an envelope around the encoded payload, so that an entry
//! carries its logical expiry apart from the backend's physical TTL (what
//! makes fail-safe possible), the stamps of its tags as its writer knew them
//! when the read that produced the value began (what makes tag invalidation
//! possible without comparing clocks, see `order`), the codec it was written
//! with, and a checksum.
//!
//! Format version 2, all integers big-endian:
//!
//! ```text
//! magic "STRH" | version u8 = 2 | codec id u8 | created-at u64 (Unix ms)
//! | logical expiry u64 (Unix ms) | clear stamp u64 | tag count u16
//! | (tag len u16, tag UTF-8, stamp u64)* | payload len u32 | payload
//! | checksum u64: xxh3-64 of every byte before it
//! ```
//!
//! Codec ids: 0 raw bytes (the payload is the value, see `repr`), 1 JSON,
//! 2 Postcard. A reader that does not know an id, or asks for another kind of
//! value, treats the entry as a miss. Bytes that do not decode (truncated,
//! corrupted, another format) are a miss too, never a panic: [`decode`]
//! tells a foreign value from a damaged one so that the caller can count
//! damage.
//!
//! The version is also part of every L2 key (`v2:` + key): a build that writes
//! another format writes under other keys instead of confusing old readers.
//! During a rolling deploy from format 1, old and new instances do not share
//! L2 entries (each misses the other's and fills its own namespace); both
//! still evict each other's L1 copies through the backplane. Tag and clear
//! records live under `v2#tag:` + tag and `v2#clear`; entry keys always start
//! with `v2:`, so no user key can collide with them.

use bytes::Bytes;
use xxhash_rust::xxh3::xxh3_64;

/// The envelope's magic bytes.
const MAGIC: [u8; 4] = *b"STRH";
/// The envelope format version written by this build.
pub(crate) const FORMAT_VERSION: u8 = 2;
/// Bytes before the tags: magic, version, codec, created-at, expiry, clear
/// stamp, tag count.
const HEADER_LEN: usize = 4 + 1 + 1 + 8 + 8 + 8 + 2;
/// Bytes of the checksum at the end.
const CHECKSUM_LEN: usize = 8;

/// The L2 key of the entry under `key`.
pub(crate) fn entry_key(key: &str) -> String {
    let mut out = String::with_capacity(3 + key.len());
    out.push_str("v2:");
    out.push_str(key);
    out
}

/// The L2 key of the stamp record of `tag`.
pub(crate) fn tag_key(tag: &str) -> String {
    let mut out = String::with_capacity(8 + tag.len());
    out.push_str("v2#tag:");
    out.push_str(tag);
    out
}

/// The L2 key of the stamp record of `clear()`.
pub(crate) const CLEAR_KEY: &str = "v2#clear";

/// A decoded envelope; the payload is a zero-copy slice of the L2 bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Envelope {
    pub(crate) codec: u8,
    pub(crate) created_ms: u64,
    pub(crate) logical_expiry_ms: u64,
    /// The clear stamp the writer knew when its read began.
    pub(crate) clear_stamp: u64,
    /// The tags, each with the stamp the writer knew when its read began.
    pub(crate) tags: Vec<(String, u64)>,
    pub(crate) payload: Bytes,
}

/// Why bytes under an entry key gave no envelope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Unreadable {
    /// Not an envelope of this format: another program's value, another version.
    Foreign,
    /// An envelope header, but the bytes are truncated or do not match their
    /// checksum.
    Damaged,
}

impl Envelope {
    /// Encodes the envelope. Tags longer than 65,535 bytes, more than 65,535
    /// tags, or a payload over 4 GiB cannot be represented: callers reject
    /// them first (the payload limit is far below).
    pub(crate) fn encode(&self) -> Vec<u8> {
        let tags_len: usize = self.tags.iter().map(|(t, _)| 2 + t.len() + 8).sum();
        let mut out =
            Vec::with_capacity(HEADER_LEN + tags_len + 4 + self.payload.len() + CHECKSUM_LEN);
        out.extend_from_slice(&MAGIC);
        out.push(FORMAT_VERSION);
        out.push(self.codec);
        out.extend_from_slice(&self.created_ms.to_be_bytes());
        out.extend_from_slice(&self.logical_expiry_ms.to_be_bytes());
        out.extend_from_slice(&self.clear_stamp.to_be_bytes());
        let count = u16::try_from(self.tags.len()).unwrap_or(u16::MAX);
        out.extend_from_slice(&count.to_be_bytes());
        for (tag, stamp) in self.tags.iter().take(usize::from(count)) {
            let len = u16::try_from(tag.len()).unwrap_or(u16::MAX);
            out.extend_from_slice(&len.to_be_bytes());
            out.extend_from_slice(&tag.as_bytes()[..usize::from(len)]);
            out.extend_from_slice(&stamp.to_be_bytes());
        }
        let payload_len = u32::try_from(self.payload.len()).unwrap_or(u32::MAX);
        out.extend_from_slice(&payload_len.to_be_bytes());
        out.extend_from_slice(&self.payload[..payload_len as usize]);
        let checksum = xxh3_64(&out);
        out.extend_from_slice(&checksum.to_be_bytes());
        out
    }

    /// Decodes bytes written by [`encode`](Self::encode).
    pub(crate) fn decode(bytes: &Bytes) -> Result<Self, Unreadable> {
        let header = bytes.get(..HEADER_LEN).ok_or(Unreadable::Foreign)?;
        let (magic, rest) = header.split_first_chunk::<4>().ok_or(Unreadable::Foreign)?;
        let (&[version, codec], rest) = rest.split_first_chunk::<2>().ok_or(Unreadable::Foreign)?;
        if *magic != MAGIC || version != FORMAT_VERSION {
            return Err(Unreadable::Foreign);
        }
        // From here on the bytes claim to be ours: anything wrong is damage.
        let damaged = Unreadable::Damaged;
        let body_len = bytes.len().checked_sub(CHECKSUM_LEN).ok_or(damaged)?;
        let (body, checksum) = bytes.split_at(body_len);
        if xxh3_64(body) != u64::from_be_bytes(checksum.try_into().map_err(|_| damaged)?) {
            return Err(damaged);
        }
        let (created, rest) = rest.split_first_chunk::<8>().ok_or(damaged)?;
        let (expiry, rest) = rest.split_first_chunk::<8>().ok_or(damaged)?;
        let (clear, rest) = rest.split_first_chunk::<8>().ok_or(damaged)?;
        let (count, _) = rest.split_first_chunk::<2>().ok_or(damaged)?;
        let count = u16::from_be_bytes(*count);
        let mut at = HEADER_LEN;
        let mut take = |n: usize| -> Result<&[u8], Unreadable> {
            let part = body.get(at..at + n).ok_or(damaged)?;
            at += n;
            Ok(part)
        };
        let mut tags = Vec::with_capacity(usize::from(count).min(64));
        for _ in 0..count {
            let len = take(2)?;
            let len = usize::from(u16::from_be_bytes([len[0], len[1]]));
            let tag = std::str::from_utf8(take(len)?)
                .map_err(|_| damaged)?
                .to_owned();
            let stamp = u64::from_be_bytes(take(8)?.try_into().map_err(|_| damaged)?);
            tags.push((tag, stamp));
        }
        let len = take(4)?;
        let len = u32::from_be_bytes(len.try_into().map_err(|_| damaged)?) as usize;
        let start = at;
        if start + len != body_len {
            return Err(damaged);
        }
        Ok(Self {
            codec,
            created_ms: u64::from_be_bytes(*created),
            logical_expiry_ms: u64::from_be_bytes(*expiry),
            clear_stamp: u64::from_be_bytes(*clear),
            tags,
            payload: bytes.slice(start..body_len),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Envelope {
        Envelope {
            codec: 1,
            created_ms: 1_764_000_000_123,
            logical_expiry_ms: 1_764_000_300_123,
            clear_stamp: 5,
            tags: vec![("products".into(), 1_764_000_000_000_001), ("ü".into(), 0)],
            payload: Bytes::from_static(br#"{"id":7}"#),
        }
    }

    #[test]
    fn round_trips() {
        let env = sample();
        assert_eq!(Envelope::decode(&Bytes::from(env.encode())), Ok(env));
        let empty = Envelope {
            tags: vec![],
            payload: Bytes::new(),
            ..sample()
        };
        assert_eq!(Envelope::decode(&Bytes::from(empty.encode())), Ok(empty));
    }

    #[test]
    fn version_two_bytes_stay_readable() {
        // Sample bytes of format version 2: keep them, whatever changes later.
        let bytes = Bytes::from_static(
            b"STRH\x02\x01\x00\x00\x01\x9a\xb6\x97\xe8\x7b\x00\x00\x01\x9a\xb6\x9c\x7c\x5b\
              \x00\x00\x00\x00\x00\x00\x00\x05\x00\x02\x00\x08products\x00\x06\x44\x59\x41b\x40\x01\
              \x00\x02\xc3\xbc\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x08{\"id\":7}\
              \xddn\x3e\xab\x59\x01\x33\xdb",
        );
        assert_eq!(Envelope::decode(&bytes), Ok(sample()));
        assert_eq!(sample().encode(), bytes.to_vec());
    }

    #[test]
    fn foreign_bytes_are_not_envelopes() {
        let good = sample().encode();
        let mut other_version = good.clone();
        other_version[4] = 1;
        for bytes in [
            &b""[..],
            br#"{"id":7}"#,
            &good[..HEADER_LEN - 1],
            &other_version,
        ] {
            assert_eq!(
                Envelope::decode(&Bytes::copy_from_slice(bytes)),
                Err(Unreadable::Foreign)
            );
        }
    }

    #[test]
    fn truncated_or_altered_bytes_are_damaged() {
        let good = sample().encode();
        let mut flipped = good.clone();
        let last_payload_byte = good.len() - CHECKSUM_LEN - 1;
        flipped[last_payload_byte] ^= 1;
        let mut lying_length = Envelope {
            payload: Bytes::from_static(b"abc"),
            ..sample()
        }
        .encode();
        // Rewrite the payload length to 2 and fix the checksum: the length
        // check alone must catch it.
        let len_at = lying_length.len() - CHECKSUM_LEN - 3 - 4;
        lying_length[len_at..len_at + 4].copy_from_slice(&2u32.to_be_bytes());
        let body = lying_length.len() - CHECKSUM_LEN;
        let sum = xxh3_64(&lying_length[..body]).to_be_bytes();
        lying_length[body..].copy_from_slice(&sum);
        for bytes in [
            &good[..HEADER_LEN + 3],
            &good[..good.len() - 1],
            &good[..good.len() - CHECKSUM_LEN - 2],
            &flipped,
            &lying_length,
        ] {
            assert_eq!(
                Envelope::decode(&Bytes::copy_from_slice(bytes)),
                Err(Unreadable::Damaged)
            );
        }
    }

    #[test]
    fn keys_are_namespaced_by_version() {
        assert_eq!(entry_key("product:1"), "v2:product:1");
        assert_eq!(tag_key("products"), "v2#tag:products");
        assert_eq!(CLEAR_KEY, "v2#clear");
    }
}
