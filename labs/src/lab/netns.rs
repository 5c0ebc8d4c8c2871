//! Lab 4: network namespaces. The student builds by hand, with `ip`, what `isolab run --net
//! bridge` builds with netlink: two network namespaces kept alive by bind mounts in the
//! workspace, a bridge, a veth pair per namespace with one end on the bridge and the other
//! moved in as `eth0` with an address, and a ping across; then starts a container on
//! isolab's own bridge and compares. The checker reads the links from /sys/class/net, the
//! namespaces' own view through `nsenter --net=FILE ip`, and pings for itself.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;

use isolab_runtime::explain::Explain;
use isolab_runtime::host::NamespaceKind;
use isolab_runtime::net::{self, netlink::Route};

use crate::answers::{self, Answers};
use crate::error::LabError;
use crate::{Lab, Need, StepResult, Workspace};
use crate::{observe, rootfs};

pub static LAB: NetnsLab = NetnsLab;

const ANSWERS: &str = include_str!("../../content/4/answers.txt");
const ROOTFS: &str = "rootfs";
const BRIDGE: &str = "lab4br0";
/// The container the student starts on isolab's bridge.
const CONTAINER: &str = "lab4c";
const SYS_NET: &str = "/sys/class/net";

/// One of the two hand-made namespaces and its veth pair.
#[derive(Debug, Clone, Copy)]
struct Side {
    /// The workspace file its namespace is bind-mounted on.
    file: &'static str,
    /// The host end of its veth pair, a port of [`BRIDGE`].
    host_end: &'static str,
    /// The other end before it is moved in and renamed `eth0`.
    peer_end: &'static str,
    address: Ipv4Addr,
}

const A: Side = Side {
    file: "netns-a",
    host_end: "lab4a-h",
    peer_end: "lab4a-e",
    address: Ipv4Addr::new(10, 44, 0, 2),
};
const B: Side = Side {
    file: "netns-b",
    host_end: "lab4b-h",
    peer_end: "lab4b-e",
    address: Ipv4Addr::new(10, 44, 0, 3),
};

#[derive(Debug)]
pub struct NetnsLab;

fn sys_net(link: &str, file: &str) -> PathBuf {
    Path::new(SYS_NET).join(link).join(file)
}

/// A link's number in /sys/class/net/LINK/FILE (`ifindex`, `iflink`, `flags` in hex).
fn link_number(link: &str, file: &str) -> Option<u64> {
    let text = std::fs::read_to_string(sys_net(link, file)).ok()?;
    let text = text.trim();
    match text.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => text.parse().ok(),
    }
}

fn is_up(link: &str) -> bool {
    link_number(link, "flags").is_some_and(|f| f & libc::IFF_UP as u64 != 0)
}

/// The link LINK is a port of (`/sys/class/net/LINK/master`), if any.
fn master_of(link: &str) -> Option<String> {
    std::fs::read_link(sys_net(link, "master"))
        .ok()
        .and_then(|p| Some(p.file_name()?.to_string_lossy().into_owned()))
}

/// What the namespace of a workspace file is and holds.
#[derive(Debug)]
struct Observed {
    side: Side,
    path: PathBuf,
    /// The nsfs mount on the file: `net:[4026532177]`.
    mounted: Option<String>,
    inode: Option<u64>,
    /// `ip -o -4 addr show dev eth0` inside.
    eth0_addresses: String,
    /// `ip -o link show dev eth0` inside: `2: eth0@if9: <...,UP,...>`.
    eth0_link: String,
}

impl Observed {
    fn of(ws: &Workspace, side: Side) -> Result<Self, LabError> {
        let path = ws.path(side.file);
        let mounted = observe::nsfs_at(&path)?;
        let inode = observe::ns_inode(&path);
        let mut seen = Observed {
            side,
            path,
            mounted,
            inode,
            eth0_addresses: String::new(),
            eth0_link: String::new(),
        };
        if seen.is_netns() {
            seen.eth0_addresses =
                seen.inside(&["ip", "-o", "-4", "addr", "show", "dev", "eth0"])?;
            seen.eth0_link = seen.inside(&["ip", "-o", "link", "show", "dev", "eth0"])?;
        }
        Ok(seen)
    }

    fn is_netns(&self) -> bool {
        self.mounted
            .as_deref()
            .is_some_and(|m| m.starts_with("net:"))
            && self.inode.is_some()
            && self.inode != observe::ns_inode(Path::new("/proc/self/ns/net"))
    }

    fn enter(&self, command: &[&str]) -> Command {
        let mut nsenter = Command::new("nsenter");
        nsenter
            .arg(format!("--net={}", self.path.display()))
            .args(command);
        nsenter
    }

    /// What `command` prints inside the namespace; empty when it fails.
    fn inside(&self, command: &[&str]) -> Result<String, LabError> {
        let out = observe::output(&mut self.enter(command))?;
        Ok(if out.status.success() {
            String::from_utf8_lossy(&out.stdout).trim().to_owned()
        } else {
            String::new()
        })
    }

    /// The host ifindex of eth0's veth peer: the `N` of `eth0@ifN`.
    fn eth0_peer(&self) -> Option<u64> {
        let (_, rest) = self.eth0_link.split_once("eth0@if")?;
        rest.split(':').next()?.parse().ok()
    }

    /// `eth0@if9 <BROADCAST,MULTICAST,UP,LOWER_UP> inet 10.44.0.2/24`: the parts graded.
    fn eth0_summary(&self) -> String {
        if self.eth0_link.is_empty() {
            return "no eth0".to_owned();
        }
        let link = self
            .eth0_link
            .split_whitespace()
            .skip(1)
            .take(2)
            .collect::<Vec<_>>()
            .join(" ");
        let inet: Vec<&str> = self
            .eth0_addresses
            .split_whitespace()
            .skip_while(|w| *w != "inet")
            .take(2)
            .collect();
        format!(
            "{link} {}",
            if inet.is_empty() {
                "no IPv4 address".to_owned()
            } else {
                inet.join(" ")
            }
        )
    }

    fn eth0_up(&self) -> bool {
        self.eth0_link
            .split_once('<')
            .and_then(|(_, flags)| flags.split_once('>'))
            .is_some_and(|(flags, _)| flags.split(',').any(|f| f == "UP"))
    }

    fn namespace_step(&self) -> StepResult {
        StepResult::judge(
            &format!("a persistent network namespace on {}", self.side.file),
            self.is_netns(),
            format!(
                "{}: {}; its inode {}, the host's {}",
                self.path.display(),
                self.mounted.as_deref().map_or_else(
                    || "no nsfs mount".to_owned(),
                    |m| format!("nsfs mount of {m}")
                ),
                observe::show_inode(self.inode),
                observe::show_inode(observe::ns_inode(Path::new("/proc/self/ns/net")))
            ),
            &format!(
                "in the workspace: `touch {f} && unshare --net=$PWD/{f} true`",
                f = self.side.file
            ),
        )
    }

    fn veth_step(&self) -> StepResult {
        let host = self.side.host_end;
        let index = link_number(host, "ifindex");
        let ok = index.is_some()
            && master_of(host).as_deref() == Some(BRIDGE)
            && is_up(host)
            && self.eth0_peer() == index
            && self.eth0_up()
            && self
                .eth0_addresses
                .contains(&format!("inet {}/24 ", self.side.address));
        StepResult::judge(
            &format!(
                "veth pair {host} (on {BRIDGE}) and eth0 in {}",
                self.side.file
            ),
            ok,
            format!(
                "{host}: ifindex {}, master {}, {}; inside: {}",
                index.map_or_else(|| "(no such link)".to_owned(), |i| i.to_string()),
                master_of(host).unwrap_or_else(|| "(none)".into()),
                if is_up(host) { "up" } else { "down" },
                self.eth0_summary()
            ),
            &format!(
                "`ip link add {host} type veth peer name {peer}`, `ip link set {host} master {BRIDGE} up`, `ip link set {peer} netns $PWD/{f}`, then inside (`nsenter --net=$PWD/{f} ...`): `ip link set {peer} name eth0`, `ip addr add {addr}/24 dev eth0`, `ip link set eth0 up`",
                peer = self.side.peer_end,
                f = self.side.file,
                addr = self.side.address
            ),
        )
    }
}

/// A real ping: one echo request, two seconds to answer; `prefix` runs it elsewhere.
fn ping(prefix: Option<&Observed>, to: Ipv4Addr) -> Result<(bool, String), LabError> {
    let target = to.to_string();
    let args = [
        rootfs::BUSYBOX,
        "ping",
        "-c",
        "1",
        "-W",
        "2",
        target.as_str(),
    ];
    let mut command = match prefix {
        Some(side) => side.enter(&args),
        None => {
            let mut c = Command::new(args[0]);
            c.args(&args[1..]);
            c
        }
    };
    let out = observe::output(&mut command)?;
    let text = String::from_utf8_lossy(&out.stdout);
    let summary = text
        .lines()
        .find(|l| l.contains("packets transmitted"))
        .unwrap_or("no reply")
        .to_owned();
    Ok((out.status.success(), summary))
}

fn netlink_failed(e: net::NetError) -> LabError {
    LabError::Command {
        command: "netlink".into(),
        detail: e.to_string(),
    }
}

impl Lab for NetnsLab {
    lab_number!(4);

    fn minutes(&self) -> u32 {
        45
    }

    fn needs(&self) -> &'static [Need] {
        &[
            Need::Root,
            Need::Namespace(NamespaceKind::Net),
            Need::Command("ip"),
            Need::Command("unshare"),
            Need::Command("nsenter"),
            Need::Command("busybox"),
        ]
    }

    fn start(&self, ws: &Workspace) -> Result<(), LabError> {
        rootfs::build(&ws.path(ROOTFS))?;
        ws.write(answers::FILE, ANSWERS)
    }

    fn check(&self, ws: &Workspace) -> Result<Vec<StepResult>, LabError> {
        let a = Observed::of(ws, A)?;
        let b = Observed::of(ws, B)?;
        let bridge_ok = sys_net(BRIDGE, "bridge").is_dir() && is_up(BRIDGE);
        let mut steps = vec![
            a.namespace_step(),
            b.namespace_step(),
            StepResult::judge(
                &format!("a bridge {BRIDGE}, up"),
                bridge_ok,
                format!(
                    "{}: {}",
                    sys_net(BRIDGE, "bridge").display(),
                    if !sys_net(BRIDGE, "bridge").is_dir() {
                        "missing: no such bridge".to_owned()
                    } else if is_up(BRIDGE) {
                        "present, up".to_owned()
                    } else {
                        "present, down".to_owned()
                    }
                ),
                &format!("`ip link add {BRIDGE} type bridge && ip link set {BRIDGE} up`"),
            ),
            a.veth_step(),
            b.veth_step(),
        ];
        let pinged = if a.is_netns() {
            Some(ping(Some(&a), B.address)?)
        } else {
            None
        };
        steps.push(StepResult::judge(
            "ping from netns-a to netns-b across the bridge",
            pinged.as_ref().is_some_and(|(ok, _)| *ok),
            format!(
                "`nsenter --net={} busybox ping -c 1 -W 2 {}`: {}",
                a.path.display(),
                B.address,
                pinged
                    .as_ref()
                    .map_or("(netns-a is missing)", |(_, s)| s.as_str())
            ),
            "every link on the path must be up (both eth0, both host ends, the bridge) and both addresses in 10.44.0.0/24",
        ));

        let lease = net::address_of(CONTAINER).map_err(netlink_failed)?;
        let container_link = lease.map(net::host_link);
        let on_bridge = container_link
            .as_deref()
            .is_some_and(|l| master_of(l).as_deref() == Some(net::BRIDGE));
        let reached = match lease.filter(|_| on_bridge) {
            Some(address) => Some(ping(None, address)?),
            None => None,
        };
        let container_ok = reached.as_ref().is_some_and(|(ok, _)| *ok);
        steps.push(StepResult::judge(
            &format!("container {CONTAINER} on {}", net::BRIDGE),
            container_ok,
            match (&lease, &container_link, &reached) {
                (None, _, _) => format!("no lease for {CONTAINER} in isolab's address manager"),
                (Some(address), Some(link), None) => {
                    format!("{CONTAINER} has {address}, but {link} is not a port of {}", net::BRIDGE)
                }
                (Some(address), Some(link), Some((_, summary))) => format!(
                    "{CONTAINER} has {address}, its veth {link} is a port of {}; `busybox ping -c 1 {address}` from the host: {summary}",
                    net::BRIDGE
                ),
                _ => String::new(),
            },
            &format!(
                "`isolab run -d --net bridge --name {CONTAINER} --rootfs $PWD/{ROOTFS} -- sleep 1000`"
            ),
        ));

        let answers = Answers::load(ws)?;
        let peer_index = link_number(A.host_end, "ifindex")
            .filter(|_| a.eth0_peer().is_some())
            .map(|i| i.to_string());
        steps.push(answers.grade("peer_index", peer_index.as_deref(), answers::same_number));
        let address = lease.filter(|_| container_ok).map(|a| a.to_string());
        steps.push(answers.grade("container_address", address.as_deref(), answers::same));
        steps.push(answers.grade(
            "container_veth",
            container_link.as_deref().filter(|_| container_ok),
            answers::same,
        ));
        Ok(steps)
    }

    fn reset(&self, ws: &Workspace) -> Result<(), LabError> {
        // The container first: its removal releases its veth and lease.
        let _ = observe::output(Command::new(rootfs::isolab()?).args(["rm", "-f", CONTAINER]))?;
        // A process left in a namespace would keep it (and its eth0) alive.
        for side in [A, B] {
            let seen = Observed::of(ws, side)?;
            if let Some(ns) = seen.inode.filter(|_| seen.is_netns()) {
                observe::kill_all(&observe::processes_in_ns("net", ns));
            }
        }
        // Deleting one end of a veth pair deletes the other, wherever it is.
        let mut route = Route::open(Explain::off()).map_err(|e| netlink_failed(e.into()))?;
        for link in [A.host_end, A.peer_end, B.host_end, B.peer_end, BRIDGE] {
            route
                .delete_link(link)
                .map_err(|e| netlink_failed(e.into()))?;
        }
        // isolab's bridge goes too when no container is on it. The workspace's removal
        // unmounts the namespace files, which frees the namespaces.
        net::remove_bridge_if_unused().map_err(netlink_failed)?;
        Ok(())
    }

    fn apply_solution(&self, ws: &Workspace) -> Result<(), LabError> {
        let ip = |args: &[&str]| observe::succeed(Command::new("ip").args(args)).map(drop);
        ip(&["link", "add", BRIDGE, "type", "bridge"])?;
        ip(&["link", "set", BRIDGE, "up"])?;
        for side in [A, B] {
            let file = ws.path(side.file);
            ws.write(side.file, "")?;
            observe::succeed(
                Command::new("unshare")
                    .arg(format!("--net={}", file.display()))
                    .arg("true"),
            )?;
            let file = file.to_string_lossy().into_owned();
            ip(&[
                "link",
                "add",
                side.host_end,
                "type",
                "veth",
                "peer",
                "name",
                side.peer_end,
            ])?;
            ip(&["link", "set", side.host_end, "master", BRIDGE, "up"])?;
            ip(&["link", "set", side.peer_end, "netns", &file])?;
            let seen = Observed::of(ws, side)?;
            let address = format!("{}/24", side.address);
            for args in [
                &["ip", "link", "set", side.peer_end, "name", "eth0"][..],
                &["ip", "addr", "add", &address, "dev", "eth0"],
                &["ip", "link", "set", "eth0", "up"],
                &["ip", "link", "set", "lo", "up"],
            ] {
                observe::succeed(&mut seen.enter(args))?;
            }
        }
        observe::succeed(&mut rootfs::run(
            &ws.path(ROOTFS),
            &["-d", "--net", "bridge", "--name", CONTAINER],
            &["sleep", "1000"],
        )?)?;
        let address = net::address_of(CONTAINER)
            .map_err(netlink_failed)?
            .ok_or_else(|| LabError::Command {
                command: format!("isolab run -d --net bridge --name {CONTAINER}"),
                detail: "the container has no lease".into(),
            })?;
        let peer_index = link_number(A.host_end, "ifindex").unwrap_or_default();
        let filled = answers::fill(
            ANSWERS,
            &[
                ("peer_index", peer_index.to_string()),
                ("container_address", address.to_string()),
                ("container_veth", net::host_link(address)),
            ],
        );
        ws.write(answers::FILE, &filled)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(link: &str) -> Observed {
        Observed {
            side: A,
            path: PathBuf::from("/x"),
            mounted: None,
            inode: None,
            eth0_addresses: String::new(),
            eth0_link: link.to_owned(),
        }
    }

    #[test]
    fn eth0_names_its_peer_and_its_flags() {
        let up =
            seen("2: eth0@if9: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 qdisc noqueue state UP");
        assert_eq!(up.eth0_peer(), Some(9));
        assert!(up.eth0_up());
        let down = seen("2: eth0@if12: <BROADCAST,MULTICAST> mtu 1500 state DOWN");
        assert_eq!(down.eth0_peer(), Some(12));
        assert!(!down.eth0_up());
        assert_eq!(seen("").eth0_peer(), None);
        assert_eq!(
            down.eth0_summary(),
            "eth0@if12: <BROADCAST,MULTICAST> no IPv4 address"
        );
    }
}
