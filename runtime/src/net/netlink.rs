//! A small synchronous rtnetlink client: one request, one answer, each step explained.
//!
//! `ip link add` and friends send these very messages; building them with
//! netlink-packet-route and reading the kernel's acknowledgement ourselves keeps the steps
//! visible to `--explain` and spares a process per step.

use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::path::PathBuf;

use netlink_packet_core::{
    NLM_F_ACK, NLM_F_CREATE, NLM_F_EXCL, NLM_F_REQUEST, NetlinkHeader, NetlinkMessage,
    NetlinkPayload,
};
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::{
    InfoData, InfoKind, InfoVeth, LinkAttribute, LinkFlags, LinkInfo, LinkMessage,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{Socket, protocols::NETLINK_ROUTE};
use nix::errno::Errno;

use crate::explain::Explain;

#[derive(Debug, thiserror::Error)]
pub enum NetlinkError {
    #[error("opening a netlink socket: {0}")]
    Socket(#[source] std::io::Error),
    #[error("entering the network namespace of {path}: {source}")]
    Namespace {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("netlink {request}: {source}")]
    Io {
        request: String,
        #[source]
        source: std::io::Error,
    },
    #[error("netlink {request}: the kernel answered {errno} ({})", errno.desc())]
    Kernel { request: String, errno: Errno },
    #[error("netlink {request}: unexpected answer: {detail}")]
    Answer { request: String, detail: String },
}

impl NetlinkError {
    /// The kernel's errno, when the kernel refused the request.
    pub fn errno(&self) -> Option<Errno> {
        match self {
            NetlinkError::Kernel { errno, .. } => Some(*errno),
            _ => None,
        }
    }
}

/// An rtnetlink socket, bound to the network namespace it was opened in.
#[derive(Debug)]
pub struct Route {
    socket: Socket,
    sequence: u32,
    explain: Explain,
    /// Where the socket lives, for the explain lines ("host", "container").
    place: &'static str,
}

impl Route {
    /// A socket in the caller's network namespace.
    pub fn open(explain: Explain) -> Result<Route, NetlinkError> {
        explain.step(format_args!(
            "socket(AF_NETLINK, SOCK_DGRAM, NETLINK_ROUTE)  (host network namespace)"
        ));
        Ok(Route {
            socket: open_socket()?,
            sequence: 0,
            explain,
            place: "host",
        })
    }

    /// A socket in the network namespace `ns` (an open `/proc/<pid>/ns/net`): a short-lived
    /// thread enters it and opens the socket, which stays in that namespace for good, so this
    /// process's own threads never leave the host's.
    pub fn open_in(
        ns: BorrowedFd<'_>,
        path: &str,
        explain: Explain,
    ) -> Result<Route, NetlinkError> {
        explain.step(format_args!("clone(CLONE_THREAD...)  (a helper thread)"));
        let raw = ns.as_raw_fd();
        let opened = std::thread::scope(|scope| {
            scope
                .spawn(move || {
                    explain.step(format_args!("setns({path}, CLONE_NEWNET)  (the helper thread only)"));
                    // SAFETY: `raw` is an open namespace descriptor borrowed for the whole
                    // scope; setns only changes this helper thread's network namespace.
                    let entered = unsafe { libc::setns(raw, libc::CLONE_NEWNET) };
                    explain.step(format_args!(
                        "socket(AF_NETLINK, SOCK_DGRAM, NETLINK_ROUTE)  (in the container's network namespace for good)"
                    ));
                    if entered != 0 {
                        return Err(NetlinkError::Namespace {
                            path: path.into(),
                            source: std::io::Error::last_os_error(),
                        });
                    }
                    open_socket()
                })
                .join()
        });
        let socket = opened.map_err(|_| NetlinkError::Namespace {
            path: path.into(),
            source: std::io::Error::other("the helper thread panicked"),
        })??;
        Ok(Route {
            socket,
            sequence: 0,
            explain,
            place: "container",
        })
    }

    /// Sends one request with NLM_F_ACK and waits for the kernel's answer.
    fn request(
        &mut self,
        message: RouteNetlinkMessage,
        flags: u16,
        what: &str,
    ) -> Result<Option<RouteNetlinkMessage>, NetlinkError> {
        self.sequence += 1;
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | flags;
        header.sequence_number = self.sequence;
        let mut packet = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(message));
        packet.finalize();
        let mut buf = vec![0; packet.buffer_len()];
        packet.serialize(&mut buf);
        let io = |source| NetlinkError::Io {
            request: what.to_string(),
            source,
        };
        let answer = self.exchange(&buf, io).map_err(|e| e.named(what));
        self.explain.step(format_args!(
            "netlink ({}) {what} = {}",
            self.place,
            match &answer {
                Ok(_) => "ok".to_string(),
                Err(e) => e
                    .errno()
                    .map_or_else(|| e.to_string(), |errno| errno.to_string()),
            }
        ));
        answer
    }

    fn exchange(
        &self,
        buf: &[u8],
        io: impl Fn(std::io::Error) -> NetlinkError,
    ) -> Result<Option<RouteNetlinkMessage>, NetlinkError> {
        self.socket.send(buf, 0).map_err(&io)?;
        let mut reply = None;
        loop {
            let (bytes, _) = self.socket.recv_from_full().map_err(&io)?;
            let mut offset = 0;
            while offset < bytes.len() {
                let message = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&bytes[offset..])
                    .map_err(|e| NetlinkError::Answer {
                        request: String::new(),
                        detail: e.to_string(),
                    })?;
                // Messages in one datagram start at 4-byte boundaries (NLMSG_ALIGN).
                offset += (message.header.length.max(1) as usize).next_multiple_of(4);
                if message.header.sequence_number != self.sequence {
                    continue;
                }
                match message.payload {
                    NetlinkPayload::Error(error) => {
                        return match error.code {
                            None => Ok(reply),
                            Some(code) => Err(NetlinkError::Kernel {
                                request: String::new(),
                                errno: Errno::from_raw(-code.get()),
                            }),
                        };
                    }
                    NetlinkPayload::InnerMessage(inner) => reply = Some(inner),
                    _ => {}
                }
            }
        }
    }

    /// `ip link add NAME type bridge`; false when it existed already.
    pub fn add_bridge(&mut self, name: &str) -> Result<bool, NetlinkError> {
        let mut link = LinkMessage::default();
        link.attributes = vec![
            LinkAttribute::IfName(name.into()),
            LinkAttribute::LinkInfo(vec![LinkInfo::Kind(InfoKind::Bridge)]),
        ];
        let what = format!("RTM_NEWLINK {name} type bridge (NLM_F_CREATE|NLM_F_EXCL)");
        created(self.request(
            RouteNetlinkMessage::NewLink(link),
            NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
            &what,
        ))
    }

    /// `ip link add HOST master BRIDGE up type veth peer name PEER netns PID`: the peer is
    /// created directly inside the network namespace of `pid`.
    pub fn add_veth(
        &mut self,
        host: &str,
        bridge_index: u32,
        peer: &str,
        pid: i32,
    ) -> Result<(), NetlinkError> {
        let mut peer_link = LinkMessage::default();
        peer_link.attributes = vec![
            LinkAttribute::IfName(peer.into()),
            LinkAttribute::NetNsPid(pid as u32),
        ];
        let mut link = LinkMessage::default();
        link.header.flags = LinkFlags::Up;
        link.header.change_mask = LinkFlags::Up;
        link.attributes = vec![
            LinkAttribute::IfName(host.into()),
            LinkAttribute::Controller(bridge_index),
            LinkAttribute::LinkInfo(vec![
                LinkInfo::Kind(InfoKind::Veth),
                LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(peer_link))),
            ]),
        ];
        let what = format!(
            "RTM_NEWLINK {host} type veth, master ifindex {bridge_index}, IFF_UP; peer {peer} in netns of pid {pid} (NLM_F_CREATE|NLM_F_EXCL)"
        );
        self.request(
            RouteNetlinkMessage::NewLink(link),
            NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
            &what,
        )
        .map(drop)
    }

    /// `ip link del NAME`; false when there was no such link.
    pub fn delete_link(&mut self, name: &str) -> Result<bool, NetlinkError> {
        let mut link = LinkMessage::default();
        link.attributes = vec![LinkAttribute::IfName(name.into())];
        let what = format!("RTM_DELLINK {name}");
        match self.request(RouteNetlinkMessage::DelLink(link), NLM_F_ACK, &what) {
            Ok(_) => Ok(true),
            Err(e) if e.errno() == Some(Errno::ENODEV) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// The interface index of `name`, or `None` if there is no such link.
    pub fn index_of(&mut self, name: &str) -> Result<Option<u32>, NetlinkError> {
        let mut link = LinkMessage::default();
        link.attributes = vec![LinkAttribute::IfName(name.into())];
        let what = format!("RTM_GETLINK {name}");
        match self.request(RouteNetlinkMessage::GetLink(link), NLM_F_ACK, &what) {
            Ok(Some(RouteNetlinkMessage::NewLink(found))) => Ok(Some(found.header.index)),
            Ok(other) => Err(NetlinkError::Answer {
                request: what,
                detail: format!("{other:?}"),
            }),
            Err(e) if e.errno() == Some(Errno::ENODEV) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `ip link set dev INDEX up`.
    pub fn set_up(&mut self, index: u32, name: &str) -> Result<(), NetlinkError> {
        let mut link = LinkMessage::default();
        link.header.index = index;
        link.header.flags = LinkFlags::Up;
        link.header.change_mask = LinkFlags::Up;
        let what = format!("RTM_NEWLINK {name} (ifindex {index}) IFF_UP");
        self.request(RouteNetlinkMessage::NewLink(link), NLM_F_ACK, &what)
            .map(drop)
    }

    /// `ip addr add ADDRESS/PREFIX dev INDEX`; false when the address was there already.
    pub fn add_address(
        &mut self,
        index: u32,
        name: &str,
        address: Ipv4Addr,
        prefix: u8,
    ) -> Result<bool, NetlinkError> {
        let mut message = AddressMessage::default();
        message.header.family = AddressFamily::Inet;
        message.header.prefix_len = prefix;
        message.header.index = index;
        message.attributes = vec![
            AddressAttribute::Local(address.into()),
            AddressAttribute::Address(address.into()),
        ];
        let what = format!("RTM_NEWADDR {address}/{prefix} dev {name} (NLM_F_CREATE|NLM_F_EXCL)");
        created(self.request(
            RouteNetlinkMessage::NewAddress(message),
            NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
            &what,
        ))
    }

    /// `ip route add default via GATEWAY`.
    pub fn add_default_route(&mut self, gateway: Ipv4Addr) -> Result<(), NetlinkError> {
        let mut route = RouteMessage::default();
        route.header.address_family = AddressFamily::Inet;
        route.header.table = RouteHeader::RT_TABLE_MAIN;
        route.header.protocol = RouteProtocol::Static;
        route.header.scope = RouteScope::Universe;
        route.header.kind = RouteType::Unicast;
        route.attributes = vec![RouteAttribute::Gateway(RouteAddress::Inet(gateway))];
        let what = format!("RTM_NEWROUTE default via {gateway} (NLM_F_CREATE|NLM_F_EXCL)");
        self.request(
            RouteNetlinkMessage::NewRoute(route),
            NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
            &what,
        )
        .map(drop)
    }
}

impl NetlinkError {
    /// Names the request in an error raised below the request's own code.
    fn named(self, what: &str) -> NetlinkError {
        match self {
            NetlinkError::Kernel { errno, .. } => NetlinkError::Kernel {
                request: what.into(),
                errno,
            },
            NetlinkError::Answer { detail, .. } => NetlinkError::Answer {
                request: what.into(),
                detail,
            },
            other => other,
        }
    }
}

/// A create request: true when created, false when it existed (EEXIST).
fn created(
    answer: Result<Option<RouteNetlinkMessage>, NetlinkError>,
) -> Result<bool, NetlinkError> {
    match answer {
        Ok(_) => Ok(true),
        Err(e) if e.errno() == Some(Errno::EEXIST) => Ok(false),
        Err(e) => Err(e),
    }
}

fn open_socket() -> Result<Socket, NetlinkError> {
    let mut socket = Socket::new(NETLINK_ROUTE).map_err(NetlinkError::Socket)?;
    socket.bind_auto().map_err(NetlinkError::Socket)?;
    Ok(socket)
}
