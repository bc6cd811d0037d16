//! Kubernetes label-selector syntax: `role notin (build-agent), site in (sto, lon)`.

use crate::fleet::Labels;

/// A parsed selector: every requirement must hold. Empty selects everything.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Selector {
    requirements: Vec<Requirement>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Requirement {}

/// Why a selector did not parse: where (1-based column, in characters) and
/// what would be valid there.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("column {column}: {message}")]
pub struct SelectorError {
    pub column: usize,
    pub message: String,
}

impl Selector {
    pub fn parse(input: &str) -> Result<Selector, SelectorError> {
        let _ = input;
        unimplemented!("selector parse")
    }

    pub fn matches(&self, labels: &Labels) -> bool {
        let _ = (labels, &self.requirements);
        unimplemented!("selector matches")
    }
}
