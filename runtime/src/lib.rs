//! isolab's container runtime: namespaces, cgroups, root filesystems, images.

pub mod host;
