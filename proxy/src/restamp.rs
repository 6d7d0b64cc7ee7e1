//! Stamping the requested model name into an upstream JSON object without re-serialising
//! it: a typed pass finds the top-level `model` value and `usage`, skipping everything
//! else without allocating, and the new name is spliced into the original bytes. The
//! upstream's own formatting and number precision pass through untouched. Anything the
//! fast pass cannot handle (duplicate keys, odd `usage`) goes through a `Value` tree.

use bytes::{BufMut, Bytes, BytesMut};
use serde::{Deserialize, Deserializer};
use serde_json::{Value, value::RawValue};

/// Token counts an upstream reported, for metrics and tpm accounting.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    pub prompt: u64,
    pub completion: u64,
}

impl Usage {
    pub fn from_value(v: &Value) -> Option<Self> {
        let u = v.get("usage")?;
        Some(Self {
            prompt: u.get("prompt_tokens").and_then(Value::as_u64).unwrap_or(0),
            completion: u
                .get("completion_tokens")
                .and_then(Value::as_u64)
                .unwrap_or(0),
        })
    }
}

/// The top-level fields the fast pass reads; serde skips the rest.
#[derive(Deserialize)]
struct Top<'a> {
    #[serde(borrow, default)]
    model: Present<'a>,
    #[serde(default)]
    usage: Option<UsageFields>,
}

#[derive(Deserialize)]
struct UsageFields {
    #[serde(default)]
    prompt_tokens: Option<u64>,
    #[serde(default)]
    completion_tokens: Option<u64>,
}

/// A field's raw JSON, `Some` even when it is `null` (an `Option<&RawValue>` would read
/// `"model": null` as absent, and the splice would then add a second `model`).
#[derive(Default)]
struct Present<'a>(Option<&'a RawValue>);

impl<'de: 'a, 'a> Deserialize<'de> for Present<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        <&'de RawValue>::deserialize(d).map(|raw| Present(Some(raw)))
    }
}

/// `body` with its top-level `model` set to `model`, and the usage it reports. `None`
/// when `body` is not a JSON object.
pub fn restamp(body: &[u8], model: &str) -> Option<(Bytes, Usage)> {
    fast(body, model).or_else(|| slow(body, model))
}

fn fast(body: &[u8], model: &str) -> Option<(Bytes, Usage)> {
    let open = body.iter().position(|b| !b.is_ascii_whitespace())?;
    // serde also reads a struct from a JSON array; only objects are ours to stamp.
    if body[open] != b'{' {
        return None;
    }
    let top: Top<'_> = serde_json::from_slice(body).ok()?;
    let usage = top
        .usage
        .map(|u| Usage {
            prompt: u.prompt_tokens.unwrap_or(0),
            completion: u.completion_tokens.unwrap_or(0),
        })
        .unwrap_or_default();
    let name = serde_json::to_string(model).ok()?;
    let mut out = BytesMut::with_capacity(body.len() + name.len() + 10);
    match top.model.0 {
        Some(raw) => {
            // The raw value borrows from `body`: its offset is where the old value sits.
            let start = (raw.get().as_ptr() as usize).checked_sub(body.as_ptr() as usize)?;
            let end = start + raw.get().len();
            if end > body.len() {
                return None;
            }
            out.put_slice(&body[..start]);
            out.put_slice(name.as_bytes());
            out.put_slice(&body[end..]);
        }
        None => {
            let rest = &body[open + 1..];
            let empty = rest
                .iter()
                .find(|b| !b.is_ascii_whitespace())
                .is_some_and(|b| *b == b'}');
            out.put_slice(&body[..=open]);
            out.put_slice(b"\"model\":");
            out.put_slice(name.as_bytes());
            if !empty {
                out.put_u8(b',');
            }
            out.put_slice(rest);
        }
    }
    Some((out.freeze(), usage))
}

fn slow(body: &[u8], model: &str) -> Option<(Bytes, Usage)> {
    let mut v = serde_json::from_slice::<Value>(body).ok()?;
    if !v.is_object() {
        return None;
    }
    let usage = Usage::from_value(&v).unwrap_or_default();
    v["model"] = Value::String(model.to_string());
    Some((Bytes::from(serde_json::to_vec(&v).ok()?), usage))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamp(body: &str) -> (String, Usage) {
        let (b, u) = restamp(body.as_bytes(), "alias \"x\"").unwrap();
        (String::from_utf8(b.to_vec()).unwrap(), u)
    }

    #[test]
    fn the_model_value_is_replaced_in_place() {
        let (out, usage) = stamp(
            r#"{"id":"c1", "model" : "gpt-4o-2024", "x":{"model":"inner"},"usage":{"prompt_tokens":3,"completion_tokens":4,"total_tokens":7}, "f": 1.10}"#,
        );
        assert_eq!(
            out,
            r#"{"id":"c1", "model" : "alias \"x\"", "x":{"model":"inner"},"usage":{"prompt_tokens":3,"completion_tokens":4,"total_tokens":7}, "f": 1.10}"#
        );
        assert_eq!(
            usage,
            Usage {
                prompt: 3,
                completion: 4
            }
        );
    }

    #[test]
    fn a_missing_or_null_model_gets_exactly_one() {
        assert_eq!(stamp(r#" {"a":1}"#).0, r#" {"model":"alias \"x\"","a":1}"#);
        assert_eq!(stamp("{ }").0, r#"{"model":"alias \"x\"" }"#);
        assert_eq!(stamp(r#"{"model":null}"#).0, r#"{"model":"alias \"x\""}"#);
        for body in [r#"{"a":1}"#, "{}", r#"{"model":null,"b":[1,{"model":2}]}"#] {
            let v: Value = serde_json::from_str(&stamp(body).0).unwrap();
            assert_eq!(v["model"], "alias \"x\"");
        }
    }

    #[test]
    fn what_the_fast_pass_cannot_read_goes_through_a_tree() {
        // Duplicate keys and a fractional token count: valid JSON, refused by the typed pass.
        let (out, usage) = stamp(r#"{"model":"a","model":"b","usage":{"prompt_tokens":2.0}}"#);
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["model"], "alias \"x\"");
        assert_eq!(usage, Usage::default());
        let (_, usage) = stamp(r#"{"usage":null,"model":"m"}"#);
        assert_eq!(usage, Usage::default());
    }

    #[test]
    fn non_objects_are_not_stamped() {
        assert!(restamp(b"[\"m\", null]", "x").is_none());
        assert!(restamp(b"not json", "x").is_none());
        assert!(restamp(b"", "x").is_none());
    }
}
