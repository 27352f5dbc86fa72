//! [`ListBody`]: the JSON body of `GET /products`, encoded once per cache fill
//! and then served as it is, with an index of where each product starts, so
//! that the count is a length and a page is one slice copy.
//!
//! The body is always [`encode`]'s output: serde_json's compact encoding of a
//! `[Product]`, where each product is a flat object whose first key is `id`.
//! In it the three bytes `{"i` occur exactly once per product, at its start.
//! Elsewhere a `"` followed by a letter can only open a string (a closing
//! quote is followed by `,`, `:`, `}` or `]`, and a quote inside a string is
//! escaped), so the `{` before it is not inside a string: it opens an object,
//! and the only objects are products. (The shorter `{"` would not do: a name
//! ending in `{` puts one before its closing quote.) The index relies on
//! that; the tests hold it against hostile strings, and against a `Product`
//! that grows a nested object.
//!
//! Building the index is one pass over the bytes (tens of microseconds for a
//! thousand products): [`ProductCache`](super::ProductCache) keeps the last
//! one beside the body it was built from, so that the pass runs once per
//! cache fill, not once per request.

use std::sync::Arc;

use strata_cache::Bytes;

use crate::db::RepoError;
use crate::model::Product;

/// The encoded list, as cached and as served, with the offset where each
/// product starts. Cheap to clone (two reference counts).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListBody {
    bytes: Bytes,
    /// Offsets into `bytes` of each product's `{`, in order. `u32`: a body
    /// over 4 GiB is not a response this service sends.
    starts: Arc<[u32]>,
}

/// Encodes `products` as the body of `GET /products`.
///
/// # Errors
///
/// [`RepoError::Corrupt`] if a product does not encode, which serde_json only
/// does for non-string map keys: not in a `Product`.
pub(crate) fn encode(products: &[Product]) -> Result<Bytes, RepoError> {
    serde_json::to_vec(products)
        .map(Bytes::from)
        .map_err(|e| RepoError::Corrupt(format!("cannot encode the products: {e}")))
}

/// The offsets where a product starts (see the module docs), in order.
fn starts(b: &[u8]) -> Vec<u32> {
    // Each `{` (about one per product) is checked for the `"i` after it.
    let mut found = Vec::new();
    let mut at = 0;
    while let Some(i) = b[at..].iter().position(|&c| c == b'{') {
        let i = at + i;
        if b.get(i + 1) == Some(&b'"') && b.get(i + 2) == Some(&b'i') {
            found.push(u32::try_from(i).unwrap_or(u32::MAX));
        }
        at = i + 1;
    }
    found
}

impl ListBody {
    /// Indexes bytes made by `encode` (a cached copy of them): one pass.
    pub fn new(bytes: Bytes) -> Self {
        let starts = starts(&bytes).into();
        Self { bytes, starts }
    }

    /// The bytes, to serve as they are.
    pub fn bytes(&self) -> &Bytes {
        &self.bytes
    }

    /// True when `bytes` is the very buffer this body indexes (same memory,
    /// same length): the index then fits it without a pass. Sound because
    /// this body holds a reference to that memory, so it cannot have been
    /// freed and reused for other bytes.
    pub(crate) fn indexes(&self, bytes: &Bytes) -> bool {
        self.bytes.as_ptr() == bytes.as_ptr() && self.bytes.len() == bytes.len()
    }

    /// How many products the list holds.
    pub fn count(&self) -> usize {
        self.starts.len()
    }

    /// Products `offset..offset + limit` (to the end without a limit) as a
    /// JSON array, copied out of the full body in one slice, and the count of
    /// the whole list.
    pub fn page(&self, offset: usize, limit: Option<usize>) -> (Bytes, usize) {
        let b = &self.bytes[..];
        let total = self.starts.len();
        let first = offset.min(total);
        let end = limit.map_or(total, |l| first.saturating_add(l).min(total));
        if first == end {
            return (Bytes::from_static(b"[]"), total);
        }
        let at = |i: usize| self.starts[i] as usize;
        // Up to the comma before the next product, or the closing bracket.
        let stop = if end < total {
            at(end) - 1
        } else {
            b.len() - 1
        };
        let products = &b[at(first)..stop];
        let mut page = Vec::with_capacity(products.len() + 2);
        page.push(b'[');
        page.extend_from_slice(products);
        page.push(b']');
        (Bytes::from(page), total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The seed plus products whose strings try every way to fake a boundary.
    fn products() -> Vec<Product> {
        let mut products = crate::seed::products();
        let hostile = [
            r#"{"id":"x"}"#,
            r#"{"#,
            r#"{"i"#,
            r#"}"#,
            r#"},{""#,
            "back\\",
            "back\\\\\"{\"",
            "é {\"name\": ☃}",
            "",
        ];
        for (i, text) in hostile.iter().enumerate() {
            products[i * 7].name = (*text).to_owned();
            products[i * 7 + 1].description = format!("{text}{text}");
        }
        products
    }

    #[test]
    fn count_and_pages_match_serde() {
        let products = products();
        let body = ListBody::new(encode(&products).unwrap());
        assert_eq!(body.count(), products.len());
        let cases = [
            (0, None),
            (0, Some(1)),
            (5, Some(10)),
            (0, Some(1000)),
            (998, None),
            (999, Some(5)),
            (1000, None),
            (5000, Some(5)),
        ];
        for (offset, limit) in cases {
            let (page, total) = body.page(offset, limit);
            assert_eq!(total, products.len());
            let first = offset.min(products.len());
            let end = limit.map_or(products.len(), |l| (first + l).min(products.len()));
            let want = serde_json::to_vec(&products[first..end]).unwrap();
            assert_eq!(page, want, "offset {offset}, limit {limit:?}");
        }
    }

    #[test]
    fn an_index_fits_only_its_own_buffer() {
        let bytes = encode(&crate::seed::products()[..3]).unwrap();
        let body = ListBody::new(bytes.clone());
        assert!(body.indexes(&bytes));
        assert!(body.indexes(&body.bytes().clone()));
        // Equal bytes elsewhere in memory: not known to be the same buffer.
        assert!(!body.indexes(&Bytes::from(bytes.to_vec())));
        assert!(!body.indexes(&bytes.slice(..bytes.len() - 1)));
    }

    #[test]
    fn an_empty_list() {
        let body = ListBody::new(encode(&[]).unwrap());
        assert_eq!(body.count(), 0);
        assert_eq!(body.page(0, None), (Bytes::from_static(b"[]"), 0));
    }

    /// A product is flat and starts with its id: the day that changes, this
    /// fails and the module's premise must be revisited.
    #[test]
    fn a_product_is_a_flat_object() {
        let one = serde_json::to_vec(&crate::seed::products()[0]).unwrap();
        assert_eq!(one.iter().filter(|&&b| b == b'{').count(), 1);
        assert!(one.starts_with(b"{\"id\":"));
    }
}
