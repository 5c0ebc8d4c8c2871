//! `--console-socket`: the caller (conmon) listens on a Unix socket and receives the pty
//! master over it (SCM_RIGHTS), as from runc, then relays the container's terminal itself.

use std::io::IoSlice;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::sys::socket::{
    AddressFamily, ControlMessage, MsgFlags, SockFlag, SockType, UnixAddr, connect, sendmsg, socket,
};

use super::OciError;

/// A connection to the socket at `path`, made before this process may enter the
/// container's mount namespace (where the path means nothing).
#[derive(Debug)]
pub struct ConsoleSocket {
    path: PathBuf,
    sock: OwnedFd,
}

impl ConsoleSocket {
    pub fn connect(path: &Path) -> Result<Self, OciError> {
        let err = |source| OciError::Console {
            path: path.to_path_buf(),
            source,
        };
        let sock = socket(
            AddressFamily::Unix,
            SockType::Stream,
            SockFlag::SOCK_CLOEXEC,
            None,
        )
        .map_err(err)?;
        let addr = UnixAddr::new(path).map_err(err)?;
        connect(sock.as_raw_fd(), &addr).map_err(err)?;
        Ok(ConsoleSocket {
            path: path.to_path_buf(),
            sock,
        })
    }

    /// Sends `master` over the connection.
    pub fn send(&self, master: &OwnedFd) -> Result<(), OciError> {
        let fds = [master.as_raw_fd()];
        // The payload is the terminal's name, which some receivers log.
        let payload = [IoSlice::new(b"/dev/ptmx")];
        sendmsg::<()>(
            self.sock.as_raw_fd(),
            &payload,
            &[ControlMessage::ScmRights(&fds)],
            MsgFlags::empty(),
            None,
        )
        .map_err(|source| OciError::Console {
            path: self.path.clone(),
            source,
        })?;
        Ok(())
    }
}
