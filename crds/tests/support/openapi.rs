//! The OpenAPI v3 keywords the generated CRDs use, checked with the apiserver's messages
//! (`k8s.io/apiextensions-apiserver` validation), so that the offline check and the real server
//! can share one expectation per invalid example.

use serde_json::Value;

/// Errors of `value` against `schema`, each prefixed with the field path like the apiserver's.
pub fn check(schema: &Value, value: &Value) -> Vec<String> {
    let mut errors = Vec::new();
    walk(schema, value, "", &mut errors);
    errors
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn quoted(v: &Value) -> String {
    match v {
        Value::String(s) => format!("\"{s}\""),
        other => format!("\"{other}\""),
    }
}

fn walk(schema: &Value, value: &Value, path: &str, errors: &mut Vec<String>) {
    if value.is_null() {
        if schema["nullable"] != Value::Bool(true) && !path.is_empty() {
            errors.push(format!(
                "{path}: Invalid value: \"null\": {path} in body must be of type {}",
                schema["type"]
            ));
        }
        return;
    }
    let ty = schema["type"].as_str().unwrap_or("");
    let type_ok = match ty {
        "object" => value.is_object(),
        "array" => value.is_array(),
        "string" => value.is_string(),
        "integer" => value.is_i64() || value.is_u64(),
        "number" => value.is_number(),
        "boolean" => value.is_boolean(),
        _ => true,
    };
    if !type_ok {
        errors.push(format!(
            "{path}: Invalid value: {value}: {path} in body must be of type {ty}"
        ));
        return;
    }
    if let Some(allowed) = schema["enum"].as_array().filter(|a| !a.contains(value)) {
        let list: Vec<String> = allowed
            .iter()
            .filter(|v| !v.is_null())
            .map(quoted)
            .collect();
        errors.push(format!(
            "{path}: Unsupported value: {}: supported values: {}",
            quoted(value),
            list.join(", ")
        ));
    }
    if let Some(n) = value.as_f64() {
        if let Some(min) = schema["minimum"].as_f64().filter(|m| n < *m) {
            errors.push(format!("{path}: Invalid value: {value}: {path} in body should be greater than or equal to {min}"));
        }
        if let Some(max) = schema["maximum"].as_f64().filter(|m| n > *m) {
            errors.push(format!("{path}: Invalid value: {value}: {path} in body should be less than or equal to {max}"));
        }
    }
    if let Some(s) = value.as_str() {
        let len = s.len() as u64;
        if let Some(min) = schema["minLength"].as_u64().filter(|m| len < *m) {
            errors.push(format!(
                "{path}: Invalid value: {value}: {path} in body should be at least {min} chars long"
            ));
        }
        if let Some(max) = schema["maxLength"].as_u64().filter(|m| len > *m) {
            errors.push(format!(
                "{path}: Too long: may not be more than {max} bytes"
            ));
        }
        if let Some(pattern) = schema["pattern"].as_str() {
            let re = regex::Regex::new(pattern).expect("schema pattern compiles");
            if !re.is_match(s) {
                errors.push(format!(
                    "{path}: Invalid value: {value}: {path} in body should match '{pattern}'"
                ));
            }
        }
    }
    if let Some(items) = value.as_array() {
        let n = items.len() as u64;
        if let Some(min) = schema["minItems"].as_u64().filter(|m| n < *m) {
            errors.push(format!(
                "{path}: Invalid value: {n}: {path} in body should have at least {min} items"
            ));
        }
        if let Some(max) = schema["maxItems"].as_u64().filter(|m| n > *m) {
            errors.push(format!(
                "{path}: Too many: {n}: must have at most {max} items"
            ));
        }
        for (i, item) in items.iter().enumerate() {
            walk(&schema["items"], item, &format!("{path}[{i}]"), errors);
        }
    }
    if let Some(map) = value.as_object() {
        let n = map.len() as u64;
        if let Some(max) = schema["maxProperties"].as_u64().filter(|m| n > *m) {
            errors.push(format!(
                "{path}: Too many: {n}: must have at most {max} items"
            ));
        }
        for required in schema["required"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
        {
            if !map.contains_key(required) {
                errors.push(format!("{}: Required value", join(path, required)));
            }
        }
        for (key, child) in map {
            if let Some(sub) = schema["properties"].get(key) {
                walk(sub, child, &join(path, key), errors);
            } else if schema["additionalProperties"].is_object() {
                walk(
                    &schema["additionalProperties"],
                    child,
                    &join(path, key),
                    errors,
                );
            }
        }
    }
}
