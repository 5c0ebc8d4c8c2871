//! What a container should be, as validated values; parsing of the option syntaxes.

use std::path::PathBuf;

use crate::cgroups::Resources;

/// Everything `run` needs; built by the CLI from its options.
#[derive(Debug, Clone)]
pub struct ContainerConfig {
    pub name: String,
    pub hostname: String,
    pub rootfs: PathBuf,
    /// Overlay mount options when the root is an image ([`super::image_root`]): mounted on
    /// `rootfs` in the container's mount namespace instead of binding `rootfs` onto itself.
    pub overlay: Option<String>,
    /// argv of the command; `argv[0]` is looked up in the container's `PATH` unless it has a `/`.
    pub command: Vec<String>,
    /// `KEY=VAL` pairs given with `-e`; they override the defaults (PATH, HOSTNAME, HOME).
    pub env: Vec<(String, String)>,
    pub workdir: Option<String>,
    pub user: User,
    pub read_only: bool,
    pub resources: Resources,
    pub network: Network,
    pub userns: bool,
    pub privileged: bool,
    pub seccomp: bool,
    /// `--security-opt seccomp=FILE`: a seccompiler JSON profile whose filters are loaded
    /// after Docker's (alone when `seccomp` is off); none with `privileged`.
    pub seccomp_profile: Option<String>,
    /// `--tty`: stdio is a pseudo-terminal, relayed by the foreground `isolab run`.
    pub tty: bool,
    /// What an OCI bundle asks for beyond these options (`isolab-oci`); default for `run`.
    pub extra: super::extra::Extra,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct User {
    pub uid: u32,
    pub gid: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Network {
    /// A new network namespace with only `lo`, brought up.
    None,
    /// The host's network namespace.
    Host,
    /// A new network namespace with `lo` and `eth0`, a veth pair's end on the bridge
    /// `isolab0` with an address of its own (see [`crate::net`]).
    Bridge,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error(
        "invalid size {0:?}: expected a number with an optional k, m, g or t suffix (e.g. 64M)"
    )]
    Size(String),
    #[error("invalid --cpus {0:?}: expected a positive decimal number of CPUs (e.g. 0.5)")]
    Cpus(String),
    #[error("invalid --user {0:?}: expected UID or UID:GID (numeric)")]
    User(String),
    #[error("invalid environment variable {0:?}: expected KEY=VALUE")]
    Env(String),
    #[error(
        "invalid container name {0:?}: use letters, digits, '_', '.', '-' (first a letter or digit), at most 64"
    )]
    Name(String),
    #[error("unknown --net mode {0:?}: expected none, host or bridge")]
    Network(String),
    #[error(
        "unknown --security-opt {0:?}: expected seccomp=unconfined or seccomp=FILE (a seccompiler JSON profile)"
    )]
    SecurityOpt(String),
    #[error("--security-opt seccomp={path}: {detail}")]
    SeccompProfile { path: PathBuf, detail: String },
    #[error("--memory-swap needs --memory as well (it is the total of memory and swap)")]
    SwapWithoutMemory,
    #[error("--memory-swap {swap} is below --memory {memory}; it is the total of memory and swap")]
    SwapBelowMemory { memory: u64, swap: u64 },
}

/// Parses `64M`, `512k`, `1g`, `1073741824`, also with `b`/`ib` endings (`64MiB`, `64mb`).
pub fn parse_size(text: &str) -> Result<u64, ConfigError> {
    let err = || ConfigError::Size(text.to_string());
    let lower = text.trim().to_ascii_lowercase();
    let unitless = lower
        .strip_suffix("ib")
        .or_else(|| lower.strip_suffix('b'))
        .unwrap_or(&lower);
    let split = unitless
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(unitless.len());
    let (digits, unit) = unitless.split_at(split);
    let shift = match unit {
        "" => 0,
        "k" => 10,
        "m" => 20,
        "g" => 30,
        "t" => 40,
        _ => return Err(err()),
    };
    let number: u64 = digits.parse().map_err(|_| err())?;
    let bytes = number.checked_mul(1 << shift).ok_or_else(err)?;
    if bytes == 0 {
        return Err(err());
    }
    Ok(bytes)
}

/// Formats bytes the way a user would have written them (`32M`), for messages.
pub fn format_size(bytes: u64) -> String {
    const UNITS: [(u32, &str); 4] = [(40, "T"), (30, "G"), (20, "M"), (10, "K")];
    for (shift, unit) in UNITS {
        if bytes >= 1 << shift && bytes % (1 << shift) == 0 {
            return format!("{}{unit}", bytes >> shift);
        }
    }
    format!("{bytes}B")
}

/// `--memory-swap`: a size, or `-1` for unlimited swap (as Docker), validated against `--memory`.
pub fn parse_memory_swap(text: &str, memory: Option<u64>) -> Result<Option<u64>, ConfigError> {
    let memory = memory.ok_or(ConfigError::SwapWithoutMemory)?;
    if text.trim() == "-1" {
        return Ok(None);
    }
    let swap = parse_size(text)?;
    if swap < memory {
        return Err(ConfigError::SwapBelowMemory { memory, swap });
    }
    Ok(Some(swap))
}

/// `--cpus 0.5` as a CFS quota in µs per 100 ms period (decimal digits parsed exactly).
pub fn parse_cpus(text: &str) -> Result<u64, ConfigError> {
    let err = || ConfigError::Cpus(text.to_string());
    let (whole, frac) = text.trim().split_once('.').unwrap_or((text.trim(), ""));
    if whole.is_empty() && frac.is_empty()
        || !whole
            .bytes()
            .chain(frac.bytes())
            .all(|b| b.is_ascii_digit())
        || frac.len() > 5
    {
        return Err(err());
    }
    let whole: u64 = if whole.is_empty() {
        0
    } else {
        whole.parse().map_err(|_| err())?
    };
    let frac_us: u64 = format!("{frac:0<5}").parse().map_err(|_| err())?;
    let quota = whole
        .checked_mul(crate::cgroups::CPU_PERIOD_US)
        .and_then(|q| q.checked_add(frac_us))
        .ok_or_else(err)?;
    // The kernel's minimum quota is 1 ms.
    if quota < 1000 {
        return Err(err());
    }
    Ok(quota)
}

/// `--user UID[:GID]`; the group defaults to the uid, as `docker run --user 1000` does.
pub fn parse_user(text: &str) -> Result<User, ConfigError> {
    let err = || ConfigError::User(text.to_string());
    let (uid, gid) = text.split_once(':').unwrap_or((text, text));
    Ok(User {
        uid: uid.parse().map_err(|_| err())?,
        gid: gid.parse().map_err(|_| err())?,
    })
}

pub fn parse_env(text: &str) -> Result<(String, String), ConfigError> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_string(), value.to_string())),
        _ => Err(ConfigError::Env(text.to_string())),
    }
}

pub fn parse_network(text: &str) -> Result<Network, ConfigError> {
    match text {
        "none" => Ok(Network::None),
        "host" => Ok(Network::Host),
        "bridge" => Ok(Network::Bridge),
        other => Err(ConfigError::Network(other.to_string())),
    }
}

/// One `--security-opt`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecurityOpt {
    /// `seccomp=unconfined`: no Docker profile.
    Unconfined,
    /// `seccomp=FILE`: the profile's text, read and compiled once here so that a bad file
    /// is refused before anything starts.
    SeccompProfile(String),
}

pub fn parse_security_opt(text: &str) -> Result<SecurityOpt, ConfigError> {
    let value = text
        .strip_prefix("seccomp=")
        .or_else(|| text.strip_prefix("seccomp:"));
    match value {
        Some("unconfined") => Ok(SecurityOpt::Unconfined),
        Some(file) if !file.is_empty() => {
            let path = PathBuf::from(file);
            let profile_error = |detail: String| ConfigError::SeccompProfile {
                path: path.clone(),
                detail,
            };
            let json = std::fs::read_to_string(&path)
                .map_err(|e| profile_error(format!("cannot read it: {e}")))?;
            super::seccomp::profile(&json).map_err(|e| profile_error(e.to_string()))?;
            Ok(SecurityOpt::SeccompProfile(json))
        }
        _ => Err(ConfigError::SecurityOpt(text.to_string())),
    }
}

/// Docker's rule for names; it also keeps the name safe as a cgroup directory name.
pub fn validate_name(name: &str) -> Result<(), ConfigError> {
    let mut bytes = name.bytes();
    let first_ok = bytes.next().is_some_and(|b| b.is_ascii_alphanumeric());
    let rest_ok = bytes.all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
    if first_ok && rest_ok && name.len() <= 64 {
        Ok(())
    } else {
        Err(ConfigError::Name(name.to_string()))
    }
}

/// A name unique on this host for the life of the process: pid plus a nanosecond clock.
pub fn generated_name() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() ^ (d.as_secs() as u32))
        .unwrap_or(0);
    format!("isolab-{:x}-{nanos:08x}", std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_take_the_usual_suffixes() {
        assert_eq!(parse_size("64M"), Ok(64 << 20));
        assert_eq!(parse_size("64m"), Ok(64 << 20));
        assert_eq!(parse_size("64MiB"), Ok(64 << 20));
        assert_eq!(parse_size("1g"), Ok(1 << 30));
        assert_eq!(parse_size("512k"), Ok(512 << 10));
        assert_eq!(parse_size("4096"), Ok(4096));
        for bad in ["", "M", "12x", "-1", "0", "1.5g", "99999999999999t"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn sizes_format_back_to_their_unit() {
        assert_eq!(format_size(32 << 20), "32M");
        assert_eq!(format_size(1 << 30), "1G");
        assert_eq!(format_size(1000), "1000B");
    }

    #[test]
    fn swap_is_a_total_and_needs_memory() {
        assert_eq!(parse_memory_swap("64m", Some(32 << 20)), Ok(Some(64 << 20)));
        assert_eq!(parse_memory_swap("-1", Some(32 << 20)), Ok(None));
        assert_eq!(
            parse_memory_swap("64m", None),
            Err(ConfigError::SwapWithoutMemory)
        );
        assert!(parse_memory_swap("16m", Some(32 << 20)).is_err());
    }

    #[test]
    fn cpus_become_a_quota_per_100ms() {
        assert_eq!(parse_cpus("0.5"), Ok(50_000));
        assert_eq!(parse_cpus("2"), Ok(200_000));
        assert_eq!(parse_cpus(".25"), Ok(25_000));
        assert_eq!(parse_cpus("1.5"), Ok(150_000));
        for bad in ["", ".", "0", "0.001", "-1", "1e3", "abc", "0.123456"] {
            assert!(parse_cpus(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn user_gid_defaults_to_uid() {
        assert_eq!(
            parse_user("1000"),
            Ok(User {
                uid: 1000,
                gid: 1000
            })
        );
        assert_eq!(parse_user("1000:50"), Ok(User { uid: 1000, gid: 50 }));
        assert!(parse_user("alice").is_err());
    }

    #[test]
    fn env_needs_a_key() {
        assert_eq!(parse_env("A=b=c"), Ok(("A".into(), "b=c".into())));
        assert!(parse_env("=x").is_err());
        assert!(parse_env("A").is_err());
    }

    #[test]
    fn network_modes_parse_by_name() {
        assert_eq!(parse_network("bridge"), Ok(Network::Bridge));
        assert!(parse_network("overlay").is_err());
        assert_eq!(parse_network("none"), Ok(Network::None));
    }

    #[test]
    fn names_cannot_escape_the_cgroup_directory() {
        assert!(validate_name("web-1.a_b").is_ok());
        for bad in ["", "../x", "a/b", ".hidden", "-x", &"a".repeat(65)] {
            assert!(validate_name(bad).is_err(), "{bad}");
        }
        assert!(validate_name(&generated_name()).is_ok());
    }

    #[test]
    fn security_opts_name_unconfined_or_a_profile_that_compiles() {
        assert_eq!(
            parse_security_opt("seccomp:unconfined"),
            Ok(SecurityOpt::Unconfined)
        );
        let dir = std::env::temp_dir().join(format!("isolab-secopt-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (good, bad) = (dir.join("good.json"), dir.join("bad.json"));
        let json = r#"{"f": {"mismatch_action": "allow", "match_action": {"errno": 13}, "filter": [{"syscall": "mkdir"}]}}"#;
        std::fs::write(&good, json).unwrap();
        std::fs::write(&bad, r#"{"f": {"filter": []}}"#).unwrap();
        let opt =
            |path: &std::path::Path| parse_security_opt(&format!("seccomp={}", path.display()));
        assert_eq!(opt(&good), Ok(SecurityOpt::SeccompProfile(json.into())));
        assert!(matches!(opt(&bad), Err(ConfigError::SeccompProfile { .. })));
        assert!(matches!(
            opt(&dir.join("missing.json")),
            Err(ConfigError::SeccompProfile { .. })
        ));
        assert!(parse_security_opt("apparmor=unconfined").is_err());
        assert!(parse_security_opt("seccomp=").is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
