//! The mini kernel on standard KVM (SVM with NPT, inside the QEMU/TCG sandbox): every
//! workload mode, the timeout, SIGTERM, a crash and the ENOSYS accounting, each compared
//! with the same binary run natively in the same sandbox — "same binary, same results" as
//! on this PVM host (tests/vm_mini.rs).
//!
//! Every case runs in ONE sandbox boot (a boot costs seconds of emulated CPU): a shell
//! script runs them one after another and prints each result between delimiter lines, which
//! the test parses.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use isolab_bench::sandbox::{GuestFile, RunSpec, SandboxOutput};
use serde_json::Value;

#[path = "common/sandbox.rs"]
mod sandbox_common;
use sandbox_common::{bin_dir, chain, sandbox};

/// A minimal static ET_EXEC ELF whose entry point stores to address 0 (`mov byte [0], 0`):
/// a page fault in ring 3, which must end the VM as SIGSEGV would end the process.
fn null_store_elf(dir: &Path) -> PathBuf {
    const BASE: u64 = 0x40_0000;
    let mut elf = vec![0u8; 0x2000];
    let mut put = |at: usize, bytes: &[u8]| elf[at..at + bytes.len()].copy_from_slice(bytes);
    put(0, b"\x7fELF\x02\x01\x01");
    put(16, &2u16.to_le_bytes()); // ET_EXEC
    put(18, &62u16.to_le_bytes()); // EM_X86_64
    put(20, &1u32.to_le_bytes());
    put(24, &(BASE + 0x1000).to_le_bytes()); // e_entry
    put(32, &64u64.to_le_bytes()); // e_phoff
    put(52, &64u16.to_le_bytes()); // e_ehsize
    put(54, &56u16.to_le_bytes()); // e_phentsize
    put(56, &1u16.to_le_bytes()); // e_phnum
    put(64, &1u32.to_le_bytes()); // PT_LOAD
    put(68, &5u32.to_le_bytes()); // R X
    put(80, &BASE.to_le_bytes()); // p_vaddr
    put(88, &BASE.to_le_bytes()); // p_paddr
    put(96, &0x2000u64.to_le_bytes()); // p_filesz
    put(104, &0x2000u64.to_le_bytes()); // p_memsz
    put(112, &0x1000u64.to_le_bytes()); // p_align
    put(0x1000, &[0xc6, 0x04, 0x25, 0, 0, 0, 0, 0]);
    let path = dir.join("null-store");
    let mut file = std::fs::File::create(&path).unwrap();
    file.write_all(&elf).unwrap();
    path
}

const CRASH_ELF: &str = "/root/null-store";

/// Each case prints `@@@ NAME STATUS`, its stdout, `@@@ stderr` and its stderr.
/// `term` signals the command once it printed `ISOLAB-READY` (at most 10 s) or after 1 s
/// for a mode that never prints it; the command is started directly (not through a shell
/// function) so that `$!` is its own pid.
const SCRIPT: &str = r#"
W=isolab-workload
vm() { isolab vm run --guest mini --timeout 60 "$@"; }
report() { echo "@@@ $1 $2"; cat /tmp/o; echo "@@@ stderr"; cat /tmp/e; }
c() { n=$1; shift; "$@" >/tmp/o 2>/tmp/e; report $n $?; }
term() {
  n=$1; wait_ready=$2; shift 2
  # Emptied here, not only by the background job's redirection: that one may run after
  # the loop below has already found the previous case's ISOLAB-READY.
  : >/tmp/o; : >/tmp/e
  "$@" >/tmp/o 2>/tmp/e & p=$!
  if [ $wait_ready = ready ]; then
    i=0; while [ $i -lt 100 ] && ! grep -q ISOLAB-READY /tmp/o; do sleep 0.1; i=$((i+1)); done
  else
    sleep 1
  fi
  kill -TERM $p; wait $p; report $n $?
}
cd /root
for m in ready 'cpu --iters 2000' 'mem --mib 8' 'syscall --n 100' 'io --mib 2' probe; do
  set -- $m
  c native-$1 $W "$@"
  c vm-$1 vm --workload "$@"
done
c vm-idle-timeout isolab vm run --guest mini --timeout 1 --workload idle
term native-idle-sigterm ready $W idle
term vm-idle-sigterm ready isolab vm run --guest mini --timeout 60 --workload idle
term vm-busy-sigterm after1s isolab vm run --guest mini --timeout 60 --workload cpu --iters 1000000000
c vm-crash vm --workload-bin CRASH_ELF --workload ready
c vm-explain vm --explain --workload ready
"#;

/// One case's result.
#[derive(Debug)]
struct Case {
    status: i32,
    stdout: String,
    stderr: String,
}

fn parse(stdout: &str) -> BTreeMap<String, Case> {
    let mut cases: Vec<(String, Case)> = Vec::new();
    // Every stream the script prints ends with a newline, so each marker starts a line.
    let text = format!("\n{}", stdout.strip_suffix('\n').unwrap_or(stdout));
    for chunk in text.split("\n@@@ ").skip(1) {
        let (header, body) = match chunk.split_once('\n') {
            Some((header, body)) => (header, format!("{body}\n")),
            None => (chunk, String::new()),
        };
        if header == "stderr" {
            let (_, last) = cases.last_mut().expect("a case before its stderr");
            last.stderr = body;
            continue;
        }
        let (name, status) = header.split_once(' ').expect("NAME STATUS");
        let case = Case {
            status: status.parse().expect("a status"),
            stdout: body,
            stderr: String::new(),
        };
        cases.push((name.to_owned(), case));
    }
    let count = cases.len();
    let cases: BTreeMap<_, _> = cases.into_iter().collect();
    assert_eq!(cases.len(), count, "a case name twice");
    cases
}

fn last_json(case: &Case) -> Value {
    let line = case.stdout.lines().last().unwrap_or_default();
    serde_json::from_str(line).unwrap_or_else(|e| panic!("{line:?}: {e}\n{case:#?}"))
}

/// Keys whose values are timings (different on every run) or, for `probe`, the process's
/// view of its environment (different by design: the guest is pid 1 of its own machine).
fn varies(mode: &str, key: &str) -> bool {
    mode == "probe" || key.ends_with("_ns") || key.ends_with("_mb_s") || key.starts_with("ns_per_")
}

fn assert_same_as_native(mode: &str, native: &Value, guest: &Value) {
    let keys = |v: &Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
    assert_eq!(keys(guest), keys(native), "{mode}: same keys, same order");
    for (key, value) in native.as_object().unwrap() {
        if !varies(mode, key) {
            assert_eq!(&guest[key], value, "{mode}: {key}");
        }
    }
}

#[test]
fn every_mode_runs_under_the_mini_kernel_on_standard_kvm_as_natively() {
    let sandbox = sandbox();
    let dir = tempfile::tempdir().unwrap();
    let mut spec = RunSpec::new(["sh", "-c", &SCRIPT.replace("CRASH_ELF", CRASH_ELF)])
        .isolab_binaries(&bin_dir())
        .timeout(Duration::from_secs(90));
    spec.files.push(GuestFile {
        host: null_store_elf(dir.path()),
        guest: CRASH_ELF.into(),
        strip_debug: false,
    });
    let out: SandboxOutput = sandbox
        .run(&spec)
        .unwrap_or_else(|e| panic!("{}", chain(&e)));
    let stdout = out.stdout_text();
    let cases = parse(&stdout);
    let context = format!(
        "script stdout:\n{stdout}\nstderr:\n{}\nconsole tail:\n{}",
        out.stderr_text(),
        String::from_utf8_lossy(&out.console[out.console.len().saturating_sub(2000)..])
    );
    assert_eq!(out.status, 0, "{context}");
    let case = |name: &str| {
        cases
            .get(name)
            .unwrap_or_else(|| panic!("no {name} in the output:\n{context}"))
    };

    for mode in ["ready", "cpu", "mem", "syscall", "io", "probe"] {
        let (native, guest) = (case(&format!("native-{mode}")), case(&format!("vm-{mode}")));
        assert_eq!(native.status, 0, "native {mode}: {native:#?}");
        assert_eq!(guest.status, 0, "vm {mode}: {guest:#?}");
        assert_same_as_native(mode, &last_json(native), &last_json(guest));
    }
    assert_eq!(
        case("vm-ready").stdout,
        "ISOLAB-READY\n{\"mode\":\"ready\"}\n"
    );
    // The digest also equals the one computed natively on the host running this test.
    let host = std::process::Command::new(bin_dir().join("isolab-workload"))
        .args(["cpu", "--iters", "2000"])
        .output()
        .unwrap();
    let host_line = String::from_utf8_lossy(&host.stdout);
    let host_cpu: Value = serde_json::from_str(host_line.lines().last().unwrap()).unwrap();
    assert_eq!(last_json(case("vm-cpu"))["digest"], host_cpu["digest"]);
    let probe = last_json(case("vm-probe"));
    assert_eq!(probe["pid"], 1, "{probe}");
    assert_eq!(probe["hostname"], "isolab-mini", "{probe}");

    // Exit statuses as on PVM (see tests/vm_mini.rs).
    let timeout = case("vm-idle-timeout");
    assert_eq!(timeout.status, 124, "{timeout:#?}");
    assert_eq!(timeout.stdout, "ISOLAB-READY\n", "{timeout:#?}");
    for name in ["native-idle-sigterm", "vm-idle-sigterm"] {
        let idle = case(name);
        assert_eq!(idle.status, 0, "{name}: the handler runs: {idle:#?}");
        assert_eq!(
            idle.stdout, "ISOLAB-READY\n{\"mode\":\"idle\"}\n",
            "{name}: {idle:#?}"
        );
    }
    let busy = case("vm-busy-sigterm");
    assert_eq!(busy.status, 143, "{busy:#?}");
    assert!(busy.stderr.contains("VM stopped on signal 15"), "{busy:#?}");
    let crash = case("vm-crash");
    assert_eq!(crash.status, 139, "SIGSEGV: {crash:#?}");
    assert!(
        crash
            .stderr
            .contains("#PF page fault (vector 14) at rip 0x401000, address 0x0"),
        "{crash:#?}"
    );

    let explain = case("vm-explain");
    assert_eq!(explain.status, 0, "{explain:#?}");
    let enosys = explain
        .stderr
        .lines()
        .find_map(|l| l.strip_suffix(" answered ENOSYS; monitor time per call:"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|n| n.parse::<u64>().ok())
        .unwrap_or_else(|| panic!("no ENOSYS count: {explain:#?}"));
    assert!(enosys >= 1, "rseq at least: {explain:#?}");
    assert!(
        explain
            .stderr
            .lines()
            .any(|l| l.trim_start().starts_with("rseq") && l.ends_with("ENOSYS")),
        "{explain:#?}"
    );
    // On SVM `syscall` enters real ring 0 and LSTAR's `hlt` exits to the monitor directly.
    assert!(
        explain.stderr.contains("\n  hlt "),
        "system calls arrive as hlt exits: {explain:#?}"
    );
}
