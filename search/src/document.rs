//! A document as the engines take it: a JSON object with an `id`, and the change a
//! projection asks an engine to make.

use serde_json::{Map, Value};

use crate::declaration::IndexDeclaration;

pub type Body = Map<String, Value>;

/// What the engine must do for one document.
#[derive(Debug, Clone, PartialEq)]
pub enum DocumentChange {
    /// `full` is the whole document; `changed` only the fields that differ from what
    /// the engine has (the whole document when it is new). Both carry `id`.
    Upsert {
        id: String,
        full: Body,
        changed: Body,
    },
    Delete {
        id: String,
    },
}

/// The document the engine stores: `id` and the declared fields.
pub fn engine_document(declaration: &IndexDeclaration, key: &str, body: &Body) -> Body {
    let mut document = Body::new();
    document.insert("id".into(), Value::String(key.to_string()));
    for field in declaration.fields {
        if let Some(value) = body.get(field.name) {
            document.insert(field.name.to_string(), value.clone());
        }
    }
    document
}
