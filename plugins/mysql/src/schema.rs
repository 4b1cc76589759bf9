//! JSON Schema fragments shared by the actions' params and outputs.

use medic_sdk::{Value, json};

/// A connection name the plan grants (`grants.sql`), never an address.
pub fn server_param() -> Value {
    json!({
        "type": "string",
        "pattern": "^[A-Za-z0-9_.-]+$",
        "description": "Name of a SQL connection the plan grants (grants.sql)"
    })
}

/// An object with these properties, `required` ones, and nothing else.
pub fn object(props: &[(&str, Value)], required: &[&str]) -> Value {
    let properties: serde_json::Map<String, Value> = props
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    json!({
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": false
    })
}
