//! Input checks shared by the repositories. Every check runs before anything is written.

use chrono::{DateTime, Utc};

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
    if at <= Utc::now() {
        return Err(ForgeError::invalid(field, "must be in the future"));
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

/// Any JSON document input, refused when its text form is over the size cap the database
/// holds every JSON column to ([`forge_entity::JSON_MAX_BYTES`], 64 KiB).
pub(crate) fn json_document(
    field: &'static str,
    value: serde_json::Value,
) -> Result<serde_json::Value> {
    json_no_nul(field, &value)?;
    let size = jsonb_text_len(&value);
    if size > forge_entity::JSON_MAX_BYTES {
        return Err(ForgeError::invalid(
            field,
            format!(
                "a JSON document of {size} bytes; at most {} allowed",
                forge_entity::JSON_MAX_BYTES
            ),
        ));
    }
    Ok(value)
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
/// after every `:` and `,`), which is what the database's size `CHECK` measures; SQLite
/// stores the compact form, which is never longer.
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
        scalar => scalar.to_string().len(),
    }
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
