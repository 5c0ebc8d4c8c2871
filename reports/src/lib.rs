//! isolab's result schema, statistics and exporters. Only this crate defines the schema.

pub mod export;
pub mod schema;
pub mod stats;
pub mod table;
