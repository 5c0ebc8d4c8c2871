//! isolab's container runtime: namespaces, cgroups, root filesystems, images.

pub mod cgroups;
pub mod container;
pub mod explain;
pub mod host;
pub mod image;
pub mod memory;
pub mod net;
pub mod oci;
