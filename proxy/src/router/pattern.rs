//! Wildcard model groups (`openai/*`, `*`, `fo::*::static::*`): a glob where each `*`
//! captures a segment, substituted into the deployment's own `*`s when it is called.

/// A compiled wildcard group name.
#[derive(Debug, Clone)]
pub struct Pattern {
    raw: String,
    parts: Vec<String>,
}

impl Pattern {
    pub fn new(raw: &str) -> Self {
        Self {
            raw: raw.to_string(),
            parts: raw.split('*').map(String::from).collect(),
        }
    }

    pub fn raw(&self) -> &str {
        &self.raw
    }

    /// How specific the pattern is; LiteLLM tries longer patterns first.
    pub fn specificity(&self) -> (usize, usize) {
        (self.raw.len(), self.parts.len())
    }

    /// The captured segments when `name` matches, one per `*`.
    pub fn captures(&self, name: &str) -> Option<Vec<String>> {
        let mut caps = Vec::with_capacity(self.parts.len().saturating_sub(1));
        match_from(&self.parts, name, &mut caps).then_some(caps)
    }
}

fn match_from(parts: &[String], text: &str, caps: &mut Vec<String>) -> bool {
    let Some((first, rest)) = parts.split_first() else {
        return text.is_empty();
    };
    let Some(after) = text.strip_prefix(first.as_str()) else {
        return false;
    };
    if rest.is_empty() {
        return after.is_empty();
    }
    // Greedy: try the longest capture first, as a `(.*)` regex would.
    let mut ends: Vec<usize> = after.char_indices().map(|(i, _)| i).collect();
    ends.push(after.len());
    for &end in ends.iter().rev() {
        caps.push(after[..end].to_string());
        if match_from(rest, &after[end..], caps) {
            return true;
        }
        caps.pop();
    }
    false
}

/// Replaces the `*`s of a deployment's model in order with the captured segments.
pub fn substitute(model: &str, caps: &[String]) -> String {
    let mut out = String::with_capacity(model.len() + 16);
    let mut caps = caps.iter();
    for (i, part) in model.split('*').enumerate() {
        if i > 0 {
            out.push_str(caps.next().map(String::as_str).unwrap_or(""));
        }
        out.push_str(part);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provider_wildcard_captures_the_model() {
        let p = Pattern::new("openai/*");
        assert_eq!(p.captures("openai/gpt-4o").unwrap(), vec!["gpt-4o"]);
        assert!(p.captures("azure/gpt-4o").is_none());
        assert_eq!(substitute("openai/*", &["gpt-4o".into()]), "openai/gpt-4o");
    }

    #[test]
    fn catch_all_and_multi_segment_patterns() {
        assert_eq!(
            Pattern::new("*").captures("gpt-4o").unwrap(),
            vec!["gpt-4o"]
        );
        let p = Pattern::new("fo::*::static::*");
        assert_eq!(
            p.captures("fo::hi::static::hello").unwrap(),
            vec!["hi", "hello"]
        );
        assert_eq!(
            substitute("openai/fo::*:static::*", &["hi".into(), "hello".into()]),
            "openai/fo::hi:static::hello"
        );
        assert_eq!(substitute("openai/gpt-4o", &["x".into()]), "openai/gpt-4o");
    }
}
