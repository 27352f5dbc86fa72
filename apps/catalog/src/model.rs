//! The domain: [`Product`], the validated input [`NewProduct`], and
//! [`ProductInput`], the raw request body and its validation rules.
//!
//! Prices are [`Decimal`]s with two decimal places, never floats, and travel as
//! JSON strings (`"19.99"`): a string survives every JSON parser exactly,
//! whereas a number is a binary float in JavaScript and in most decoders.
//! Requests may also send a plain JSON number, judged by its text; [`price`]
//! owns the grammar and refuses what it would otherwise have to round.
//!
//! Text fields refuse NUL (U+0000): PostgreSQL cannot store it in `text`, and
//! SQLite would store it, so both databases answer the same 422.
//!
//! Storage lives in [`crate::db`]; HTTP in [`crate::routes`].

pub mod price;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use rust_decimal::Decimal;
use serde::de::{IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;
use serde_json::value::RawValue;
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

/// Longest accepted name, in characters.
pub const MAX_NAME_CHARS: usize = 200;
/// Longest accepted description, in characters.
pub const MAX_DESCRIPTION_CHARS: usize = 2_000;
/// Decimal places a price may have: cents.
pub const PRICE_SCALE: u32 = 2;

/// The largest accepted price, 99,999,999.99: what the PostgreSQL column
/// `NUMERIC(10, 2)` holds.
pub fn max_price() -> Decimal {
    Decimal::new(9_999_999_999, PRICE_SCALE)
}

/// A product of the catalog, as stored and as served.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Product {
    /// UUID v7: time-ordered, so ordering by id is ordering by creation.
    #[schema(example = "01936b2e-7f00-7000-8000-000000000001")]
    pub id: Uuid,
    /// Display name, 1 to 200 characters.
    #[schema(example = "Ergonomic Steel Keyboard")]
    pub name: String,
    /// Free text, up to 2,000 characters.
    #[schema(example = "A keyboard that stays cool under pressure.")]
    pub description: String,
    /// Exact decimal with two places, serialized as a JSON string.
    // Read back as a string too: `Decimal`'s own `Deserialize` asks the format
    // what comes next (`deserialize_any`), which a binary codec such as
    // Postcard cannot answer, so a Postcard-encoded product never decoded.
    #[serde(with = "price::text")]
    #[schema(schema_with = price::served_schema)]
    pub price: Decimal,
    /// Creation time, RFC 3339, UTC, microsecond precision.
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
    /// Last modification time, RFC 3339, UTC, microsecond precision.
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: OffsetDateTime,
}

/// Validated fields of a product to create or to replace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewProduct {
    /// Trimmed, non-empty, at most [`MAX_NAME_CHARS`].
    pub name: String,
    /// At most [`MAX_DESCRIPTION_CHARS`].
    pub description: String,
    /// Between 0 and [`max_price`], scale [`PRICE_SCALE`].
    pub price: Decimal,
}

/// The whole catalog as one cheaply clonable value, for caching it typed:
/// cloning an `Arc` costs nothing where cloning a thousand products would cost
/// a thousand allocations. The service itself caches the encoded list instead
/// (see [`crate::cache`]); the benches compare both.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProductList(pub Arc<Vec<Product>>);

impl Serialize for ProductList {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for ProductList {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Vec::<Product>::deserialize(deserializer).map(|v| ProductList(Arc::new(v)))
    }
}

/// The body of `POST /products` and `PUT /products/{id}` (a PUT replaces
/// all three fields). Every invalid field is reported at once, in `errors`.
/// Unknown fields are ignored.
//
// Every field is taken as raw JSON so that one response can name every bad
// field, wrong types included; the price stays as the text that was sent (see
// [`price`]). The body must be a JSON object: the deserializer only visits
// maps, since serde would otherwise accept `["a", "b", "1"]` as a struct.
#[derive(Debug, Default, ToSchema)]
#[schema(example = json!({"name": "Ergonomic Steel Keyboard", "description": "Quiet keys.", "price": "49.99"}))]
pub struct ProductInput {
    /// Required; 1 to 200 characters, not only spaces (surrounding spaces
    /// are trimmed), no NUL character.
    #[schema(value_type = String, required = true, min_length = 1, max_length = 200,
             pattern = r"^[^\u0000]*[^\s\u0000][^\u0000]*$")]
    pub name: Option<Value>,
    /// Optional (empty when absent or null); at most 2,000 characters, no NUL
    /// character.
    #[schema(value_type = Option<String>, max_length = 2000, pattern = r"^[^\u0000]*$")]
    pub description: Option<Value>,
    /// Required; see [`price`].
    #[schema(schema_with = price::input_schema, required = true)]
    pub price: Option<Box<RawValue>>,
}

impl<'de> Deserialize<'de> for ProductInput {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Fields;
        impl<'de> Visitor<'de> for Fields {
            type Value = ProductInput;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object with the product's fields")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ProductInput, A::Error> {
                let mut input = ProductInput::default();
                // A repeated key keeps its last value, as serde_json's `Map` does.
                while let Some(key) = map.next_key::<String>()? {
                    match key.as_str() {
                        "name" => input.name = Some(map.next_value()?),
                        "description" => input.description = Some(map.next_value()?),
                        "price" => input.price = Some(map.next_value()?),
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(input)
            }
        }
        deserializer.deserialize_map(Fields)
    }
}

/// Spaces as a name's trimming sees them: Unicode white space, plus the
/// four information separators (U+001C to U+001F) that Python's `\s` (and
/// so the OpenAPI pattern, as Python-based tools read it) counts as spaces.
fn is_space(c: char) -> bool {
    c.is_whitespace() || matches!(c, '\u{1c}'..='\u{1f}')
}

/// Why a text field with a NUL character is refused.
const NUL_MESSAGE: &str = "must not contain the NUL character (U+0000)";

/// Validation messages per field name, in a stable order.
pub type FieldErrors = BTreeMap<&'static str, Vec<String>>;

impl ProductInput {
    /// Checks every field and returns the clean product, or every problem found.
    ///
    /// # Errors
    ///
    /// A map from each bad field to its messages.
    pub fn validate(self) -> Result<NewProduct, FieldErrors> {
        let mut errors = FieldErrors::new();
        let name = match self.name {
            Some(Value::String(s)) => {
                let trimmed = s.trim_matches(is_space);
                // The length as sent, as the OpenAPI `maxLength` counts it.
                let chars = s.chars().count();
                if s.contains('\0') {
                    errors.entry("name").or_default().push(NUL_MESSAGE.into());
                } else if trimmed.is_empty() {
                    errors
                        .entry("name")
                        .or_default()
                        .push("must not be empty".into());
                } else if chars > MAX_NAME_CHARS {
                    errors.entry("name").or_default().push(format!(
                        "must be at most {MAX_NAME_CHARS} characters (got {chars})"
                    ));
                }
                trimmed.to_owned()
            }
            None | Some(Value::Null) => {
                errors.entry("name").or_default().push("is required".into());
                String::new()
            }
            Some(other) => {
                errors
                    .entry("name")
                    .or_default()
                    .push(format!("must be a string, not {}", json_type(&other)));
                String::new()
            }
        };
        let description = match self.description {
            Some(Value::String(s)) => {
                let chars = s.chars().count();
                if s.contains('\0') {
                    errors
                        .entry("description")
                        .or_default()
                        .push(NUL_MESSAGE.into());
                } else if chars > MAX_DESCRIPTION_CHARS {
                    errors.entry("description").or_default().push(format!(
                        "must be at most {MAX_DESCRIPTION_CHARS} characters (got {chars})"
                    ));
                }
                s
            }
            None | Some(Value::Null) => String::new(),
            Some(other) => {
                errors
                    .entry("description")
                    .or_default()
                    .push(format!("must be a string, not {}", json_type(&other)));
                String::new()
            }
        };
        let price = match price::parse(self.price.as_deref()) {
            Ok(price) => price,
            Err(message) => {
                errors.entry("price").or_default().push(message);
                Decimal::ZERO
            }
        };
        if errors.is_empty() {
            Ok(NewProduct {
                name,
                description,
                price,
            })
        } else {
            Err(errors)
        }
    }
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// The current time, truncated to microseconds: the precision PostgreSQL
/// keeps, so that a product reads back exactly as it was returned on write.
pub fn now_micros() -> OffsetDateTime {
    let now = OffsetDateTime::now_utc();
    let micros = now.microsecond();
    now.replace_microsecond(micros).unwrap_or(now)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use strata_cache::Codec;

    #[test]
    fn products_round_trip_through_both_codecs() {
        let products = crate::seed::products();
        let postcard = strata_cache::Postcard.encode(&products[..3]).unwrap();
        let back: Vec<Product> = strata_cache::Postcard.decode(&postcard).unwrap();
        assert_eq!(back, products[..3]);
        let json = serde_json::to_value(&products[0]).unwrap();
        let mut two_places = products[0].price;
        two_places.rescale(PRICE_SCALE);
        assert_eq!(json["price"], two_places.to_string());
        let back: Product = serde_json::from_value(json).unwrap();
        assert_eq!(back, products[0]);
    }

    fn input(v: Value) -> ProductInput {
        serde_json::from_value(v).unwrap()
    }

    fn from_text(body: &str) -> ProductInput {
        serde_json::from_str(body).unwrap()
    }

    #[test]
    fn accepts_strings_and_exact_numbers() {
        for (raw, want) in [
            (r#""19.99""#, "19.99"),
            ("19.99", "19.99"),
            ("5", "5.00"),
            (r#""0""#, "0.00"),
            ("-0", "0.00"),
            (r#""99999999.99""#, "99999999.99"),
            ("0.1", "0.10"),
        ] {
            let p = from_text(&format!(r#"{{"name": "A", "price": {raw}}}"#))
                .validate()
                .unwrap();
            assert_eq!(p.price.to_string(), want);
        }
    }

    #[test]
    fn numbers_are_judged_by_their_text() {
        for raw in ["19.999999999999999", "1e2", "1.000"] {
            let errors = from_text(&format!(r#"{{"name": "A", "price": {raw}}}"#))
                .validate()
                .unwrap_err();
            assert!(errors.contains_key("price"), "{raw}");
        }
    }

    #[test]
    fn refuses_nul_in_text_fields() {
        for body in [
            json!({"name": "\u{0}A", "price": "1"}),
            json!({"name": "A\u{0}", "price": "1"}),
            json!({"name": "A", "description": "x\u{0}y", "price": "1"}),
        ] {
            let errors = input(body.clone()).validate().unwrap_err();
            assert_eq!(errors.len(), 1, "{body}");
            let messages = errors.values().next().unwrap();
            assert!(messages[0].contains("NUL"), "{messages:?}");
        }
    }

    #[test]
    fn names_every_bad_field() {
        let errors = input(json!({"name": " ", "description": "x".repeat(2001), "price": "-1"}))
            .validate()
            .unwrap_err();
        assert_eq!(
            errors.keys().copied().collect::<Vec<_>>(),
            ["description", "name", "price"]
        );
    }

    #[test]
    fn rejects_bad_prices_with_a_reason() {
        for raw in [
            json!("NaN"),
            json!("Infinity"),
            json!("abc"),
            json!(-0.01),
            json!("100000000"),
            json!(1e300),
            json!("1.001"),
            json!(true),
            json!(null),
        ] {
            let errors = input(json!({"name": "A", "price": raw.clone()}))
                .validate()
                .unwrap_err();
            assert!(errors.contains_key("price"), "{raw}");
        }
    }

    #[test]
    fn name_length_counts_characters_not_bytes() {
        let ok = input(json!({"name": "é".repeat(200), "price": "1"})).validate();
        assert!(ok.is_ok());
        // Counted as sent, surrounding spaces included (the OpenAPI maxLength).
        let padded = input(json!({"name": format!(" {}", "é".repeat(200)), "price": "1"}));
        assert!(padded.validate().unwrap_err().contains_key("name"));
        let too_long = input(json!({"name": "é".repeat(201), "price": "1"})).validate();
        assert!(too_long.unwrap_err().contains_key("name"));
    }

    #[test]
    fn only_objects_are_accepted() {
        assert!(serde_json::from_str::<ProductInput>(r#"["a", "b", "1"]"#).is_err());
        assert!(serde_json::from_str::<ProductInput>("5").is_err());
    }

    #[test]
    fn product_price_serializes_as_a_string() {
        let p = Product {
            id: Uuid::nil(),
            name: "A".into(),
            description: String::new(),
            price: Decimal::new(1999, 2),
            created_at: OffsetDateTime::UNIX_EPOCH,
            updated_at: OffsetDateTime::UNIX_EPOCH,
        };
        let v = serde_json::to_value(&p).unwrap();
        assert_eq!(v["price"], json!("19.99"));
        assert_eq!(v["created_at"], json!("1970-01-01T00:00:00Z"));
        let back: Product = serde_json::from_value(v).unwrap();
        assert_eq!(back, p);
    }
}
