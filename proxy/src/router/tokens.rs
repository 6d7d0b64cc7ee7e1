//! Counting a request's input tokens for pre-call checks and tpm limits: OpenAI's real
//! tokenizers (o200k for the gpt-4o/o-series/gpt-4.1/gpt-5 families, cl100k for gpt-4 and
//! gpt-3.5) where the model is known, else an estimate of four characters per token. The
//! tokenizer tables load on first use only, so configs without pre-call checks never pay.

use serde_json::{Map, Value};

/// Tokens per message for the chat framing, as OpenAI's cookbook counts them.
const PER_MESSAGE: u64 = 3;
const REPLY_PRIMING: u64 = 3;

enum Family {
    O200k,
    Cl100k,
    Unknown,
}

fn family(model: &str) -> Family {
    let m = model
        .rsplit('/')
        .next()
        .unwrap_or(model)
        .to_ascii_lowercase();
    if m.starts_with("gpt-4o")
        || m.starts_with("gpt-4.1")
        || m.starts_with("gpt-4.5")
        || m.starts_with("gpt-5")
        || m.starts_with("o1")
        || m.starts_with("o3")
        || m.starts_with("o4")
        || m.starts_with("chatgpt-4o")
    {
        Family::O200k
    } else if m.starts_with("gpt-4")
        || m.starts_with("gpt-3.5")
        || m.starts_with("gpt-35")
        || m.starts_with("text-embedding")
    {
        Family::Cl100k
    } else {
        Family::Unknown
    }
}

/// The text a request sends as input: message contents (text parts) and names, or the
/// `prompt`/`input` of completions and embeddings.
fn texts(body: &Map<String, Value>) -> (Vec<&str>, u64) {
    let mut out = Vec::new();
    let mut messages = 0;
    if let Some(msgs) = body.get("messages").and_then(Value::as_array) {
        for m in msgs {
            messages += 1;
            if let Some(role) = m.get("role").and_then(Value::as_str) {
                out.push(role);
            }
            if let Some(name) = m.get("name").and_then(Value::as_str) {
                out.push(name);
            }
            match m.get("content") {
                Some(Value::String(s)) => out.push(s),
                Some(Value::Array(parts)) => {
                    out.extend(
                        parts
                            .iter()
                            .filter_map(|p| p.get("text").and_then(Value::as_str)),
                    );
                }
                _ => {}
            }
        }
    }
    for key in ["prompt", "input"] {
        match body.get(key) {
            Some(Value::String(s)) => out.push(s),
            Some(Value::Array(items)) => out.extend(items.iter().filter_map(Value::as_str)),
            _ => {}
        }
    }
    (out, messages)
}

/// Input tokens of a request for `model`.
pub fn count(model: &str, body: &Map<String, Value>) -> u64 {
    let (texts, messages) = texts(body);
    let framing = if messages > 0 {
        messages * PER_MESSAGE + REPLY_PRIMING
    } else {
        0
    };
    let counted: u64 = match family(model) {
        Family::O200k => {
            let bpe = tiktoken_rs::o200k_base_singleton();
            texts
                .iter()
                .map(|t| bpe.encode_ordinary(t).len() as u64)
                .sum()
        }
        Family::Cl100k => {
            let bpe = tiktoken_rs::cl100k_base_singleton();
            texts
                .iter()
                .map(|t| bpe.encode_ordinary(t).len() as u64)
                .sum()
        }
        Family::Unknown => texts.iter().map(|t| estimate(t)).sum(),
    };
    counted + framing
}

/// About four characters per token, rounding up.
fn estimate(text: &str) -> u64 {
    (text.chars().count() as u64).div_ceil(4)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn real_tokenizer_for_known_families() {
        let body = json!({"messages": [{"role": "user", "content": "Hello world"}]});
        let body = body.as_object().unwrap();
        // "user" = 1, "Hello world" = 2, framing 3 + 3.
        assert_eq!(count("openai/gpt-4o", body), 9);
        assert_eq!(count("azure/gpt-4", body), 9);
        // Unknown family: the estimate ("user" 1 + "Hello world" 3) + framing.
        assert_eq!(count("hosted_vllm/llama-3", body), 10);
    }
}
