//! A container whose root is an image: the overlay prepared in the image store, the image's
//! config applied to the run, and the upper layer removed with the container.
//!
//! The overlay is mounted by the container's init, in its own mount namespace, in place of
//! the bind mount a directory root gets ([`super::rootfs`]): the same one mount(2) it would
//! cost the parent, but nothing of it ever exists in the host's mount namespace, so a
//! killed isolab leaves no mount behind — only the container's directory in the store,
//! which `gc` removes once its owner (the process that prepared it) is gone and no record
//! names it.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::config::{self, ConfigError, ContainerConfig, User};
use super::state;
use crate::image::{ImageError, OverlayRoot, RunConfig, Store};

/// A container directory without a readable owner younger than this may be one being set up.
const GC_MIN_AGE: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum ImageRootError {
    #[error(transparent)]
    Image(#[from] ImageError),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("image {0} has no entrypoint or cmd: give the command after --")]
    NoCommand(String),
    #[error("--user {spec:?}: {reason}")]
    User { spec: String, reason: String },
    #[error(
        "--userns with an image root is not supported: overlayfs in a user namespace cannot read the layers' trusted.overlay whiteouts"
    )]
    UserNamespace,
}

impl ImageRootError {
    /// The user's input was at fault, not the host.
    pub fn is_bad_input(&self) -> bool {
        match self {
            ImageRootError::Image(e) => e.is_bad_input(),
            _ => true,
        }
    }
}

/// A prepared image root; dropped without [`ImageRoot::keep`], it is removed from the store.
#[derive(Debug)]
pub struct ImageRoot {
    store: Store,
    name: String,
    image: String,
    overlay: OverlayRoot,
    kept: bool,
}

impl ImageRoot {
    /// Prepares container `name`'s root from `image` in the store at `store_root`, owned by
    /// this process (its pid and start time are recorded for `gc`).
    pub fn prepare(
        store_root: &Path,
        image: &str,
        name: &str,
    ) -> Result<ImageRoot, ImageRootError> {
        let store = Store::open(store_root)?;
        let pid = std::process::id() as i32;
        let owner = format!("{pid} {}", state::start_time(pid).unwrap_or(0));
        let overlay = store.prepare_rootfs(image, name, &owner)?;
        Ok(ImageRoot {
            store,
            name: name.to_string(),
            image: image.to_string(),
            overlay,
            kept: false,
        })
    }

    pub fn image_config(&self) -> &RunConfig {
        &self.overlay.config
    }

    /// Makes `config` run on this root with the image's config: `args` (the command line's
    /// CMD) replace the image's cmd after its entrypoint; the image's env comes before `-e`,
    /// which overrides it; its workdir and user apply unless the command line set them.
    pub fn apply(
        &self,
        config: &mut ContainerConfig,
        args: Vec<String>,
        user: Option<&str>,
    ) -> Result<(), ImageRootError> {
        if config.userns {
            return Err(ImageRootError::UserNamespace);
        }
        let image = &self.overlay.config;
        let args = if args.is_empty() {
            image.cmd.clone()
        } else {
            args
        };
        config.command = image.entrypoint.iter().cloned().chain(args).collect();
        if config.command.is_empty() {
            return Err(ImageRootError::NoCommand(self.image.clone()));
        }
        let mut env = image
            .env
            .iter()
            .map(|e| config::parse_env(e))
            .collect::<Result<Vec<_>, _>>()?;
        env.append(&mut config.env);
        config.env = env;
        if config.workdir.is_none() {
            config.workdir = image.working_dir.clone();
        }
        if let Some(spec) = user.or(image.user.as_deref()) {
            config.user = resolve_user(&self.overlay.lowerdirs, spec)?;
        }
        config.rootfs = self.overlay.mount_point.clone();
        config.overlay = Some(format!("{},volatile", self.overlay.mount_data()));
        Ok(())
    }

    /// Leaves the root in the store: a detached container's is removed by `rm` or `gc`.
    pub fn keep(mut self) {
        self.kept = true;
    }
}

impl Drop for ImageRoot {
    fn drop(&mut self) {
        if self.kept {
            return;
        }
        // The container's mounts went with its mount namespace; only directories are left.
        if let Err(e) = self.store.release_rootfs(&self.name) {
            eprintln!("isolab: warning: {e}");
        }
    }
}

/// `USER[:GROUP]`, each numeric or a name from the image's /etc/passwd and /etc/group (the
/// topmost layer holding the file). A numeric user alone gets the same group, as
/// `--user` does for a directory root; a named one gets its passwd group.
fn resolve_user(lowerdirs: &[PathBuf], spec: &str) -> Result<User, ImageRootError> {
    let (user, group) = match spec.split_once(':') {
        Some((user, group)) => (user, Some(group)),
        None => (spec, None),
    };
    let err = |reason: String| ImageRootError::User {
        spec: spec.to_string(),
        reason,
    };
    let (uid, passwd_gid) = match user.parse::<u32>() {
        Ok(uid) => (uid, uid),
        Err(_) => {
            let entry = lookup(lowerdirs, "etc/passwd", user)
                .ok_or_else(|| err(format!("no user {user:?} in the image's /etc/passwd")))?;
            let id = |i: usize| entry.get(i).and_then(|f| f.parse::<u32>().ok());
            match (id(2), id(3)) {
                (Some(uid), Some(gid)) => (uid, gid),
                _ => return Err(err(format!("a malformed /etc/passwd line for {user:?}"))),
            }
        }
    };
    let gid = match group {
        None => passwd_gid,
        Some(group) => match group.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => lookup(lowerdirs, "etc/group", group)
                .and_then(|entry| entry.get(2).and_then(|f| f.parse().ok()))
                .ok_or_else(|| err(format!("no group {group:?} in the image's /etc/group")))?,
        },
    };
    Ok(User { uid, gid })
}

/// The `:`-separated fields of the line for `name` in `file`, from the topmost layer that
/// has the file.
fn lookup(lowerdirs: &[PathBuf], file: &str, name: &str) -> Option<Vec<String>> {
    let text = lowerdirs
        .iter()
        .find_map(|layer| fs::read_to_string(layer.join(file)).ok())?;
    text.lines()
        .map(|line| line.split(':').map(str::to_string).collect::<Vec<_>>())
        .find(|fields| fields.first().map(String::as_str) == Some(name))
}

/// The image store a recorded root lives in: `rootfs` is `<store>/containers/<name>` (with
/// its `upper`) for a container started from an image.
fn store_of(rootfs: &Path, name: &str) -> Option<PathBuf> {
    let containers = rootfs.parent()?;
    let ours = rootfs.file_name()? == name
        && containers.file_name()? == "containers"
        && rootfs.join("upper").is_dir();
    ours.then(|| containers.parent().map(Path::to_path_buf))?
}

/// Removes container `name`'s image root, if `rootfs` (from its record) is one.
pub fn release(rootfs: &Path, name: &str) -> Result<(), ImageRootError> {
    match store_of(rootfs, name) {
        Some(root) => Ok(Store::open(root)?.release_rootfs(name)?),
        None => Ok(()),
    }
}

/// Removes image roots in the default store whose owner is gone and that no container record
/// names: left by a killed `isolab run`. Returns one line per root removed.
pub fn gc() -> Result<Vec<String>, ImageRootError> {
    let root = Store::default_root(None);
    // No store, no roots: gc does not create one.
    if !root.join("containers").is_dir() {
        return Ok(Vec::new());
    }
    let store = Store::open(root)?;
    let records = state::Store::default();
    let mut removed = Vec::new();
    for (name, dir) in store.containers()? {
        if records.exists(&name) {
            continue;
        }
        let owner = store.container_owner(&name).and_then(|text| {
            let (pid, start) = text.trim().split_once(' ')?;
            Some((pid.parse::<i32>().ok()?, start.parse::<u64>().ok()?))
        });
        let keep = match owner {
            Some((pid, start)) => state::is_alive(pid, start),
            None => fs::metadata(&dir)
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_none_or(|age| age < GC_MIN_AGE),
        };
        if keep {
            continue;
        }
        store.release_rootfs(&name)?;
        removed.push(match owner {
            Some((pid, _)) => format!("container root {name}: its owner (pid {pid}) was gone"),
            None => format!("container root {name}: no owner recorded"),
        });
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_resolve_by_number_or_through_the_images_files() {
        let dir = tempfile::tempdir().unwrap();
        let (top, base) = (dir.path().join("top"), dir.path().join("base"));
        fs::create_dir_all(top.join("etc")).unwrap();
        fs::create_dir_all(base.join("etc")).unwrap();
        fs::write(
            top.join("etc/passwd"),
            "root:x:0:0::/root:/bin/sh\nweb:x:33:34::/:/bin/sh\n",
        )
        .unwrap();
        fs::write(base.join("etc/passwd"), "web:x:1:1::/:/bin/sh\n").unwrap();
        fs::write(base.join("etc/group"), "staff:x:50:\n").unwrap();
        let layers = [top, base];
        let user = |spec| resolve_user(&layers, spec);
        assert_eq!(
            user("web").unwrap(),
            User { uid: 33, gid: 34 },
            "the top layer wins"
        );
        assert_eq!(user("web:staff").unwrap(), User { uid: 33, gid: 50 });
        assert_eq!(
            user("1000").unwrap(),
            User {
                uid: 1000,
                gid: 1000
            }
        );
        assert_eq!(user("7:8").unwrap(), User { uid: 7, gid: 8 });
        assert!(
            user("nobody")
                .unwrap_err()
                .to_string()
                .contains("/etc/passwd")
        );
        assert!(user("web:nogroup").is_err());
    }

    #[test]
    fn only_a_stores_container_directory_counts_as_an_image_root() {
        let dir = tempfile::tempdir().unwrap();
        let c = dir.path().join("containers/c1");
        fs::create_dir_all(c.join("upper")).unwrap();
        assert_eq!(store_of(&c, "c1").as_deref(), Some(dir.path()));
        assert_eq!(store_of(&c, "c2"), None);
        assert_eq!(store_of(&c.join("upper"), "c1"), None);
        assert_eq!(store_of(Path::new("/srv/rootfs"), "c1"), None);
    }
}
