//! Durations in YAML as human strings (`500ms`, `30s`, `5m`).

use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// Deserializes `"30s"`-style strings with humantime.
///
/// # Errors
/// A message naming the bad string.
pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(deserializer)?;
    humantime::parse_duration(&text)
        .map_err(|e| serde::de::Error::custom(format!("invalid duration \"{text}\": {e}")))
}
