//! Input checks shared by the repositories. Every check runs before anything is written.

use chrono::{DateTime, Datelike, Utc};

use crate::error::{ForgeError, Result};

/// Refuses text holding a NUL character (U+0000): PostgreSQL cannot store one in `text`
/// or `jsonb` while SQLite would, so it is refused on both backends alike.
pub(crate) fn no_nul(field: &'static str, value: &str) -> Result<()> {
    if value.contains('\0') {
        return Err(ForgeError::invalid(
            field,
            "must not contain a NUL character (U+0000)",
        ));
    }
    Ok(())
}

/// `value` trimmed; refused when blank, longer than `max_chars` characters, or holding a
/// NUL character.
pub(crate) fn text(field: &'static str, value: &str, max_chars: usize) -> Result<String> {
    no_nul(field, value)?;
    let trimmed = value.trim();
    if trimmed.is_empty() {
        return Err(ForgeError::invalid(field, "must not be blank"));
    }
    let len = trimmed.chars().count();
    if len > max_chars {
        return Err(ForgeError::invalid(
            field,
            format!("is {len} characters long, at most {max_chars} allowed"),
        ));
    }
    Ok(trimmed.to_owned())
}

/// Like [`text`] for an optional value; `None` stays `None`.
pub(crate) fn optional_text(
    field: &'static str,
    value: Option<&str>,
    max_chars: usize,
) -> Result<Option<String>> {
    value.map(|v| text(field, v, max_chars)).transpose()
}

/// Refuses an instant that is not in the future.
pub(crate) fn future(field: &'static str, at: DateTime<Utc>) -> Result<DateTime<Utc>> {
    if at <= crate::now() {
        return Err(ForgeError::invalid(field, "must be in the future"));
    }
    Ok(at)
}

/// The years an instant may fall in: both backends store and compare these alike.
/// PostgreSQL's `timestamptz` ends before year 294 277 and begins in 4714 BC; SQLite keeps
/// instants as RFC 3339 text and compares them as text, which orders them correctly only
/// with four-digit years (`+10000-…` sorts before `2025-…`).
pub(crate) const INSTANT_YEARS: std::ops::RangeInclusive<i32> = 1..=9999;

/// Refuses an instant outside [`INSTANT_YEARS`].
pub(crate) fn storable_instant(field: &'static str, at: DateTime<Utc>) -> Result<DateTime<Utc>> {
    if !INSTANT_YEARS.contains(&at.year()) {
        return Err(ForgeError::invalid(
            field,
            format!(
                "{at} is outside the years {}..={}",
                INSTANT_YEARS.start(),
                INSTANT_YEARS.end()
            ),
        ));
    }
    Ok(at)
}

/// Refuses a number outside `min..=max`.
pub(crate) fn in_range(field: &'static str, value: i64, min: i64, max: i64) -> Result<i64> {
    if value < min || value > max {
        return Err(ForgeError::invalid(
            field,
            format!("{value} is outside {min}..={max}"),
        ));
    }
    Ok(value)
}

/// A JSON object input, at most [`forge_entity::JSON_MAX_BYTES`]; `null` becomes `{}`.
pub(crate) fn json_object(
    field: &'static str,
    value: serde_json::Value,
) -> Result<serde_json::Value> {
    match value {
        serde_json::Value::Null => Ok(serde_json::Value::Object(serde_json::Map::new())),
        serde_json::Value::Object(_) => json_document(field, value),
        _ => Err(ForgeError::invalid(field, "must be a JSON object")),
    }
}

/// The deepest nesting of arrays and objects a JSON input may have. Forge reads every
/// JSON column back with `serde_json`, which gives up beyond 128 levels: a deeper document
/// would be stored and then never read again.
pub(crate) const JSON_MAX_DEPTH: usize = 100;

/// Any JSON document input, refused when it holds a NUL character, is nested deeper than
/// [`JSON_MAX_DEPTH`], or its text form (as PostgreSQL prints it) is over the size cap the
/// database holds every JSON column to ([`forge_entity::JSON_MAX_BYTES`], 64 KiB).
pub(crate) fn json_document(
    field: &'static str,
    value: serde_json::Value,
) -> Result<serde_json::Value> {
    // First, so that the recursive checks below never go deeper than this.
    let depth = json_depth(&value);
    if depth > JSON_MAX_DEPTH {
        return Err(ForgeError::invalid(
            field,
            format!("a JSON document nested over {JSON_MAX_DEPTH} levels deep"),
        ));
    }
    json_no_nul(field, &value)?;
    json_fits(field, &value)?;
    Ok(value)
}

/// Refuses `value` when its text form (as PostgreSQL prints it) is over
/// [`forge_entity::JSON_MAX_BYTES`].
pub(crate) fn json_fits(field: &'static str, value: &serde_json::Value) -> Result<()> {
    let size = json_size(value);
    if size > forge_entity::JSON_MAX_BYTES {
        return Err(ForgeError::invalid(
            field,
            format!(
                "a JSON document of {size} bytes; at most {} allowed",
                forge_entity::JSON_MAX_BYTES
            ),
        ));
    }
    Ok(())
}

/// The size of `value` in bytes as the database measures it: see [`jsonb_text_len`].
pub(crate) fn json_size(value: &serde_json::Value) -> usize {
    jsonb_text_len(value)
}

/// How deeply arrays and objects nest in `value` (a scalar: 0; `[]`: 1), counted without
/// recursion and only up to one level past [`JSON_MAX_DEPTH`].
fn json_depth(value: &serde_json::Value) -> usize {
    use serde_json::Value;
    let mut deepest = 0;
    let mut pending = vec![(value, 1usize)];
    while let Some((value, depth)) = pending.pop() {
        let children: Vec<&Value> = match value {
            Value::Array(items) => items.iter().collect(),
            Value::Object(map) => map.values().collect(),
            _ => continue,
        };
        deepest = deepest.max(depth);
        if deepest > JSON_MAX_DEPTH {
            break;
        }
        pending.extend(children.into_iter().map(|child| (child, depth + 1)));
    }
    deepest
}

/// Refuses a JSON document with a NUL character (`\u0000`) in any string or key:
/// PostgreSQL's `jsonb` cannot hold one.
fn json_no_nul(field: &'static str, value: &serde_json::Value) -> Result<()> {
    use serde_json::Value;
    match value {
        Value::String(s) => no_nul(field, s),
        Value::Array(items) => items.iter().try_for_each(|v| json_no_nul(field, v)),
        Value::Object(map) => map.iter().try_for_each(|(k, v)| {
            no_nul(field, k)?;
            json_no_nul(field, v)
        }),
        _ => Ok(()),
    }
}

/// The length of `value` as PostgreSQL prints a `jsonb` (`{"a": 1, "b": [1, 2]}`: a space
/// after every `:` and `,`; numbers in plain decimal notation), which is what the
/// database's size `CHECK` measures; SQLite stores the compact form, which is never longer.
fn jsonb_text_len(value: &serde_json::Value) -> usize {
    use serde_json::Value;
    let separators = |n: usize| 2 * n.saturating_sub(1);
    match value {
        Value::Array(items) => {
            2 + separators(items.len()) + items.iter().map(jsonb_text_len).sum::<usize>()
        }
        Value::Object(map) => {
            2 + separators(map.len())
                + map
                    .iter()
                    .map(|(k, v)| Value::from(k.as_str()).to_string().len() + 2 + jsonb_text_len(v))
                    .sum::<usize>()
        }
        Value::Number(n) => numeric_text_len(&n.to_string()),
        scalar => scalar.to_string().len(),
    }
}

/// The length of the JSON number `text` (as `serde_json` writes it: `-1.5e-7`) as
/// PostgreSQL prints it back from a `jsonb`, where it is a `numeric` in plain decimal
/// notation with the scale it was written with (`1e308`: 309 digits; `1.5e-7`:
/// `0.00000015`). Never shorter than `text`'s own length; a negative zero, which
/// PostgreSQL prints without its sign, is counted one byte long.
fn numeric_text_len(text: &str) -> usize {
    let (sign, unsigned) = match text.strip_prefix('-') {
        Some(rest) => (1, rest),
        None => (0, text),
    };
    let (mantissa, exponent) = match unsigned.split_once(['e', 'E']) {
        Some((m, e)) => (m, e.parse::<i64>().unwrap_or(0)),
        None => (unsigned, 0),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let digits = int.len() + frac.len();
    let leading_zeros = int
        .bytes()
        .chain(frac.bytes())
        .take_while(|&b| b == b'0')
        .count();
    // Where the decimal point falls among the significant digits.
    let point = int.len() as i64 + exponent - leading_zeros as i64;
    let int_len = if leading_zeros == digits || point <= 0 {
        1
    } else {
        point as usize
    };
    let scale = (frac.len() as i64 - exponent).max(0) as usize;
    let printed = sign + int_len + if scale > 0 { 1 + scale } else { 0 };
    printed.max(text.len())
}

/// Parses a caller's string into one of the entity enums, as a validation error.
pub(crate) fn parse_enum<T>(field: &'static str, value: &str) -> Result<T>
where
    T: std::str::FromStr,
    T::Err: std::fmt::Display,
{
    value
        .parse()
        .map_err(|e: T::Err| ForgeError::invalid(field, e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jsonb_text_len_counts_as_postgres_prints() {
        let doc = serde_json::json!({"a": 1, "b": [1, 2], "c": {"d": "x\"y"}});
        // PostgreSQL: {"a": 1, "b": [1, 2], "c": {"d": "x\"y"}}
        assert_eq!(
            jsonb_text_len(&doc),
            r#"{"a": 1, "b": [1, 2], "c": {"d": "x\"y"}}"#.len()
        );
        assert_eq!(jsonb_text_len(&serde_json::json!([])), 2);
        let big = serde_json::json!({"k": "x".repeat(70_000)});
        assert!(json_document("metadata", big).is_err());
        let small = serde_json::json!({"k": "x".repeat(60_000)});
        assert!(json_object("metadata", small).is_ok());
        assert!(json_document("data", serde_json::json!({"k": ["a\u{0}b"]})).is_err());
        assert!(json_document("data", serde_json::json!({"a\u{0}": 1})).is_err());
        assert!(text("name", "a\0b", 10).is_err());
    }

    #[test]
    fn numbers_count_as_postgres_prints_them() {
        for (written, printed) in [
            ("0", "0"),
            ("-12", "-12"),
            ("18446744073709551615", "18446744073709551615"),
            ("0.1", "0.1"),
            ("100.0", "100.0"),
            ("-2.5e-10", "-0.00000000025"),
            ("1.5e-7", "0.00000015"),
            ("12345.0", "12345.0"),
            ("1e16", "10000000000000000"),
            ("1.5e16", "15000000000000000"),
        ] {
            assert_eq!(numeric_text_len(written), printed.len(), "{written}");
        }
        // PostgreSQL would print "12345", but SQLite stores what was written.
        assert_eq!(numeric_text_len("1.2345e4"), "1.2345e4".len());
        assert_eq!(numeric_text_len("1e308"), 309);
        assert_eq!(numeric_text_len("5e-324"), 326);
        let doc = serde_json::json!({ "k": vec![1e308; 300] });
        assert!(doc.to_string().len() < 3_000);
        assert!(
            json_document("data", doc).is_err(),
            "about 93 KB on PostgreSQL"
        );
    }

    #[test]
    fn depth_is_bounded() {
        let nested = |levels: usize| {
            let mut doc = serde_json::json!(1);
            for _ in 0..levels {
                doc = serde_json::json!([doc]);
            }
            doc
        };
        assert_eq!(json_depth(&serde_json::json!(1)), 0);
        assert_eq!(json_depth(&serde_json::json!({"a": [1, {"b": []}]})), 4);
        assert!(json_document("data", nested(JSON_MAX_DEPTH)).is_ok());
        assert!(json_document("data", nested(JSON_MAX_DEPTH + 1)).is_err());
    }

    #[test]
    fn instants_stay_within_four_digit_years() {
        use chrono::TimeZone;
        let at = |y| {
            Utc.with_ymd_and_hms(y, 6, 1, 0, 0, 0)
                .single()
                .unwrap_or_default()
        };
        assert!(storable_instant("at", at(1)).is_ok());
        assert!(storable_instant("at", at(9999)).is_ok());
        assert!(storable_instant("at", at(10_000)).is_err());
        assert!(storable_instant("at", at(0)).is_err());
        assert!(storable_instant("at", DateTime::<Utc>::MIN_UTC).is_err());
        assert!(storable_instant("at", DateTime::<Utc>::MAX_UTC).is_err());
    }

    #[test]
    fn text_trims_and_bounds() {
        assert_eq!(text("name", "  Todo  ", 10).ok().as_deref(), Some("Todo"));
        assert!(text("name", "   ", 10).is_err());
        assert!(text("name", &"é".repeat(11), 10).is_err());
        assert!(text("name", &"é".repeat(10), 10).is_ok());
    }

    #[test]
    fn range_and_future() {
        assert!(in_range("progress", 101, 0, 100).is_err());
        assert!(in_range("progress", 100, 0, 100).is_ok());
        assert!(future("expires_at", Utc::now()).is_err());
    }
}
