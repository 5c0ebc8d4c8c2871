//! isolab's result schema, statistics and exporters. Only this crate defines the schema.
//!
//! On top of it: reports (charts, claims, HTML and Markdown), comparisons between two result
//! files and capacity plans, all computed from what result files hold.

pub mod analysis;
pub mod charts;
pub mod claims;
pub mod compare;
pub mod export;
pub mod measures;
pub mod plan;
pub mod report;
pub mod schema;
pub mod stats;
pub mod table;
