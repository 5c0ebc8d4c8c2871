//! Each lab's working directory: `/var/lib/isolab/labs/<id>/`, or under `$ISOLAB_LAB_DIR`.

use std::io;
use std::path::{Path, PathBuf};

use crate::error::LabError;
use crate::observe;

const DEFAULT_ROOT: &str = "/var/lib/isolab/labs";

#[derive(Debug, Clone)]
pub struct Workspace {
    dir: PathBuf,
}

impl Workspace {
    /// The directory that holds every lab's workspace.
    pub fn root() -> PathBuf {
        std::env::var_os("ISOLAB_LAB_DIR")
            .map_or_else(|| PathBuf::from(DEFAULT_ROOT), PathBuf::from)
    }

    pub fn for_lab(id: u32) -> Self {
        Workspace {
            dir: Self::root().join(id.to_string()),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    pub fn exists(&self) -> bool {
        self.dir.is_dir()
    }

    pub fn write(&self, name: &str, contents: &str) -> Result<(), LabError> {
        let path = self.path(name);
        std::fs::write(&path, contents).map_err(LabError::io("writing", path))
    }

    /// A file's text, or `None` when it does not exist.
    pub fn read(&self, name: &str) -> Result<Option<String>, LabError> {
        let path = self.path(name);
        match std::fs::read_to_string(&path) {
            Ok(text) => Ok(Some(text)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(LabError::Io {
                action: "reading",
                path,
                source,
            }),
        }
    }

    pub(crate) fn create(&self) -> Result<(), LabError> {
        std::fs::create_dir_all(&self.dir).map_err(LabError::io("creating", &self.dir))
    }

    /// Unmounts whatever is mounted below the directory (namespace files the student
    /// bind-mounted, a /proc left by a program), then deletes it.
    pub(crate) fn remove(&self) -> Result<(), LabError> {
        observe::unmount_below(&self.dir)?;
        match std::fs::remove_dir_all(&self.dir) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(LabError::Io {
                action: "removing",
                path: self.dir.clone(),
                source: e,
            }),
            _ => Ok(()),
        }
    }
}

/// 16 random hex digits: what a lab writes at start and looks for later, so that a file
/// made before the lab started (or copied from another attempt) cannot pass.
pub fn nonce() -> Result<String, LabError> {
    let path = "/dev/urandom";
    let mut bytes = [0u8; 8];
    std::fs::File::open(path)
        .and_then(|mut f| io::Read::read_exact(&mut f, &mut bytes))
        .map_err(LabError::io("reading", path))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}
