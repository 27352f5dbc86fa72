//! Prices: the one grammar a price is accepted in, its parsing from the raw
//! JSON of a request, its serialization (always two decimal places, whatever
//! the database returned), and the OpenAPI schemas that state both.
//!
//! A price is written in plain decimal notation: `0` or digits without a
//! leading zero, at most 8 of them, then optionally `.` and one or two
//! digits ([`PATTERN`]). Nothing is rounded: a third decimal place, an
//! exponent, a sign, a separator or surrounding spaces are refused with a
//! message saying why. A JSON number is judged by its text as sent (through
//! `serde_json`'s `RawValue`), never through an `f64`, so that
//! `19.999999999999999` is refused instead of becoming `20.00`. The only
//! number accepted beyond the grammar is a negative zero (`-0`, `-0.0`),
//! which is zero: JSON Schema's `minimum: 0` admits it.

use std::str::FromStr;

use rust_decimal::Decimal;
use serde::{Deserialize, Deserializer, Serializer};
use serde_json::value::RawValue;
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Schema, Type};

use super::PRICE_SCALE;

/// The accepted text of a price, as a regular expression (also the
/// `pattern` of the OpenAPI schemas).
pub const PATTERN: &str = r"^(0|[1-9][0-9]{0,7})(\.[0-9]{1,2})?$";

/// The text of a served price: always two decimal places.
pub const SERVED_PATTERN: &str = r"^(0|[1-9][0-9]{0,7})\.[0-9]{2}$";

/// The largest integer part: 8 digits, what `NUMERIC(10, 2)` holds.
const MAX_INTEGER_DIGITS: usize = 8;

/// Parses the raw JSON of the `price` field (a string or a number).
///
/// # Errors
///
/// A message for the client saying what is wrong with the value.
pub(crate) fn parse(raw: Option<&RawValue>) -> Result<Decimal, String> {
    let text = match raw.map(RawValue::get) {
        None | Some("null") => return Err("is required".into()),
        Some(text) => text,
    };
    match text.as_bytes().first() {
        Some(b'"') => {
            let s: String = serde_json::from_str(text)
                .map_err(|_| "must be a decimal string such as \"19.99\"".to_string())?;
            plain_decimal(&s)
        }
        Some(b'-') if is_negative_zero(text) => Ok(Decimal::new(0, PRICE_SCALE)),
        Some(b'-' | b'0'..=b'9') => plain_decimal(text),
        Some(b't' | b'f') => Err(type_error("a boolean")),
        Some(b'[') => Err(type_error("an array")),
        Some(b'{') => Err(type_error("an object")),
        _ => Err(type_error("something else")),
    }
}

fn type_error(what: &str) -> String {
    format!("must be a decimal string such as \"19.99\" or a number, not {what}")
}

/// `-0`, `-0.0` or `-0.00`: zero, written with a sign.
fn is_negative_zero(text: &str) -> bool {
    matches!(text, "-0" | "-0.0" | "-0.00")
}

/// Checks `s` against [`PATTERN`] and converts it exactly, with two places.
fn plain_decimal(s: &str) -> Result<Decimal, String> {
    let lower = s.to_ascii_lowercase();
    let unsigned = lower.trim_start_matches(['+', '-']);
    if ["nan", "inf", "infinity"].contains(&unsigned) {
        return Err("must be a finite number".into());
    }
    if s.starts_with('-') && s.len() > 1 {
        return Err("must not be negative".into());
    }
    let shape = || {
        format!(
            "must be written as plain decimal digits with at most {PRICE_SCALE} decimal \
             places, such as \"19.99\" (no sign, exponent, separator or spaces), not {s:?}"
        )
    };
    let (integer, fraction) = match s.split_once('.') {
        Some((integer, fraction)) => (integer, Some(fraction)),
        None => (s, None),
    };
    let digits = |part: &str| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit());
    if !digits(integer) || fraction.is_some_and(|f| !digits(f)) {
        return Err(shape());
    }
    if let Some(fraction) = fraction
        && fraction.len() > PRICE_SCALE as usize
    {
        return Err(format!(
            "must have at most {PRICE_SCALE} decimal places (got {}): prices are not rounded",
            fraction.len()
        ));
    }
    if integer.len() > 1 && integer.starts_with('0') {
        return Err(shape());
    }
    if integer.len() > MAX_INTEGER_DIGITS {
        return Err(format!(
            "is too large: the maximum is {}",
            super::max_price()
        ));
    }
    let mut price = Decimal::from_str(s).map_err(|_| shape())?;
    price.rescale(PRICE_SCALE);
    Ok(price)
}

/// Serde for [`Product::price`](super::Product::price): written as a string
/// with exactly two decimal places (PostgreSQL returns `0` for a zero
/// `NUMERIC(10, 2)`, SQLite the text it stored), read back from a string.
pub(crate) mod text {
    use super::*;

    /// Writes `price` with two decimal places.
    pub(crate) fn serialize<S: Serializer>(
        price: &Decimal,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        let mut price = *price;
        price.rescale(PRICE_SCALE);
        serializer.collect_str(&price)
    }

    /// Reads a price written by [`serialize`].
    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Decimal, D::Error> {
        // A `String`, not a `&str`: Postcard and escaped JSON cannot lend one.
        let s = String::deserialize(deserializer)?;
        Decimal::from_str(&s).map_err(serde::de::Error::custom)
    }
}

/// The OpenAPI schema of a served price: a string with two places.
pub(crate) fn served_schema() -> impl Into<RefOr<Schema>> {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some(SERVED_PATTERN))
        .description(Some("Exact decimal with two places, as a string."))
        .examples(["49.99"])
        .build()
}

/// The OpenAPI schema of a price in a request: a string matching
/// [`PATTERN`], or a number in range with at most two decimal places.
pub(crate) fn input_schema() -> impl Into<RefOr<Schema>> {
    let string = ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some(PATTERN))
        .examples(["49.99"]);
    let number = ObjectBuilder::new()
        .schema_type(Type::Number)
        .minimum(Some(0))
        .maximum(Some(99_999_999.99))
        .multiple_of(Some(0.01))
        .description(Some(
            "Written in plain decimal notation (no exponent), at most two decimal places.",
        ));
    let one_of = OneOfBuilder::new()
        .item(string)
        .item(number)
        .description(Some(
            "Required; a decimal string such as \"49.99\" (preferred) or a JSON number, \
             0 to 99999999.99, at most two decimal places; never rounded.",
        ))
        .build();
    Schema::OneOf(one_of)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(text: &str) -> Box<RawValue> {
        RawValue::from_string(text.to_owned()).unwrap()
    }

    fn parsed(text: &str) -> Result<String, String> {
        parse(Some(&raw(text))).map(|d| d.to_string())
    }

    #[test]
    fn accepts_the_grammar_exactly() {
        for (text, want) in [
            (r#""19.99""#, "19.99"),
            ("19.99", "19.99"),
            ("5", "5.00"),
            (r#""0""#, "0.00"),
            ("0", "0.00"),
            ("-0", "0.00"),
            ("-0.0", "0.00"),
            ("0.1", "0.10"),
            ("100.0", "100.00"),
            (r#""99999999.99""#, "99999999.99"),
        ] {
            assert_eq!(parsed(text).as_deref(), Ok(want), "{text}");
        }
    }

    #[test]
    fn refuses_instead_of_rounding() {
        for text in [
            r#""1.000000000000000000000000000001""#,
            "19.999999999999999",
            r#""1_000""#,
            r#""1e2""#,
            "1e2",
            "1E2",
            r#""+5""#,
            r#"".5""#,
            r#""5.""#,
            r#""-0""#,
            r#"" 5""#,
            r#""5 ""#,
            r#""007""#,
            r#""1.234""#,
            "1.000",
            r#""100000000""#,
            "100000000",
            r#""NaN""#,
            r#""Infinity""#,
            r#""-1""#,
            "-0.01",
            r#""""#,
            "true",
            "[]",
            "{}",
        ] {
            assert!(parsed(text).is_err(), "{text} was accepted");
        }
        assert_eq!(parse(None), Err("is required".into()));
        assert_eq!(parse(Some(&raw("null"))), Err("is required".into()));
    }

    #[test]
    fn the_pattern_and_the_parser_agree() {
        // The grammar as documented, checked by hand on the parser's verdicts.
        for (s, ok) in [
            ("0", true),
            ("0.5", true),
            ("12345678.12", true),
            ("123456789", false),
            ("01", false),
            ("1.123", false),
            ("1,5", false),
        ] {
            assert_eq!(plain_decimal(s).is_ok(), ok, "{s}");
        }
    }

    #[test]
    fn prices_are_served_with_two_places() {
        let mut out = Vec::new();
        let mut ser = serde_json::Serializer::new(&mut out);
        text::serialize(&Decimal::ZERO, &mut ser).unwrap();
        assert_eq!(out, br#""0.00""#);
    }
}
