//! The domain: [`Product`], the validated input [`NewProduct`], and
//! [`ProductInput`], the raw request body and its validation rules.
//!
//! Prices are [`Decimal`]s with two decimal places, never floats, and travel as
//! JSON strings (`"19.99"`): a string survives every JSON parser exactly,
//! whereas a number is a binary float in JavaScript and in most decoders.
//! Requests may also send a plain JSON number; it is accepted when it converts
//! exactly (at most 15 significant digits, at most 2 decimal places).
//!
//! Storage lives in [`crate::db`]; HTTP in [`crate::routes`].

use std::collections::BTreeMap;
use std::str::FromStr;
use std::sync::Arc;

use rust_decimal::Decimal;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;
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
    // JSON bytes are the same either way.
    #[serde(with = "rust_decimal::serde::str")]
    #[schema(value_type = String, example = "49.99")]
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
// field, wrong types included. The body must be a JSON object: it is read
// through a map, since serde would otherwise accept `["a", "b", "1"]` as a
// struct.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(from = "serde_json::Map<String, Value>")]
#[schema(example = json!({"name": "Ergonomic Steel Keyboard", "description": "Quiet keys.", "price": "49.99"}))]
pub struct ProductInput {
    /// Required; 1 to 200 characters after trimming surrounding spaces.
    #[schema(value_type = String, min_length = 1, max_length = 200)]
    pub name: Option<Value>,
    /// Optional (empty when absent); at most 2,000 characters.
    #[schema(value_type = Option<String>, max_length = 2000)]
    pub description: Option<Value>,
    /// Required; a decimal string such as `"49.99"` (preferred) or a JSON
    /// number that converts exactly; 0 to 99999999.99, at most two decimal
    /// places.
    #[schema(value_type = String, example = "49.99")]
    pub price: Option<Value>,
}

impl From<serde_json::Map<String, Value>> for ProductInput {
    fn from(mut map: serde_json::Map<String, Value>) -> Self {
        Self {
            name: map.remove("name"),
            description: map.remove("description"),
            price: map.remove("price"),
        }
    }
}

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
                let trimmed = s.trim();
                let chars = trimmed.chars().count();
                if chars == 0 {
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
                if chars > MAX_DESCRIPTION_CHARS {
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
        let price = match parse_price(self.price.as_ref()) {
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

/// Turns the raw `price` into a checked decimal with two places.
fn parse_price(raw: Option<&Value>) -> Result<Decimal, String> {
    let parsed = match raw {
        None | Some(Value::Null) => return Err("is required".into()),
        Some(Value::String(s)) => {
            let s = s.trim();
            // `Decimal::from_str` rejects "NaN" and "inf" too: say why.
            if [
                "nan",
                "inf",
                "infinity",
                "+inf",
                "-inf",
                "-infinity",
                "+infinity",
            ]
            .contains(&s.to_ascii_lowercase().as_str())
            {
                return Err("must be a finite number".into());
            }
            Decimal::from_str(s)
                .map_err(|_| format!("must be a decimal number such as \"19.99\", not {s:?}"))?
        }
        Some(Value::Number(n)) => {
            if let Some(i) = n.as_i64() {
                Decimal::from(i)
            } else if let Some(u) = n.as_u64() {
                Decimal::from(u)
            } else {
                // serde_json holds other numbers as f64. Its shortest
                // round-trip text equals the literal sent for up to 15
                // significant digits, so the conversion is exact for any price
                // in range; past that the value is too large anyway.
                let f = n.as_f64().unwrap_or(f64::NAN);
                if !f.is_finite() {
                    return Err("must be a finite number".into());
                }
                Decimal::from_str(&f.to_string())
                    .map_err(|_| "is too large: the maximum is 99999999.99".to_string())?
            }
        }
        Some(other) => {
            return Err(format!(
                "must be a decimal string such as \"19.99\" or a number, not {}",
                json_type(other)
            ));
        }
    };
    if parsed.is_sign_negative() && !parsed.is_zero() {
        return Err("must not be negative".into());
    }
    if parsed > max_price() {
        return Err(format!("is too large: the maximum is {}", max_price()));
    }
    let normalized = parsed.normalize();
    if normalized.scale() > PRICE_SCALE {
        return Err(format!(
            "must have at most {PRICE_SCALE} decimal places (got {normalized})"
        ));
    }
    let mut price = normalized;
    price.rescale(PRICE_SCALE);
    Ok(price)
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
        assert_eq!(json["price"], products[0].price.to_string());
        let back: Product = serde_json::from_value(json).unwrap();
        assert_eq!(back, products[0]);
    }

    fn input(v: Value) -> ProductInput {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn accepts_strings_and_exact_numbers() {
        for (raw, want) in [
            (json!("19.99"), "19.99"),
            (json!(19.99), "19.99"),
            (json!(5), "5.00"),
            (json!("0"), "0.00"),
            (json!("-0"), "0.00"),
            (json!("99999999.99"), "99999999.99"),
            (json!(0.1), "0.10"),
        ] {
            let p = input(json!({"name": "A", "price": raw}))
                .validate()
                .unwrap();
            assert_eq!(p.price.to_string(), want);
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
