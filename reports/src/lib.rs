//! isolab's result schema, statistics and exporters. Only this crate defines the schema.

pub mod schema;
