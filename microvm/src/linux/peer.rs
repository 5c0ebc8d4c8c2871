//! Another VMM booting the same guest, for a side-by-side comparison
//! (`isolab vm run --vmm qemu-microvm`, bench target `qemu-microvm`): QEMU's `microvm`
//! machine, KVM-accelerated (`-cpu host`), with no default devices, no option ROMs and no
//! RTC, given the very kernel, initramfs, memory, vCPU count and command line isolab's own
//! monitor would boot. Its serial console is its stdout, read with the same [`Console`]
//! as isolab's UART, so `ISOLAB-READY` and init's exit are seen the same way and the run
//! ends at the same point: the kernel's panic line on init's exit. The memory figures
//! come from QEMU's `/proc/PID/smaps` at that moment: its PSS and anonymous memory less
//! the guest RAM mapping, and that mapping's resident size as the touched guest RAM.
//!
//! QEMU boots an ELF vmlinux through its PVH entry note (Debian's cloud kernel has one)
//! and a bzImage through qboot, so both monitors can be given the very same file.

use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};

use super::{
    BASE_CMDLINE, Config, DEFAULT_TIMEOUT, Error, Outcome, Run, TAIL, boot, check_inputs,
    console_for, ended, init_exited, smaps_field, trace_origin,
};
use crate::explain::{Explanation, Trace};
use crate::vm;

pub const QEMU: &str = "qemu-system-x86_64";
/// What the microvm machine loads from QEMU's data directory (Debian links
/// `bios-microvm.bin` to qboot): a copy of QEMU elsewhere (the sandbox) needs them too.
pub const QEMU_MICROVM_FIRMWARE: [&str; 2] = [
    "/usr/share/qemu/bios-microvm.bin",
    "/usr/share/qemu/qboot.rom",
];
/// `x-option-roms=off`: qboot loads the kernel itself. `rtc=off`: isolab's monitor has
/// none either (the command line keeps the kernel from probing for it).
const MACHINE: &str = "microvm,x-option-roms=off,rtc=off";
/// How often the wait for console output looks for a stop signal.
const POLL: Duration = Duration::from_millis(50);

#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    #[error("{QEMU} is not on PATH: install Debian's qemu-system-x86 (`isolab setup`)")]
    NoQemu,
    #[error("--disk is served by isolab's own monitor only; leave it out with --vmm qemu-microvm")]
    NoDisk,
    #[error("--profile samples isolab's own vCPU; leave it out with --vmm qemu-microvm")]
    NoProfile,
    #[error("starting {program}")]
    Spawn {
        program: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Boots `config`'s guest under QEMU's microvm machine and runs it to its end.
pub fn run_qemu_microvm(config: &Config) -> Result<Run, Error> {
    if config.disk.is_some() {
        return Err(PeerError::NoDisk.into());
    }
    if config.profile {
        return Err(PeerError::NoProfile.into());
    }
    let mut trace = Trace::new();
    let initrd = check_inputs(config, &mut trace)?.initrd;
    let qemu = find_on_path(QEMU).ok_or(PeerError::NoQemu)?;
    let line = boot::cmdline(
        BASE_CMDLINE,
        config.cmdline.as_deref(),
        &config.args,
        boot::ELF_CMDLINE_MAX,
    )?;
    let line = line
        .as_cstring()
        .map(|c| c.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut command = Command::new(&qemu);
    command
        .args(["-M", MACHINE, "-accel", "kvm", "-cpu", "host"])
        .arg("-m")
        .arg(format!("{}M", config.mem_size >> 20))
        .arg("-smp")
        .arg(config.vcpus.to_string())
        .args(["-nodefaults", "-no-user-config", "-display", "none"])
        .args(["-no-reboot", "-serial", "stdio", "-kernel"])
        .arg(&config.kernel)
        .arg("-initrd")
        .arg(&initrd)
        .arg("-append")
        .arg(&line)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // SAFETY: the closure runs in the child between fork and exec and only calls prctl(2),
    // which is async-signal-safe; it touches no memory shared with the parent.
    unsafe {
        command.pre_exec(|| {
            // A monitor killed outright (SIGKILL) takes its QEMU with it.
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut console = console_for(config, trace_origin(&trace));
    trace.mark("QEMU started");
    let child = command.spawn().map_err(|source| PeerError::Spawn {
        program: qemu.clone(),
        source,
    })?;
    let mut qemu = Qemu(child);
    let timeout = config.timeout.unwrap_or(DEFAULT_TIMEOUT);
    let deadline = Instant::now() + timeout;
    let mut stdout = qemu.0.stdout.take().expect("stdout is piped");
    let mut stderr = qemu.0.stderr.take().expect("stderr is piped");
    let (outcome, memory) = thread::scope(|scope| {
        let (tx, rx) = mpsc::channel::<Vec<u8>>();
        scope.spawn(move || {
            let mut buf = vec![0u8; 1 << 14];
            while let Ok(n @ 1..) = stdout.read(&mut buf) {
                if tx.send(buf[..n].to_vec()).is_err() {
                    break;
                }
            }
        });
        let said = scope.spawn(move || {
            let mut text = String::new();
            let _ = stderr.read_to_string(&mut text);
            text
        });
        let outcome = loop {
            let wait = deadline.saturating_duration_since(Instant::now()).min(POLL);
            match rx.recv_timeout(wait) {
                Ok(chunk) => {
                    // Console's writer never fails.
                    let _ = console.write_all(&chunk);
                    if init_exited(&console) {
                        break None;
                    }
                }
                // QEMU closed its console: it exited (a reset after another panic, with
                // -no-reboot, or a failure of its own).
                Err(RecvTimeoutError::Disconnected) => break None,
                Err(RecvTimeoutError::Timeout) => {
                    if let Some(signal) = vm::stop_requested() {
                        break Some(Outcome::Stopped(signal));
                    }
                    if Instant::now() >= deadline {
                        break Some(Outcome::TimedOut {
                            after: timeout,
                            ready: console.ready.is_some(),
                        });
                    }
                }
            }
        };
        // Measured before QEMU is stopped, at the moment isolab's own monitor measures.
        let memory = fs::read_to_string(format!("/proc/{}/smaps", qemu.0.id()))
            .ok()
            .map(|smaps| Memory::of(&smaps, config.mem_size));
        let status = qemu.stop();
        let said = said.join().unwrap_or_default();
        let outcome = outcome.unwrap_or_else(|| match (&console.panic, vm::stop_requested()) {
            (Some(_), _) => ended(&console),
            // A stop signal sent to the monitor's process group reached QEMU too, which
            // may have ended before the monitor looked.
            (None, Some(signal)) => Outcome::Stopped(signal),
            (None, None) => Outcome::KvmFailed(format!(
                "QEMU ended ({}) before the guest did: {}",
                status.map_or_else(|e| e.to_string(), |s| s.to_string()),
                said.trim()
            )),
        });
        (outcome, memory)
    });
    trace.mark("QEMU stopped");
    let memory = memory.unwrap_or_default();
    Ok(Run {
        outcome,
        first_instruction: None,
        first_console_line: console.first_line,
        ready: console.ready,
        total: trace.since_start(),
        vmm_pss: memory.vmm_pss,
        vmm_anon: memory.vmm_anon,
        guest_ram_touched: memory.guest_ram,
        ports: Default::default(),
        console_tail: console.tail(TAIL),
        figures: console.figures.clone(),
        disk_requests: None,
        profile: None,
        explanation: Explanation {
            steps: trace.steps().to_vec(),
            ..Explanation::default()
        },
    })
}

/// QEMU's memory, split as for isolab's monitor.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Memory {
    /// PSS less the guest RAM's.
    vmm_pss: Option<u64>,
    /// Anonymous memory less the guest RAM's.
    vmm_anon: Option<u64>,
    /// The guest RAM mapping's resident bytes.
    guest_ram: Option<u64>,
}

impl Memory {
    /// From a process's smaps: the guest RAM is its anonymous mappings (no path) at least
    /// as large as the guest's memory.
    fn of(smaps: &str, mem_size: u64) -> Memory {
        let (mut pss, mut anon) = (0, 0);
        let (mut ram_pss, mut ram_anon, mut ram_rss) = (0, 0, 0);
        for mapping in mappings(smaps) {
            let field = |name| smaps_field(mapping.body, name).unwrap_or(0);
            pss += field("Pss:");
            anon += field("Anonymous:");
            if mapping.anonymous && mapping.size >= mem_size {
                ram_pss += field("Pss:");
                ram_anon += field("Anonymous:");
                ram_rss += field("Rss:");
            }
        }
        Memory {
            vmm_pss: Some(pss - ram_pss),
            vmm_anon: Some(anon - ram_anon),
            guest_ram: Some(ram_rss),
        }
    }
}

/// One mapping of an smaps file: its size, whether it has no path, and its field lines.
struct Mapping<'a> {
    size: u64,
    anonymous: bool,
    body: &'a str,
}

fn mappings(smaps: &str) -> Vec<Mapping<'_>> {
    // A mapping starts with its address range, `start-end perms ...`; its fields follow.
    let is_header = |line: &str| {
        line.split_whitespace()
            .next()
            .and_then(|range| range.split_once('-'))
            .is_some_and(|(a, b)| {
                u64::from_str_radix(a, 16).is_ok() && u64::from_str_radix(b, 16).is_ok()
            })
    };
    let mut starts: Vec<usize> = Vec::new();
    let mut offset = 0;
    for line in smaps.split_inclusive('\n') {
        if is_header(line) {
            starts.push(offset);
        }
        offset += line.len();
    }
    starts.push(smaps.len());
    starts
        .windows(2)
        .map(|w| {
            let text = &smaps[w[0]..w[1]];
            let (header, body) = text.split_once('\n').unwrap_or((text, ""));
            let mut words = header.split_whitespace();
            let (start, end) = words
                .next()
                .and_then(|r| r.split_once('-'))
                .unwrap_or(("0", "0"));
            let size = u64::from_str_radix(end, 16).unwrap_or(0)
                - u64::from_str_radix(start, 16).unwrap_or(0);
            Mapping {
                size,
                anonymous: words.nth(4).is_none(),
                body,
            }
        })
        .collect()
}

/// Kills and reaps QEMU when dropped early, so no run outlives the monitor.
struct Qemu(Child);

impl Qemu {
    /// Kills QEMU if it still runs, and reaps it.
    fn stop(&mut self) -> io::Result<std::process::ExitStatus> {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
        }
        self.0.wait()
    }
}

impl Drop for Qemu {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

/// `program` in a directory of `PATH`.
pub fn find_on_path(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMAPS: &str = "\
55d0c0000000-55d0c0100000 r-xp 00000000 08:01 123  /usr/bin/qemu-system-x86_64
Size:               1024 kB
Rss:                 800 kB
Pss:                 400 kB
Anonymous:             0 kB
7f0000000000-7f0008000000 rw-p 00000000 00:00 0 
Size:             131072 kB
Rss:                9000 kB
Pss:                9000 kB
Anonymous:          9000 kB
7f1000000000-7f1000200000 rw-p 00000000 00:00 0 
Size:               2048 kB
Rss:                 300 kB
Pss:                 300 kB
Anonymous:           300 kB
";

    #[test]
    fn qemus_guest_ram_is_its_large_anonymous_mapping() {
        let memory = Memory::of(SMAPS, 128 << 20);
        assert_eq!(memory.guest_ram, Some(9000 << 10));
        assert_eq!(memory.vmm_pss, Some(700 << 10));
        assert_eq!(memory.vmm_anon, Some(300 << 10));
        let maps = mappings(SMAPS);
        assert_eq!(maps.len(), 3);
        assert!(!maps[0].anonymous && maps[1].anonymous && maps[2].anonymous);
        assert_eq!(maps[1].size, 128 << 20);
    }

    #[test]
    fn a_missing_qemu_is_named_with_its_package() {
        assert!(PeerError::NoQemu.to_string().contains("qemu-system-x86"));
        assert!(find_on_path("no-such-program-isolab").is_none());
    }
}
