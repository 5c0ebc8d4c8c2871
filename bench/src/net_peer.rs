//! The server a `net` run talks to, started once per run set beside the target: another
//! host process for `native` (over loopback), another container on the bridge `isolab0` for
//! `container` (through two veth pairs and the bridge). Each measured run is a fresh client
//! launched the target's way; the server is removed when the run set ends.

use std::io::{BufRead, BufReader, Read};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::rootfs::{MEMORY_LIMIT, PIDS_LIMIT, WORKLOAD_IN_ROOT};
use crate::target::TargetError;
use crate::workload::Workload;

/// The port the server container listens on: its network namespace is its own.
const CONTAINER_PORT: u16 = 7070;
/// How long a server may take to accept its first connection.
const START: Duration = Duration::from_secs(10);

#[derive(Debug)]
enum Server {
    Process(Child),
    Container { isolab: String, name: String },
}

/// A running server and where clients reach it.
#[derive(Debug)]
pub(crate) struct NetPeer {
    server: Server,
    pub(crate) address: SocketAddr,
}

fn failed(target: &str, detail: String) -> TargetError {
    TargetError::NetPeer {
        target: target.to_owned(),
        detail,
    }
}

impl NetPeer {
    /// `isolab-workload net --listen PORT` as a host process, on a port free a moment ago.
    pub(crate) fn native(workload: &Workload) -> Result<NetPeer, TargetError> {
        let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .and_then(|l| l.local_addr())
            .map_err(|e| failed("native", format!("finding a free port: {e}")))?
            .port();
        let mut child = Command::new(&workload.path)
            .args(["net", "--listen", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| failed("native", format!("running {}: {e}", workload.path)))?;
        let mut line = String::new();
        let read = BufReader::new(child.stdout.take().expect("piped stdout")).read_line(&mut line);
        if read.is_err() || line.trim() != "ISOLAB-READY" {
            // It printed nothing and ended (or never will): its stderr says why.
            let _ = child.kill();
            let mut stderr = String::new();
            if let Some(mut pipe) = child.stderr.take() {
                let _ = pipe.read_to_string(&mut stderr);
            }
            let _ = child.wait();
            return Err(failed(
                "native",
                format!("the server did not start: {}", stderr.trim()),
            ));
        }
        Ok(NetPeer {
            server: Server::Process(child),
            address: SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
        })
    }

    /// `isolab run -d --net bridge` of the server, with the container target's limits and
    /// root, reached at its lease's address.
    pub(crate) fn container(isolab: &str, rootfs: &Path) -> Result<NetPeer, TargetError> {
        let name = format!("isolab-bench-net-{}", std::process::id());
        let port = CONTAINER_PORT.to_string();
        let rootfs = rootfs.to_string_lossy();
        let output = Command::new(isolab)
            .args(["run", "-d", "--net", "bridge", "--name", &name])
            .args([
                "--memory",
                MEMORY_LIMIT,
                "--pids-limit",
                &PIDS_LIMIT.to_string(),
            ])
            .args([
                "--rootfs",
                &rootfs,
                "--",
                WORKLOAD_IN_ROOT,
                "net",
                "--listen",
                &port,
            ])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| failed("container", format!("running {isolab}: {e}")))?;
        if !output.status.success() {
            return Err(failed(
                "container",
                format!(
                    "isolab run -d: {}",
                    String::from_utf8_lossy(&output.stderr).trim()
                ),
            ));
        }
        // From here on, dropping the peer removes the container.
        let mut peer = NetPeer {
            server: Server::Container {
                isolab: isolab.to_owned(),
                name: name.clone(),
            },
            address: SocketAddr::from((Ipv4Addr::UNSPECIFIED, CONTAINER_PORT)),
        };
        let address = isolab_runtime::net::address_of(&name)
            .map_err(|e| failed("container", e.to_string()))?
            .ok_or_else(|| failed("container", format!("container {name} has no lease")))?;
        peer.address = SocketAddr::from((address, CONTAINER_PORT));
        peer.wait_listening()?;
        Ok(peer)
    }

    /// Connects until the server accepts (it reads the empty connection as a check).
    fn wait_listening(&self) -> Result<(), TargetError> {
        let deadline = Instant::now() + START;
        loop {
            match TcpStream::connect_timeout(&self.address, START) {
                Ok(_) => return Ok(()),
                Err(e) if Instant::now() >= deadline => {
                    return Err(failed(
                        "container",
                        format!("the server at {} did not answer: {e}", self.address),
                    ));
                }
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    }

    /// The client's arguments that name this server.
    pub(crate) fn args(&self) -> [String; 2] {
        ["--peer".to_owned(), self.address.to_string()]
    }
}

impl Drop for NetPeer {
    fn drop(&mut self) {
        match &mut self.server {
            Server::Process(child) => {
                let _ = child.kill();
                let _ = child.wait();
            }
            Server::Container { isolab, name } => {
                let _ = Command::new(&*isolab)
                    .args(["rm", "-f", name.as_str()])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status();
            }
        }
    }
}
