//! A JSON Schema validator for the subset graders need: `type` (one or a
//! list, with `integer`), `properties`, `required`, `additionalProperties:
//! false`, `items`, `minItems`/`maxItems`, `enum`, `const`,
//! `minimum`/`maximum`, `minLength`/`maxLength`. Unknown keywords are an
//! error rather than ignored, so a grader never silently checks less than
//! its schema says.

use serde_json::{Map, Value};

const KNOWN: &[&str] = &[
    "$schema",
    "title",
    "description",
    "type",
    "properties",
    "required",
    "additionalProperties",
    "items",
    "minItems",
    "maxItems",
    "enum",
    "const",
    "minimum",
    "maximum",
    "minLength",
    "maxLength",
];

/// Checks `doc` against `schema`; the error names the first failing place
/// as a JSON pointer.
pub fn validate(schema: &Value, doc: &Value) -> Result<(), String> {
    check(schema, doc, "")
}

fn check(schema: &Value, v: &Value, at: &str) -> Result<(), String> {
    let Some(s) = schema.as_object() else {
        return match schema {
            Value::Bool(true) => Ok(()),
            Value::Bool(false) => Err(format!("{at}: nothing is allowed here")),
            _ => Err(format!("{at}: the schema is not an object")),
        };
    };
    if let Some(k) = s.keys().find(|k| !KNOWN.contains(&k.as_str())) {
        return Err(format!(
            "{at}: the schema keyword `{k}` is not supported by this grader"
        ));
    }
    let here = if at.is_empty() { "/" } else { at };
    if let Some(t) = s.get("type") {
        let types: Vec<&str> = match t {
            Value::String(t) => vec![t.as_str()],
            Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
            _ => return Err(format!("{here}: `type` must be a string or a list")),
        };
        if !types.iter().any(|t| is_type(v, t)) {
            return Err(format!(
                "{here}: is {}, expected {}",
                kind(v),
                types.join(" or ")
            ));
        }
    }
    if let Some(c) = s.get("const")
        && c != v
    {
        return Err(format!("{here}: is {v}, expected {c}"));
    }
    if let Some(Value::Array(options)) = s.get("enum")
        && !options.contains(v)
    {
        return Err(format!(
            "{here}: {v} is not one of {}",
            Value::Array(options.clone())
        ));
    }
    if let Some(n) = v.as_f64() {
        if let Some(min) = s.get("minimum").and_then(Value::as_f64)
            && n < min
        {
            return Err(format!("{here}: {n} is below the minimum {min}"));
        }
        if let Some(max) = s.get("maximum").and_then(Value::as_f64)
            && n > max
        {
            return Err(format!("{here}: {n} is above the maximum {max}"));
        }
    }
    if let Some(text) = v.as_str() {
        let len = text.chars().count() as u64;
        bounds(s, "minLength", "maxLength", len, here, "characters")?;
    }
    if let Some(items) = v.as_array() {
        bounds(s, "minItems", "maxItems", items.len() as u64, here, "items")?;
        if let Some(item_schema) = s.get("items") {
            for (i, item) in items.iter().enumerate() {
                check(item_schema, item, &format!("{at}/{i}"))?;
            }
        }
    }
    if let Some(obj) = v.as_object() {
        object(s, obj, at, here)?;
    }
    Ok(())
}

fn object(
    s: &Map<String, Value>,
    obj: &Map<String, Value>,
    at: &str,
    here: &str,
) -> Result<(), String> {
    if let Some(Value::Array(required)) = s.get("required") {
        for r in required.iter().filter_map(Value::as_str) {
            if !obj.contains_key(r) {
                return Err(format!("{here}: the property `{r}` is missing"));
            }
        }
    }
    let props = s.get("properties").and_then(Value::as_object);
    for (k, val) in obj {
        match props.and_then(|p| p.get(k)) {
            Some(p) => check(p, val, &format!("{at}/{k}"))?,
            None if s.get("additionalProperties") == Some(&Value::Bool(false)) => {
                return Err(format!("{here}: the property `{k}` is not allowed"));
            }
            None => {}
        }
    }
    Ok(())
}

fn bounds(
    s: &Map<String, Value>,
    min_key: &str,
    max_key: &str,
    n: u64,
    here: &str,
    what: &str,
) -> Result<(), String> {
    if let Some(min) = s.get(min_key).and_then(Value::as_u64)
        && n < min
    {
        return Err(format!("{here}: has {n} {what}, expected at least {min}"));
    }
    if let Some(max) = s.get(max_key).and_then(Value::as_u64)
        && n > max
    {
        return Err(format!("{here}: has {n} {what}, expected at most {max}"));
    }
    Ok(())
}

fn is_type(v: &Value, t: &str) -> bool {
    match t {
        "integer" => v.as_i64().is_some() || v.as_u64().is_some(),
        "number" => v.is_number(),
        "string" => v.is_string(),
        "boolean" => v.is_boolean(),
        "array" => v.is_array(),
        "object" => v.is_object(),
        "null" => v.is_null(),
        _ => false,
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "an integer",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use serde_json::json;

    fn counts() -> Value {
        json!({
            "type": "object",
            "required": ["matched", "unmatched_bank"],
            "additionalProperties": false,
            "properties": {
                "matched": {"type": "integer", "minimum": 0},
                "unmatched_bank": {"type": "integer", "minimum": 0},
                "notes": {"type": "array", "items": {"type": "string", "minLength": 1}, "maxItems": 2}
            }
        })
    }

    #[test]
    fn accepts_a_conforming_document() {
        validate(
            &counts(),
            &json!({"matched": 14, "unmatched_bank": 2, "notes": ["ok"]}),
        )
        .unwrap();
    }

    #[test]
    fn names_the_first_failing_place() {
        let s = counts();
        let e = |d: Value| validate(&s, &d).unwrap_err();
        assert_eq!(
            e(json!({"matched": "14", "unmatched_bank": 2})),
            "/matched: is a string, expected integer"
        );
        assert_eq!(
            e(json!({"matched": 1})),
            "/: the property `unmatched_bank` is missing"
        );
        assert_eq!(
            e(json!({"matched": 1, "unmatched_bank": 2, "x": 1})),
            "/: the property `x` is not allowed"
        );
        assert_eq!(
            e(json!({"matched": -1, "unmatched_bank": 2})),
            "/matched: -1 is below the minimum 0"
        );
        assert_eq!(
            e(json!({"matched": 1, "unmatched_bank": 2, "notes": ["a", ""]})),
            "/notes/1: has 0 characters, expected at least 1"
        );
        assert_eq!(e(json!([1])), "/: is an array, expected object");
    }

    #[test]
    fn unknown_keywords_are_refused_not_ignored() {
        let e = validate(&json!({"pattern": "^a"}), &json!("a")).unwrap_err();
        assert!(e.contains("`pattern` is not supported"), "{e}");
    }
}
