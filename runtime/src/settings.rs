//! Helpers for typed settings read once from the environment at startup. Each process
//! builds its own `Settings` struct from these and passes it down explicitly.

use std::{fmt, str::FromStr, time::Duration};

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("{name}={value:?} is not valid: {reason}")]
    Invalid { name: &'static str, value: String, reason: String },
}

/// The environment variable, or `default` when it is unset or empty.
pub fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty()).unwrap_or_else(|| default.to_string())
}

/// The environment variable parsed as `T`, or `default` when unset or empty.
pub fn env_parse<T>(name: &'static str, default: T) -> Result<T, SettingsError>
where
    T: FromStr,
    T::Err: fmt::Display,
{
    match std::env::var(name).ok().filter(|v| !v.trim().is_empty()) {
        None => Ok(default),
        Some(value) => {
            value.trim().parse().map_err(|e: T::Err| SettingsError::Invalid { name, reason: e.to_string(), value })
        }
    }
}

/// A duration written as humans do (`500ms`, `30s`, `24h`).
pub fn env_duration(name: &'static str, default: Duration) -> Result<Duration, SettingsError> {
    match std::env::var(name).ok().filter(|v| !v.trim().is_empty()) {
        None => Ok(default),
        Some(value) => humantime::parse_duration(value.trim()).map_err(|e| SettingsError::Invalid {
            name,
            reason: e.to_string(),
            value,
        }),
    }
}

/// `VECTIS_ENV`: decides defaults such as the schema mode and the log format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Environment {
    Development,
    Test,
    Production,
}

impl Environment {
    pub fn from_env() -> Result<Self, SettingsError> {
        env_parse("VECTIS_ENV", Self::Development)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Development => "development",
            Self::Test => "test",
            Self::Production => "production",
        }
    }
}

impl FromStr for Environment {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "development" | "dev" => Ok(Self::Development),
            "test" => Ok(Self::Test),
            "production" | "prod" => Ok(Self::Production),
            other => Err(format!("expected development, test or production, not {other}")),
        }
    }
}

/// A secret (a database URL with a password, an API key) that never prints.
#[derive(Clone)]
pub struct Secret<T>(T);

impl<T> Secret<T> {
    pub fn new(value: T) -> Self {
        Self(value)
    }

    /// The secret itself; call only where it is handed to the client that needs it.
    pub fn expose(&self) -> &T {
        &self.0
    }
}

impl<T> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_do_not_print() {
        let s = Secret::new("postgres://u:hunter2@db/x".to_string());
        assert_eq!(format!("{s:?}"), "Secret(***)");
        assert_eq!(s.expose(), "postgres://u:hunter2@db/x");
    }

    #[test]
    fn environments_parse() {
        assert_eq!("PRODUCTION".parse::<Environment>(), Ok(Environment::Production));
        assert_eq!("dev".parse::<Environment>(), Ok(Environment::Development));
        assert!("staging".parse::<Environment>().is_err());
    }
}
