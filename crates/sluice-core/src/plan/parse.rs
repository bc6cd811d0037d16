//! Parsing a plan file into a [`Plan`], collecting every problem.

use super::{Plan, PlanErrors};

/// Parses and validates a YAML (or JSON) plan.
pub fn parse_plan(source: &str) -> Result<Plan, PlanErrors> {
    let _ = source;
    unimplemented!("parse_plan")
}
