//! The compiled schema catalogue and the producer-side validator.
//!
//! Every schema compiles when the catalogue is loaded; a file that does not parse or
//! compile is an error naming the file, and the process must not start. Validation
//! never turns itself off.

use std::{collections::HashMap, fmt, path::Path, str::FromStr};

use crate::topics::{self, TOPICS};

include!(concat!(env!("OUT_DIR"), "/embedded_schemas.rs"));

/// What the producer does with an event that violates its schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SchemaMode {
    /// The command fails and nothing is appended.
    Strict,
    /// The event is appended; a warning is logged and counted.
    Warn,
}

impl SchemaMode {
    /// `EVENT_SCHEMA_MODE` when set, else strict everywhere but `VECTIS_ENV=production`.
    ///
    /// ```
    /// use vectis_schemas::SchemaMode;
    /// assert_eq!(SchemaMode::resolve(None, "production").unwrap(), SchemaMode::Warn);
    /// assert_eq!(SchemaMode::resolve(None, "development").unwrap(), SchemaMode::Strict);
    /// assert_eq!(SchemaMode::resolve(Some("strict"), "production").unwrap(), SchemaMode::Strict);
    /// ```
    pub fn resolve(explicit: Option<&str>, vectis_env: &str) -> Result<Self, InvalidSchemaMode> {
        match explicit.map(str::trim).filter(|s| !s.is_empty()) {
            Some(value) => value.parse(),
            None if vectis_env.eq_ignore_ascii_case("production") => Ok(Self::Warn),
            None => Ok(Self::Strict),
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("EVENT_SCHEMA_MODE must be `strict` or `warn`, not `{0}`")]
pub struct InvalidSchemaMode(String);

impl FromStr for SchemaMode {
    type Err = InvalidSchemaMode;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "strict" => Ok(Self::Strict),
            "warn" => Ok(Self::Warn),
            _ => Err(InvalidSchemaMode(s.to_string())),
        }
    }
}

impl fmt::Display for SchemaMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Strict => "strict",
            Self::Warn => "warn",
        })
    }
}

/// A schema catalogue that cannot be used. Each variant names the file at fault.
#[derive(Debug, thiserror::Error)]
pub enum SchemaLoadError {
    #[error("schema file {file}: cannot read it: {source}")]
    Io {
        file: String,
        #[source]
        source: std::io::Error,
    },
    #[error("schema file {file}: not valid JSON: {source}")]
    Json {
        file: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("schema file {file}: does not compile as a JSON Schema (draft 2020-12): {message}")]
    Compile { file: String, message: String },
    #[error("schema file {file}: name must be <topic folder>/<EventType>.v<N>.json")]
    BadFileName { file: String },
    #[error("schema file {file}: event type {event_type} is not in the topic registry")]
    Unregistered { file: String, event_type: String },
    #[error("schema file {file}: {event_type} belongs in folder `{expected}/`")]
    WrongFolder { file: String, event_type: String, expected: String },
    #[error("schema file {file} is missing: the registry says {event_type} is at version {version}")]
    Missing { file: String, event_type: String, version: u32 },
}

/// One field-level problem in an event's data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// JSON Pointer to the offending value (`""` is the whole object).
    pub path: String,
    pub message: String,
}

/// Why an event's data was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SchemaViolation {
    #[error("no schema for event type {event_type} version {version}")]
    UnknownEventType { event_type: String, version: u32 },
    #[error("{event_type} v{version} violates its schema: {}", format_errors(.errors))]
    Invalid { event_type: String, version: u32, errors: Vec<FieldError> },
}

fn format_errors(errors: &[FieldError]) -> String {
    errors
        .iter()
        .map(|e| {
            let path = if e.path.is_empty() { "/" } else { &e.path };
            format!("{path}: {}", e.message)
        })
        .collect::<Vec<_>>()
        .join("; ")
}

struct CompiledSchema {
    validator: jsonschema::Validator,
}

/// Every event schema, compiled. Cheap to share behind an `Arc`.
pub struct SchemaCatalog {
    schemas: HashMap<(String, u32), CompiledSchema>,
}

impl fmt::Debug for SchemaCatalog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut keys: Vec<_> = self.schemas.keys().collect();
        keys.sort();
        f.debug_struct("SchemaCatalog").field("schemas", &keys).finish()
    }
}

impl SchemaCatalog {
    /// The schemas built into this binary.
    pub fn embedded() -> Result<Self, SchemaLoadError> {
        Self::compile(
            EMBEDDED_SCHEMAS
                .iter()
                .map(|(file, text)| (format!("schemas/events/{file}"), Ok(((*file).to_string(), (*text).to_string())))),
        )
    }

    /// The schemas under `dir` (laid out as `schemas/events/`): lets an operator run
    /// against edited files without a rebuild.
    pub fn from_dir(dir: &Path) -> Result<Self, SchemaLoadError> {
        let mut files = Vec::new();
        let read_dir = |path: &Path| {
            std::fs::read_dir(path).map_err(|source| SchemaLoadError::Io { file: path.display().to_string(), source })
        };
        for topic_dir in read_dir(dir)? {
            let topic_dir =
                topic_dir.map_err(|source| SchemaLoadError::Io { file: dir.display().to_string(), source })?.path();
            if !topic_dir.is_dir() {
                continue;
            }
            for entry in read_dir(&topic_dir)? {
                let path = entry
                    .map_err(|source| SchemaLoadError::Io { file: topic_dir.display().to_string(), source })?
                    .path();
                if path.extension().is_some_and(|e| e == "json") {
                    files.push(path);
                }
            }
        }
        files.sort();
        Self::compile(files.into_iter().map(|path| {
            let shown = path.display().to_string();
            let relative =
                path.strip_prefix(dir).map(|p| p.to_string_lossy().into_owned()).unwrap_or_else(|_| shown.clone());
            let text =
                std::fs::read_to_string(&path).map_err(|source| SchemaLoadError::Io { file: shown.clone(), source });
            (shown, text.map(|t| (relative, t)))
        }))
    }

    /// `from_dir` when a directory is given, the embedded schemas otherwise.
    pub fn load(dir: Option<&Path>) -> Result<Self, SchemaLoadError> {
        match dir {
            Some(dir) => Self::from_dir(dir),
            None => Self::embedded(),
        }
    }

    fn compile(
        files: impl Iterator<Item = (String, Result<(String, String), SchemaLoadError>)>,
    ) -> Result<Self, SchemaLoadError> {
        let mut schemas = HashMap::new();
        for (shown, contents) in files {
            let (relative, text) = contents?;
            let (folder, event_type, version) =
                parse_schema_path(&relative).ok_or_else(|| SchemaLoadError::BadFileName { file: shown.clone() })?;
            let topic = topics::topic_for_event_type(&event_type)
                .ok_or_else(|| SchemaLoadError::Unregistered { file: shown.clone(), event_type: event_type.clone() })?;
            if topic.schema_dir != folder {
                return Err(SchemaLoadError::WrongFolder {
                    file: shown,
                    event_type,
                    expected: topic.schema_dir.to_string(),
                });
            }
            let schema: serde_json::Value =
                serde_json::from_str(&text).map_err(|source| SchemaLoadError::Json { file: shown.clone(), source })?;
            let validator = jsonschema::options()
                .with_draft(jsonschema::Draft::Draft202012)
                .should_validate_formats(true)
                .build(&schema)
                .map_err(|e| SchemaLoadError::Compile { file: shown.clone(), message: e.to_string() })?;
            schemas.insert((event_type, version), CompiledSchema { validator });
        }
        for topic in TOPICS {
            for spec in topic.event_types {
                if !schemas.contains_key(&(spec.name.to_string(), spec.current_version)) {
                    return Err(SchemaLoadError::Missing {
                        file: format!(
                            "schemas/events/{}/{}.v{}.json",
                            topic.schema_dir, spec.name, spec.current_version
                        ),
                        event_type: spec.name.to_string(),
                        version: spec.current_version,
                    });
                }
            }
        }
        Ok(Self { schemas })
    }

    /// How many schema files the catalogue holds (every version of every type).
    pub fn len(&self) -> usize {
        self.schemas.len()
    }

    pub fn is_empty(&self) -> bool {
        self.schemas.is_empty()
    }

    /// Checks `data` against the schema of `event_type` at `version`, listing every
    /// field that is wrong.
    ///
    /// ```
    /// use vectis_schemas::{SchemaCatalog, SchemaViolation};
    /// let catalog = SchemaCatalog::embedded().expect("built-in schemas compile");
    /// let data = serde_json::json!({"order_id": "not-a-uuid"});
    /// match catalog.validate("OrderConfirmed", 1, &data) {
    ///     Err(SchemaViolation::Invalid { errors, .. }) => assert_eq!(errors[0].path, "/order_id"),
    ///     other => panic!("expected a violation, got {other:?}"),
    /// }
    /// ```
    pub fn validate(&self, event_type: &str, version: u32, data: &serde_json::Value) -> Result<(), SchemaViolation> {
        let schema = self
            .schemas
            .get(&(event_type.to_string(), version))
            .ok_or_else(|| SchemaViolation::UnknownEventType { event_type: event_type.to_string(), version })?;
        let errors: Vec<FieldError> = schema
            .validator
            .iter_errors(data)
            .map(|e| FieldError { path: e.instance_path.to_string(), message: e.to_string() })
            .collect();
        if errors.is_empty() {
            Ok(())
        } else {
            Err(SchemaViolation::Invalid { event_type: event_type.to_string(), version, errors })
        }
    }
}

/// `orders/OrderPlaced.v1.json` → (`orders`, `OrderPlaced`, 1).
fn parse_schema_path(relative: &str) -> Option<(String, String, u32)> {
    let relative = relative.replace('\\', "/");
    let (folder, file) = relative.rsplit_once('/')?;
    let stem = file.strip_suffix(".json")?;
    let (event_type, version) = stem.rsplit_once(".v")?;
    let version: u32 = version.parse().ok()?;
    if event_type.is_empty() || version == 0 {
        return None;
    }
    Some((folder.rsplit('/').next()?.to_string(), event_type.to_string(), version))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_mode_follows_the_environment_unless_set() {
        assert_eq!(SchemaMode::resolve(None, "development").ok(), Some(SchemaMode::Strict));
        assert_eq!(SchemaMode::resolve(None, "test").ok(), Some(SchemaMode::Strict));
        assert_eq!(SchemaMode::resolve(None, "production").ok(), Some(SchemaMode::Warn));
        assert_eq!(SchemaMode::resolve(Some("strict"), "production").ok(), Some(SchemaMode::Strict));
        assert_eq!(SchemaMode::resolve(Some("WARN"), "development").ok(), Some(SchemaMode::Warn));
        assert!(SchemaMode::resolve(Some("lenient"), "development").is_err());
    }

    #[test]
    fn schema_paths_parse() {
        assert_eq!(
            parse_schema_path("inventory/StockAdjusted.v2.json"),
            Some(("inventory".into(), "StockAdjusted".into(), 2))
        );
        assert_eq!(parse_schema_path("inventory/StockAdjusted.json"), None);
        assert_eq!(parse_schema_path("StockAdjusted.v1.json"), None);
        assert_eq!(parse_schema_path("inventory/StockAdjusted.v0.json"), None);
    }
}
