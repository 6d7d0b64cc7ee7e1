//! `router_settings.model_group_alias` values, in both of LiteLLM's forms.

use serde::{Deserialize, Serialize};

/// The target of a model group alias.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum AliasTarget {
    /// `alias: group`: listed and routed.
    Group(String),
    /// `alias: {model: group, hidden: true}`: routed; listed unless hidden.
    Detailed {
        model: String,
        #[serde(default)]
        hidden: bool,
    },
}

impl AliasTarget {
    /// The model group the alias points at.
    pub fn group(&self) -> &str {
        match self {
            AliasTarget::Group(g) => g,
            AliasTarget::Detailed { model, .. } => model,
        }
    }

    /// Whether the alias is left out of every listing.
    pub fn hidden(&self) -> bool {
        matches!(self, AliasTarget::Detailed { hidden: true, .. })
    }
}
