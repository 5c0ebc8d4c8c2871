//! `isolab-workload`: the identical workload.
//!
//! One static x86-64 ELF that isolab runs natively, as a container's process and inside a
//! micro-VM: the same file, with the same sha256, everywhere. The mode is `argv[1]`.
//!
//! # Modes and output
//!
//! Every mode ends by printing exactly one machine-readable JSON object as the last line of
//! stdout, with `"mode"` as its first key.
//!
//! | command | output |
//! |---|---|
//! | `ready` | `ISOLAB-READY` then `{"mode":"ready"}`, in a single write(2). Start-up probe: the launcher time-stamps the moment it reads `ISOLAB-READY`. |
//! | `idle` | `ISOLAB-READY`, then sleeps until SIGTERM or SIGINT, then `{"mode":"idle"}`, exit 0. |
//! | `cpu --iters N` | SHA-256 chain from the fixed seed `00 01 .. 1f`: `digest = sha256(digest)`, N times. `{"mode":"cpu","iters":N,"digest":"<hex>","elapsed_ns":T}` |
//! | `mem --mib N` | mmap N MiB anonymous memory (untouched), write one byte per 4096-byte page. `{"mode":"mem","mib":N,"pages":P,"elapsed_ns":T,"ns_per_page":F}`, P = N·256 |
//! | `syscall --n N` | N raw getppid(2) calls. `{"mode":"syscall","n":N,"elapsed_ns":T,"ns_per_call":F}` |
//! | `io --mib N` | write N MiB in 1 MiB buffers to a new file in the cwd, fsync, read back, verify, remove. `{"mode":"io","mib":N,"write_ns":..,"fsync_ns":..,"read_ns":..,"write_mb_s":..,"read_mb_s":..,"durable_write_mb_s":..,"fadvise_dontneed":bool}` (MB = 10^6 bytes) |
//! | `probe [--host-marker PATH]` | ids, id maps, capabilities, seccomp, mounts, network interfaces, cgroup and its limits, visible pids, and whether PATH exists from here; see [`probe`]. Unreadable sources give `null`; a cgroup limit is a number, else the file's text (an unlimited v2 limit is `"max"`), or `null` if unreadable. |
//! | `net --listen PORT` | `ISOLAB-READY` once it listens on 0.0.0.0:PORT, then serves clients one after another until killed (no JSON line). |
//! | `net --peer IP:PORT --n N --mib M` | N one-byte TCP round trips against a `net --listen` server, each timed, then M MiB sent until the server's receipt; see [`net`]. `{"mode":"net","peer":..,"n":N,"rtt_min_ns":..,"rtt_median_ns":..,"rtt_p99_ns":..,"mib":M,"elapsed_ns":..,"mb_s":..}` |
//! | `--help`, `-h` | usage on stdout, exit 0 |
//!
//! `elapsed_ns` and the other `*_ns` fields are CLOCK_MONOTONIC nanoseconds measured inside
//! the process around the measured loop only. Floats have three decimals.
//!
//! # Exit status
//!
//! - `0`: the mode ran (for `idle`: it was stopped by SIGTERM/SIGINT).
//! - `1`: the mode failed at run time (I/O error, mmap failure, request larger than RAM...):
//!   a one-line message on stderr, and the final stdout line is `{"mode":M,"error":"..."}`.
//! - `2`: usage error (missing/unknown mode, unknown or duplicate flag, missing,
//!   non-numeric, zero or absurdly large value): one line on stderr naming the problem,
//!   followed by the usage.
//!
//! # Start-up cost
//!
//! No threads; nothing is read from /proc or any file except by `probe` and `io`; each
//! output message goes out in one write(2) (see [`out`]).

// Why std + static glibc (`+crt-static`, see .cargo/config.toml) and not no_std or musl:
// a static std binary has the real Linux process ABI (argv/envp/auxv on the stack, plain
// syscalls), so it runs unchanged as a process on the host, as a container's process (with
// nothing needed from the container's root file system), as /init of a Linux guest, and
// under our mini kernel, which implements the ~21 syscall kinds a static std binary makes
// at start. There is no dynamic loader and no PT_INTERP/DT_NEEDED (checked by
// tests/static_elf.rs), so the very same file, same sha256, works in all of them. We keep
// std's normal `main` start-up on purpose: it is the start-up the mini kernel implements.

mod args;
mod cpu;
mod disk;
mod idle;
mod json;
mod mem;
mod net;
mod out;
mod probe;
mod syscalls;

use std::process::ExitCode;
use std::time::Duration;

use args::Command;
use json::Object;

/// Nanoseconds of `d`, saturating at `u64::MAX` (584 years).
fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// The whole `ready` output, one write(2): nothing to format, nothing to allocate.
const READY_OUTPUT: &str = "ISOLAB-READY\n{\"mode\":\"ready\"}\n";

fn main() -> ExitCode {
    let status = run();
    out::drain_console_if_asked();
    status
}

fn run() -> ExitCode {
    let command = match args::parse(std::env::args_os().skip(1)) {
        Ok(command) => command,
        Err(e) => {
            out::stderr(&format!("isolab-workload: error: {e}; {}\n", args::USAGE));
            return ExitCode::from(2);
        }
    };

    let (mode, result): (&str, Result<Object, String>) = match command {
        Command::Help => {
            return match out::stdout(args::HELP) {
                Ok(()) => ExitCode::SUCCESS,
                Err(_) => ExitCode::FAILURE,
            };
        }
        Command::Ready => {
            return match out::stdout(READY_OUTPUT) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => fail("ready", &format!("writing to stdout failed: {e}")),
            };
        }
        Command::Idle => ("idle", idle::run()),
        Command::Cpu { iters } => ("cpu", Ok(cpu::run(iters))),
        Command::Mem { mib } => ("mem", mem::run(mib)),
        Command::Syscall { n } => ("syscall", Ok(syscalls::run(n))),
        Command::Io { mib } => ("io", disk::run(mib)),
        Command::Probe { host_marker } => ("probe", Ok(probe::run(host_marker.as_deref()))),
        Command::NetServe { port } => ("net", net::serve(port)),
        Command::NetPing { peer, n, mib } => ("net", net::ping(peer, n, mib)),
    };

    match result {
        Ok(object) => match out::stdout(&(object.render() + "\n")) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => fail(mode, &format!("writing to stdout failed: {e}")),
        },
        Err(message) => {
            let line = Object::mode(mode).with("error", message.as_str()).render();
            // Best effort: stdout may be the very thing that failed.
            let _ = out::stdout(&(line + "\n"));
            fail(mode, &message)
        }
    }
}

/// Reports a run-time failure on stderr; exit status 1.
fn fail(mode: &str, message: &str) -> ExitCode {
    out::stderr(&format!("isolab-workload: {mode}: {message}\n"));
    ExitCode::FAILURE
}
