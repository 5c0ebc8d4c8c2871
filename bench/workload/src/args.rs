//! Command-line parsing, by hand (no clap: size and start-up time matter here).
//!
//! Grammar: `isolab-workload MODE [--flag VALUE | --flag=VALUE]...`, or `--help`/`-h`
//! anywhere a mode or flag is expected.

use std::ffi::{OsStr, OsString};
use std::net::SocketAddr;

/// The one-line usage shown after every usage error.
pub const USAGE: &str = "usage: isolab-workload ready | idle | cpu --iters N | mem --mib N | syscall --n N | io --mib N | probe [--host-marker PATH] | net --listen PORT | net --peer IP:PORT --n N --mib N | --help";

/// The full help text printed by `--help`.
pub const HELP: &str = "\
isolab-workload: the identical workload run natively, in a container and in a micro-VM

usage: isolab-workload MODE [FLAGS]

modes (each ends with one JSON line on stdout, \"mode\" first):
  ready                      print ISOLAB-READY and exit (start-up probe)
  idle                       print ISOLAB-READY, then sleep until SIGTERM/SIGINT
  cpu --iters N              SHA-256 chain of N iterations from a fixed seed
  mem --mib N                mmap N MiB and touch it once per 4096-byte page
  syscall --n N              N raw getppid system calls
  io --mib N                 write N MiB to a temporary file in the cwd, fsync, read back
  probe [--host-marker PATH] describe what this process can see (ids, caps, mounts, cgroup...)
  net --listen PORT          serve TCP round trips and bulk bytes on 0.0.0.0:PORT until killed
  net --peer IP:PORT --n N --mib M
                             N one-byte TCP round trips, then M MiB, against a server

exit status: 0 ok, 1 the mode failed at run time, 2 usage error
";

/// Upper bound for iteration counts (`cpu --iters`, `syscall --n`): far beyond any sane
/// benchmark (hours of work), but it catches typos with extra zeros.
pub const MAX_COUNT: u64 = 10_000_000_000;
/// Upper bound for sizes in MiB (`mem --mib`, `io --mib`): 1 TiB.
pub const MAX_MIB: u64 = 1 << 20;

/// What the command line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Help,
    Ready,
    Idle,
    Cpu { iters: u64 },
    Mem { mib: u64 },
    Syscall { n: u64 },
    Io { mib: u64 },
    Probe { host_marker: Option<OsString> },
    NetServe { port: u16 },
    NetPing { peer: SocketAddr, n: u64, mib: u64 },
}

/// A usage error: the message names the problem; the caller appends [`USAGE`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageError(pub String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn err<T>(msg: String) -> Result<T, UsageError> {
    Err(UsageError(msg))
}

fn is_help(arg: &OsStr) -> bool {
    arg == "--help" || arg == "-h"
}

/// Parses the arguments after argv[0].
pub fn parse<I>(args: I) -> Result<Command, UsageError>
where
    I: IntoIterator<Item = OsString>,
{
    let mut args = args.into_iter();
    let Some(mode) = args.next() else {
        return err("missing mode".into());
    };
    if is_help(&mode) {
        return Ok(Command::Help);
    }
    let rest: Vec<OsString> = args.collect();
    let Some(mode_str) = mode.to_str() else {
        return err(format!("unknown mode '{}'", mode.to_string_lossy()));
    };
    // Flags each mode accepts; `parse_flags` rejects anything else.
    let allowed: &[&str] = match mode_str {
        "ready" | "idle" => &[],
        "cpu" => &["--iters"],
        "mem" | "io" => &["--mib"],
        "syscall" => &["--n"],
        "probe" => &["--host-marker"],
        "net" => &["--listen", "--peer", "--n", "--mib"],
        other => return err(format!("unknown mode '{other}'")),
    };
    let Some(flags) = parse_flags(mode_str, &rest, allowed)? else {
        return Ok(Command::Help);
    };
    Ok(match mode_str {
        "ready" => Command::Ready,
        "idle" => Command::Idle,
        "cpu" => Command::Cpu {
            iters: number(&flags, "--iters", MAX_COUNT)?,
        },
        "mem" => Command::Mem {
            mib: number(&flags, "--mib", MAX_MIB)?,
        },
        "io" => Command::Io {
            mib: number(&flags, "--mib", MAX_MIB)?,
        },
        "syscall" => Command::Syscall {
            n: number(&flags, "--n", MAX_COUNT)?,
        },
        "probe" => {
            let host_marker = lookup(&flags, "--host-marker").cloned();
            if host_marker.as_ref().is_some_and(|p| p.is_empty()) {
                return err("invalid value '' for --host-marker: empty path".into());
            }
            Command::Probe { host_marker }
        }
        "net" => net(&flags)?,
        _ => unreachable!("mode was validated above"),
    })
}

/// `net`: a server (`--listen` alone) or a client (`--peer`, `--n`, `--mib`).
fn net(flags: &[(String, OsString)]) -> Result<Command, UsageError> {
    match (lookup(flags, "--listen"), lookup(flags, "--peer")) {
        (Some(_), None) if flags.len() == 1 => Ok(Command::NetServe {
            port: number(flags, "--listen", u64::from(u16::MAX))? as u16,
        }),
        (None, Some(peer)) => {
            let text = peer.to_string_lossy();
            let peer = text.parse().or_else(|_| {
                err(format!(
                    "invalid value '{text}' for --peer: expected IP:PORT (e.g. 10.77.0.2:7070)"
                ))
            })?;
            Ok(Command::NetPing {
                peer,
                n: number(flags, "--n", MAX_COUNT)?,
                mib: number(flags, "--mib", MAX_MIB)?,
            })
        }
        _ => {
            err("net takes either --listen PORT alone, or --peer IP:PORT with --n and --mib".into())
        }
    }
}

/// Splits `rest` into `(flag, value)` pairs. `Ok(None)` means `--help` was seen.
fn parse_flags(
    mode: &str,
    rest: &[OsString],
    allowed: &[&str],
) -> Result<Option<Vec<(String, OsString)>>, UsageError> {
    let mut flags: Vec<(String, OsString)> = Vec::new();
    let mut i = 0;
    while i < rest.len() {
        let arg = &rest[i];
        i += 1;
        if is_help(arg) {
            return Ok(None);
        }
        let text = arg.to_string_lossy();
        if !text.starts_with("--") {
            return err(format!("unexpected argument '{text}' for mode '{mode}'"));
        }
        // `--flag=value` or `--flag value`. A flag name is ASCII, so splitting the bytes
        // at the first '=' is safe even when the value is not UTF-8.
        let bytes = arg.as_encoded_bytes();
        let (name, inline) = match bytes.iter().position(|&b| b == b'=') {
            Some(eq) => (
                String::from_utf8_lossy(&bytes[..eq]).into_owned(),
                Some(arg_from_bytes(&bytes[eq + 1..])),
            ),
            None => (text.into_owned(), None),
        };
        if !allowed.contains(&name.as_str()) {
            return err(format!("unknown flag '{name}' for mode '{mode}'"));
        }
        if flags.iter().any(|(n, _)| *n == name) {
            return err(format!("duplicate flag {name}"));
        }
        let value = match inline {
            Some(v) => v,
            None => match rest.get(i) {
                Some(v) => {
                    i += 1;
                    v.clone()
                }
                None => return err(format!("missing value for {name}")),
            },
        };
        flags.push((name, value));
    }
    Ok(Some(flags))
}

fn arg_from_bytes(bytes: &[u8]) -> OsString {
    use std::os::unix::ffi::OsStrExt;
    OsStr::from_bytes(bytes).to_owned()
}

fn lookup<'a>(flags: &'a [(String, OsString)], name: &str) -> Option<&'a OsString> {
    flags.iter().find(|(n, _)| n == name).map(|(_, v)| v)
}

/// A required positive decimal integer flag, at most `max`.
fn number(flags: &[(String, OsString)], name: &str, max: u64) -> Result<u64, UsageError> {
    let Some(raw) = lookup(flags, name) else {
        return err(format!("missing required flag {name}"));
    };
    let text = raw.to_string_lossy();
    // Only plain ASCII digits: no sign, no whitespace, no underscores, no hex.
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return err(format!(
            "invalid value '{text}' for {name}: expected a positive integer"
        ));
    }
    match text.parse::<u64>() {
        Ok(0) => err(format!("invalid value '0' for {name}: must be at least 1")),
        Ok(n) if n <= max => Ok(n),
        _ => {
            let unit = if max == MAX_MIB { " MiB (1 TiB)" } else { "" };
            err(format!(
                "invalid value '{text}' for {name}: too large, at most {max}{unit}"
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(args: &[&str]) -> Result<Command, UsageError> {
        parse(args.iter().map(OsString::from))
    }

    fn usage_err(args: &[&str]) -> String {
        match p(args) {
            Err(UsageError(msg)) => msg,
            Ok(cmd) => panic!("{args:?} parsed as {cmd:?}"),
        }
    }

    #[test]
    fn parses_every_mode() {
        assert_eq!(p(&["ready"]), Ok(Command::Ready));
        assert_eq!(p(&["idle"]), Ok(Command::Idle));
        assert_eq!(p(&["cpu", "--iters", "10"]), Ok(Command::Cpu { iters: 10 }));
        assert_eq!(p(&["cpu", "--iters=7"]), Ok(Command::Cpu { iters: 7 }));
        assert_eq!(p(&["mem", "--mib", "4"]), Ok(Command::Mem { mib: 4 }));
        assert_eq!(p(&["io", "--mib", "2"]), Ok(Command::Io { mib: 2 }));
        assert_eq!(
            p(&["syscall", "--n", "1000"]),
            Ok(Command::Syscall { n: 1000 })
        );
        assert_eq!(p(&["probe"]), Ok(Command::Probe { host_marker: None }));
        assert_eq!(
            p(&["probe", "--host-marker", "/tmp/x=y"]),
            Ok(Command::Probe {
                host_marker: Some("/tmp/x=y".into())
            })
        );
        assert_eq!(
            p(&["probe", "--host-marker=/a"]),
            Ok(Command::Probe {
                host_marker: Some("/a".into())
            })
        );
    }

    #[test]
    fn net_is_a_server_or_a_client() {
        assert_eq!(
            p(&["net", "--listen", "7070"]),
            Ok(Command::NetServe { port: 7070 })
        );
        assert_eq!(
            p(&["net", "--peer", "10.77.0.2:7070", "--n", "5", "--mib", "1"]),
            Ok(Command::NetPing {
                peer: "10.77.0.2:7070".parse().unwrap(),
                n: 5,
                mib: 1
            })
        );
        assert!(usage_err(&["net", "--listen", "70000"]).contains("too large"));
        assert!(usage_err(&["net", "--listen", "1", "--n", "2"]).contains("either"));
        assert!(
            usage_err(&["net", "--peer", "host", "--n", "1", "--mib", "1"]).contains("IP:PORT")
        );
        assert!(usage_err(&["net", "--peer", "10.0.0.1:1", "--n", "1"]).contains("--mib"));
    }

    #[test]
    fn help_anywhere() {
        assert_eq!(p(&["--help"]), Ok(Command::Help));
        assert_eq!(p(&["-h"]), Ok(Command::Help));
        assert_eq!(p(&["cpu", "--help"]), Ok(Command::Help));
        assert_eq!(p(&["mem", "--mib", "1", "-h"]), Ok(Command::Help));
    }

    #[test]
    fn bounds() {
        assert_eq!(
            p(&["mem", "--mib", "1048576"]),
            Ok(Command::Mem { mib: MAX_MIB })
        );
        assert!(usage_err(&["mem", "--mib", "1048577"]).contains("too large"));
        assert!(usage_err(&["io", "--mib", "99999999999999999999999"]).contains("too large"));
        assert_eq!(
            p(&["cpu", "--iters", "10000000000"]),
            Ok(Command::Cpu { iters: MAX_COUNT })
        );
        assert!(usage_err(&["syscall", "--n", "10000000001"]).contains("too large"));
    }

    #[test]
    fn usage_errors_name_the_problem() {
        let cases: &[(&[&str], &str)] = &[
            (&[], "missing mode"),
            (&["fly"], "unknown mode 'fly'"),
            (&["cpu"], "missing required flag --iters"),
            (&["cpu", "--iters"], "missing value for --iters"),
            (
                &["cpu", "--iters", "abc"],
                "invalid value 'abc' for --iters",
            ),
            (&["cpu", "--iters", "-1"], "invalid value '-1'"),
            (&["cpu", "--iters", "+1"], "invalid value '+1'"),
            (&["cpu", "--iters", " 1"], "expected a positive integer"),
            (&["cpu", "--iters="], "invalid value ''"),
            (&["cpu", "--iters", "0"], "must be at least 1"),
            (&["mem", "--mib", "000"], "must be at least 1"),
            (
                &["cpu", "--mib", "1"],
                "unknown flag '--mib' for mode 'cpu'",
            ),
            (&["ready", "--n", "1"], "unknown flag '--n'"),
            (&["ready", "now"], "unexpected argument 'now'"),
            (&["cpu", "--iters", "1", "2"], "unexpected argument '2'"),
            (
                &["cpu", "--iters", "1", "--iters", "2"],
                "duplicate flag --iters",
            ),
            (&["probe", "--host-marker", ""], "empty path"),
            (
                &["probe", "--host-marker"],
                "missing value for --host-marker",
            ),
        ];
        for (args, needle) in cases {
            let msg = usage_err(args);
            assert!(msg.contains(needle), "{args:?}: {msg:?} lacks {needle:?}");
            assert!(!msg.contains('\n'), "{args:?}: message must be one line");
        }
    }

    #[test]
    fn non_utf8_arguments_do_not_panic() {
        use std::os::unix::ffi::OsStringExt;
        let bad = OsString::from_vec(vec![b'x', 0xff]);
        assert!(parse([bad.clone()]).is_err());
        assert!(parse(["cpu".into(), "--iters".into(), bad.clone()]).is_err());
        let mut flag = b"--host-marker=".to_vec();
        flag.push(0xfe);
        assert_eq!(
            parse(["probe".into(), OsString::from_vec(flag)]),
            Ok(Command::Probe {
                host_marker: Some(OsString::from_vec(vec![0xfe]))
            })
        );
    }
}
