//! `--net bridge`: containers on a Linux bridge, each through a veth pair.
//!
//! The bridge `isolab0` ([`BRIDGE`]) is created on first use with the gateway address
//! 10.77.0.1/24 (a private range clear of docker0's 172.17.0.0/16 and podman's
//! 10.88.0.0/16). A container gets the lowest free address of 10.77.0.2–254 from the
//! [`ipam`], a veth pair whose host end `isl<address in hex>` is a port of the bridge and
//! whose peer is created directly in the container's network namespace as `eth0`, and a
//! default route via the gateway. Containers on the bridge reach each other at layer 2 and
//! the host at 10.77.0.1; nothing is forwarded or translated beyond that, and isolab changes
//! no firewall or forwarding setting of the host.
//!
//! The bridge stays when its last container goes (as docker0 does); `isolab gc` removes it
//! once no lease is held.
//!
//! Every step is an rtnetlink request ([`netlink`]), shown by `--explain`. The peer dies
//! with the container's namespace, which takes the host end with it, but namespaces are
//! torn down asynchronously; so the host end is deleted explicitly when the container
//! ends, before its lease is released, and `gc` deletes what a killed `isolab` left.

pub mod ipam;
pub mod netlink;

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use crate::container::state::STATE_ROOT;
use crate::explain::Explain;
use ipam::{Ipam, Lease};
use netlink::{NetlinkError, Route};

/// The bridge every `--net bridge` container is a port of.
pub const BRIDGE: &str = "isolab0";
/// The bridge's own address: the containers' default gateway.
pub const GATEWAY: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
pub const PREFIX_LEN: u8 = 24;
/// The addresses leased to containers, inclusive.
pub const RANGE: (Ipv4Addr, Ipv4Addr) =
    (Ipv4Addr::new(10, 77, 0, 2), Ipv4Addr::new(10, 77, 0, 254));
/// The container's end of its veth pair.
pub const CONTAINER_LINK: &str = "eth0";
/// Host ends are `isl` and the container's address as eight hex digits (11 characters,
/// within IFNAMSIZ), so a leftover link names the lease it belonged to.
pub const HOST_LINK_PREFIX: &str = "isl";

#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error(transparent)]
    Netlink(#[from] NetlinkError),
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "lease file {path} is not a lease ({source}); remove it if no container uses its address"
    )]
    CorruptLease {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error(
        "no free address on {BRIDGE}: {first} to {last} are all leased (see {dir}); `isolab gc` reclaims the leases of containers that are gone"
    )]
    Exhausted {
        first: Ipv4Addr,
        last: Ipv4Addr,
        dir: PathBuf,
    },
}

/// The lease directory: beside the containers' records, in a dot directory that no
/// container name can take.
pub fn ipam() -> Ipam {
    Ipam::at(&Path::new(STATE_ROOT).join(".net"), RANGE)
}

/// The host end of the veth pair of the container at `address`.
pub fn host_link(address: Ipv4Addr) -> String {
    format!("{HOST_LINK_PREFIX}{:08x}", u32::from(address))
}

/// A container's place on the bridge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    pub address: Ipv4Addr,
    pub host_link: String,
}

/// Puts the container whose init is `pid` (in its own network namespace) on the bridge:
/// bridge, lease, veth pair, address, link up, default route. On failure nothing of it is
/// left but the bridge.
pub fn attach(name: &str, pid: i32, explain: &Explain) -> Result<Attachment, NetError> {
    let ipam = ipam();
    let mut host = Route::open(*explain)?;
    let lease = {
        let locked = ipam.lock(explain)?;
        ensure_bridge(&mut host)?;
        locked.allocate(name, explain)?
    };
    let attachment = Attachment {
        address: lease.address,
        host_link: host_link(lease.address),
    };
    match connect(&mut host, &attachment, pid, explain) {
        Ok(()) => Ok(attachment),
        Err(e) => {
            let _ = detach_with(&mut host, &ipam, &attachment, explain);
            Err(e)
        }
    }
}

/// Creates the bridge if it is missing, gives it the gateway address and brings it up;
/// returns its index. Called under the allocation lock, so two first starts do not race.
fn ensure_bridge(host: &mut Route) -> Result<u32, NetError> {
    host.add_bridge(BRIDGE)?;
    let index = host.index_of(BRIDGE)?.ok_or_else(|| NetlinkError::Answer {
        request: format!("RTM_GETLINK {BRIDGE}"),
        detail: "the bridge vanished right after it was created".into(),
    })?;
    host.add_address(index, BRIDGE, GATEWAY, PREFIX_LEN)?;
    host.set_up(index, BRIDGE)?;
    Ok(index)
}

fn connect(
    host: &mut Route,
    attachment: &Attachment,
    pid: i32,
    explain: &Explain,
) -> Result<(), NetError> {
    let bridge = host.index_of(BRIDGE)?.ok_or_else(|| NetlinkError::Answer {
        request: format!("RTM_GETLINK {BRIDGE}"),
        detail: "the bridge is gone".into(),
    })?;
    host.add_veth(&attachment.host_link, bridge, CONTAINER_LINK, pid)?;
    let path = format!("/proc/{pid}/ns/net");
    let ns = std::fs::File::open(&path).map_err(|source| NetError::Io {
        what: "opening",
        path: path.clone().into(),
        source,
    })?;
    let mut inside = Route::open_in(std::os::fd::AsFd::as_fd(&ns), &path, *explain)?;
    let index = inside
        .index_of(CONTAINER_LINK)?
        .ok_or_else(|| NetlinkError::Answer {
            request: format!("RTM_GETLINK {CONTAINER_LINK}"),
            detail: "the veth peer is not in the container's namespace".into(),
        })?;
    inside.add_address(index, CONTAINER_LINK, attachment.address, PREFIX_LEN)?;
    inside.set_up(index, CONTAINER_LINK)?;
    inside.add_default_route(GATEWAY)?;
    Ok(())
}

/// Takes the container off the bridge: deletes the host end of its veth pair (and with it
/// the peer, if the namespace still exists), then releases the lease.
pub fn detach(attachment: &Attachment, explain: &Explain) -> Result<(), NetError> {
    let mut host = Route::open(*explain)?;
    detach_with(&mut host, &ipam(), attachment, explain)
}

fn detach_with(
    host: &mut Route,
    ipam: &Ipam,
    attachment: &Attachment,
    explain: &Explain,
) -> Result<(), NetError> {
    host.delete_link(&attachment.host_link)?;
    ipam.release(attachment.address, explain)?;
    Ok(())
}

/// The address leased to container `name`, if any.
pub fn address_of(name: &str) -> Result<Option<Ipv4Addr>, NetError> {
    Ok(ipam()
        .leases()?
        .into_iter()
        .find(|l| l.name == name)
        .map(|l| l.address))
}

/// Takes container `name` off the bridge, whoever holds its lease (`rm`, the supervisor).
/// Returns one line per thing removed.
pub fn release(name: &str) -> Result<Vec<String>, NetError> {
    release_where(|lease| lease.name == name)
}

fn release_where(stale: impl Fn(&Lease) -> bool) -> Result<Vec<String>, NetError> {
    let ipam = ipam();
    let leases = ipam.leases()?;
    let mut removed = Vec::new();
    if leases.iter().any(&stale) {
        let mut host = Route::open(Explain::off())?;
        for lease in leases.iter().filter(|l| stale(l)) {
            let attachment = Attachment {
                address: lease.address,
                host_link: host_link(lease.address),
            };
            detach_with(&mut host, &ipam, &attachment, &Explain::off())?;
            removed.push(format!(
                "lease {} of container {} (veth {})",
                lease.address, lease.name, attachment.host_link
            ));
        }
    }
    Ok(removed)
}

/// Cleans up after killed holders: their leases and veths, and any host link named like
/// ours that no lease owns. Returns one line per thing removed.
pub fn gc() -> Result<Vec<String>, NetError> {
    // Nothing was ever put on the bridge since boot (/run is a tmpfs, as links go with it).
    if !ipam().in_use() {
        return Ok(Vec::new());
    }
    let mut removed = release_where(|lease| !lease.holder_alive())?;
    // Under the lock, so a start cannot write its lease after the scan of the leases and
    // create its veth before the scan of the links.
    let ipam = ipam();
    let _locked = ipam.lock(&Explain::off())?;
    let leased: Vec<String> = ipam
        .leases()?
        .iter()
        .map(|l| host_link(l.address))
        .collect();
    let orphans: Vec<String> = host_links()?
        .into_iter()
        .filter(|link| !leased.contains(link))
        .collect();
    let mut host = Route::open(Explain::off())?;
    for link in orphans {
        if host.delete_link(&link)? {
            removed.push(format!("veth {link}: no lease owned it"));
        }
    }
    drop(_locked);
    if remove_bridge_if_unused()? {
        removed.push(format!("bridge {BRIDGE}: no container was on it"));
    }
    Ok(removed)
}

/// Deletes the bridge when no container holds a lease, so the host is as it was before the
/// first `--net bridge` (the next one creates it again). True when it was deleted.
pub fn remove_bridge_if_unused() -> Result<bool, NetError> {
    let ipam = ipam();
    if !ipam.in_use() {
        return Ok(false);
    }
    let _locked = ipam.lock(&Explain::off())?;
    if !ipam.leases()?.is_empty() {
        return Ok(false);
    }
    Ok(Route::open(Explain::off())?.delete_link(BRIDGE)?)
}

/// The host ends of isolab veth pairs present now, from /sys/class/net.
pub fn host_links() -> Result<Vec<String>, NetError> {
    let dir = Path::new("/sys/class/net");
    let entries = std::fs::read_dir(dir).map_err(|source| NetError::Io {
        what: "reading",
        path: dir.into(),
        source,
    })?;
    let mut links: Vec<String> = entries
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| is_host_link(name))
        .collect();
    links.sort();
    Ok(links)
}

fn is_host_link(name: &str) -> bool {
    name.strip_prefix(HOST_LINK_PREFIX)
        .is_some_and(|hex| hex.len() == 8 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_links_name_their_address_within_ifnamsiz() {
        let link = host_link(Ipv4Addr::new(10, 77, 0, 2));
        assert_eq!(link, "isl0a4d0002");
        assert!(link.len() < libc::IFNAMSIZ);
        assert!(is_host_link(&link));
        assert!(!is_host_link("isolab0"));
        assert!(!is_host_link("islander"));
    }

    #[test]
    fn the_range_is_inside_the_bridge_subnet() {
        let mask = u32::MAX << (32 - PREFIX_LEN);
        for address in [RANGE.0, RANGE.1] {
            assert_eq!(u32::from(address) & mask, u32::from(GATEWAY) & mask);
            assert_ne!(address, GATEWAY);
        }
    }
}
