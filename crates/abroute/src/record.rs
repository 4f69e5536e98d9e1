//! Decision records: an owned, serializable account of one request's routing, for logs and
//! experiment analysis.
//!
//! A record names the *assigned* variant (what the experiment put the request in) and, apart,
//! the variant and model that finally *served* it, so an analysis by intention to treat stays
//! possible when failover served the request elsewhere. `docs/records.md` gives the JSON schema.
//!
//! 64-bit values that are identifiers rather than quantities (the random draw, the sticky key
//! hash) are written as 16-digit lowercase hex strings, so JSON readers that hold numbers as
//! doubles do not round them.
//!
//! [`AttemptSource`] (where in the plan an attempt came from) is defined here and re-exported by
//! [`plan`](crate::plan): the plan builds records, so the vocabulary both use sits below it.

use serde::{Deserialize, Serialize};

use crate::decision::{Assignment, Decision};
use crate::health::Outcome;

/// Where an attempt comes from in its [`AttemptPlan`](crate::AttemptPlan) (re-exported as
/// `abroute::plan::AttemptSource`): what the plan yields and what a record keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AttemptSource {
    /// The assigned variant's `model_id`.
    Primary,
    /// One of the assigned variant's `model_selection.models`.
    ModelFallback,
    /// Another variant of the route (its `model_id` or one of its fallback models).
    OtherVariant,
    /// A model the request itself listed (`extra_body.models`).
    Request,
}

/// How the assigned variant was chosen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum AssignmentRecord {
    /// A weighted random pick.
    Random {
        /// The uniform 64-bit value the pick used, as 16 hex digits.
        draw: String,
    },
    /// A sticky assignment from the request's key.
    Sticky {
        /// The 64-bit hash of the key, as 16 hex digits.
        key_hash: String,
        /// The bucket (slot) of the sticky table the key fell in.
        bucket: u32,
    },
    /// A sticky key in a route too large for a sticky table, hashed into the alias table.
    Hashed {
        /// The 64-bit hash of the key, as 16 hex digits.
        key_hash: String,
    },
    /// No assignment: the request named its models itself (request-level routing, no router).
    Request,
}

impl From<Assignment> for AssignmentRecord {
    fn from(a: Assignment) -> Self {
        match a {
            Assignment::Random { draw } => AssignmentRecord::Random {
                draw: format!("{draw:016x}"),
            },
            Assignment::Sticky { key_hash, bucket } => AssignmentRecord::Sticky {
                key_hash: format!("{key_hash:016x}"),
                bucket,
            },
            Assignment::Hashed { key_hash } => AssignmentRecord::Hashed {
                key_hash: format!("{key_hash:016x}"),
            },
        }
    }
}

/// One attempt and how it ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttemptRecord {
    /// The variant the attempt served.
    pub variant_id: String,
    /// The model called.
    pub model: String,
    /// True when the attempt belonged to the assigned variant.
    pub assigned_variant: bool,
    /// Where in the plan it came from.
    pub source: AttemptSource,
    /// How it ended.
    #[serde(flatten)]
    pub outcome: Outcome,
    /// How long it took, in milliseconds.
    pub latency_ms: u64,
    /// Time to first token, in milliseconds, when streamed.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub time_to_first_token_ms: Option<u64>,
}

/// Everything needed to analyse one request's routing later.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DecisionRecord {
    /// The router's name.
    pub router: String,
    /// The route taken.
    pub route_id: String,
    /// The variant the request was assigned to (intention to treat).
    pub assigned_variant_id: String,
    /// The assigned variant's primary model.
    pub assigned_model_id: String,
    /// The variant that finally served, if any attempt succeeded.
    pub served_variant_id: Option<String>,
    /// The model that finally served, if any attempt succeeded.
    pub served_model_id: Option<String>,
    /// The config version that made the decision.
    pub version: u64,
    /// How the variant was assigned.
    pub assignment: AssignmentRecord,
    /// Every reported attempt, in order.
    pub attempts: Vec<AttemptRecord>,
    /// True when every candidate was ejected and the plan ignored health.
    pub fail_open: bool,
    /// Capability routing: the variants skipped because their models cannot serve the request.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skipped: Vec<SkippedVariant>,
    /// Why this model was chosen, in a sentence (request-level `auto`: Inworld's
    /// `metadata.reasoning`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning: Option<String>,
}

/// A variant capability routing skipped, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkippedVariant {
    /// The variant.
    pub variant_id: String,
    /// A short code: `vision`, `tools`, `response_schema`, `context_window`, `max_output`, ...
    pub reason: String,
    /// The reason in a sentence.
    pub message: String,
}

impl DecisionRecord {
    /// A record of the decision alone (no attempts yet).
    pub fn from_decision(d: &Decision<'_>) -> DecisionRecord {
        DecisionRecord {
            router: d.router().to_owned(),
            route_id: d.route_id().to_owned(),
            assigned_variant_id: d.variant_id().to_owned(),
            assigned_model_id: d.model_id().to_owned(),
            served_variant_id: None,
            served_model_id: None,
            version: d.version(),
            assignment: d.assignment().into(),
            attempts: Vec::new(),
            fail_open: false,
            skipped: Vec::new(),
            reasoning: None,
        }
    }
}
