//! Durations in seconds as LiteLLM accepts them: a number or a numeric string (`"30"`).

use serde::{Deserialize, Deserializer, Serialize, Serializer, de};
use std::time::Duration;

/// A non-negative number of seconds.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd)]
pub struct Seconds(pub f64);

impl Seconds {
    pub fn as_duration(self) -> Duration {
        Duration::from_secs_f64(self.0.max(0.0))
    }
}

impl Serialize for Seconds {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        // Whole seconds are written as integers so rendered configs read naturally.
        if self.0.fract() == 0.0 && self.0.abs() < 1e15 {
            s.serialize_i64(self.0 as i64)
        } else {
            s.serialize_f64(self.0)
        }
    }
}

impl<'de> Deserialize<'de> for Seconds {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Num(f64),
            Text(String),
        }
        let value = match Raw::deserialize(d)? {
            Raw::Num(n) => n,
            Raw::Text(t) => t
                .trim()
                .parse::<f64>()
                .map_err(|_| de::Error::custom(format!("expected seconds, got {t:?}")))?,
        };
        if !value.is_finite() || value < 0.0 {
            return Err(de::Error::custom(format!(
                "seconds must be a non-negative number, got {value}"
            )));
        }
        Ok(Seconds(value))
    }
}
