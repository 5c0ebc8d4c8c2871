//! `isolab vm run --guest mini`: every workload mode in a real VM on this host's /dev/kvm,
//! compared with the same binary run natively.

use std::path::PathBuf;
use std::process::Command as StdCommand;

use assert_cmd::Command;

fn workload() -> PathBuf {
    let path = assert_cmd::cargo::cargo_bin("isolab-workload");
    assert!(
        path.exists(),
        "{} is missing: run `cargo build -p isolab-workload`",
        path.display()
    );
    path
}

fn vm(args: &[&str]) -> Command {
    let mut cmd = Command::cargo_bin("isolab").unwrap();
    cmd.args(["vm", "run", "--guest", "mini", "--timeout", "60"]);
    cmd.arg("--workload-bin").arg(workload());
    cmd.args(args);
    cmd
}

fn last_json(stdout: &[u8]) -> serde_json::Value {
    let text = String::from_utf8_lossy(stdout);
    let line = text.lines().last().expect("some output");
    serde_json::from_str(line).unwrap_or_else(|e| panic!("{line:?}: {e}"))
}

fn run_json(args: &[&str]) -> serde_json::Value {
    let out = vm(args).output().unwrap();
    assert!(
        out.status.success(),
        "{:?}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    last_json(&out.stdout)
}

#[test]
fn ready_prints_the_marker() {
    let out = vm(&["--workload", "ready"]).output().unwrap();
    assert!(out.status.success());
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(stdout.starts_with("ISOLAB-READY\n"), "{stdout}");
    assert_eq!(last_json(stdout.as_bytes())["mode"], "ready");
}

#[test]
fn cpu_digest_is_identical_to_native() {
    let guest = run_json(&["--workload", "cpu", "--iters", "2000"]);
    let native = StdCommand::new(workload())
        .args(["cpu", "--iters", "2000"])
        .output()
        .unwrap();
    assert_eq!(guest["digest"], last_json(&native.stdout)["digest"]);
}

#[test]
fn mem_syscall_and_io_report_json() {
    assert_eq!(
        run_json(&["--workload", "mem", "--mib", "8"])["pages"],
        2048
    );
    assert_eq!(run_json(&["--workload", "syscall", "--n", "100"])["n"], 100);
    let io = run_json(&["--workload", "io", "--mib", "2"]);
    assert_eq!(io["mode"], "io");
    assert!(io["write_ns"].as_u64().unwrap() > 0);
}

#[test]
fn probe_sees_the_guest_view() {
    let probe = run_json(&["--workload", "probe"]);
    assert_eq!(probe["pid"], 1);
    assert_eq!(probe["hostname"], "isolab-mini");
}

#[test]
fn exit_status_passes_through() {
    // A usage error in the workload exits 2, from inside the VM.
    vm(&["--workload", "no-such-mode"]).assert().code(2);
}

#[test]
fn explain_lists_enosys_calls_and_phases() {
    let out = vm(&["--explain", "--workload", "ready"]).output().unwrap();
    assert!(out.status.success());
    let stderr = String::from_utf8(out.stderr).unwrap();
    for needle in [
        "KVM_CREATE_VM",
        "first VM exit",
        "ISOLAB-READY written",
        "answered ENOSYS",
        "rseq",
        "hlt",
    ] {
        assert!(stderr.contains(needle), "{needle} missing in:\n{stderr}");
    }
}

#[test]
fn garbage_workload_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let garbage = dir.path().join("garbage");
    std::fs::write(&garbage, [0x5au8; 4096]).unwrap();
    let out = Command::cargo_bin("isolab")
        .unwrap()
        .args(["vm", "run", "--workload-bin"])
        .arg(&garbage)
        .args(["--workload", "ready"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(126));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.contains("not an ELF executable") && stderr.lines().count() == 1,
        "{stderr}"
    );
    Command::cargo_bin("isolab")
        .unwrap()
        .args([
            "vm",
            "run",
            "--workload-bin",
            "/nonexistent/isolab-workload",
            "--workload",
            "ready",
        ])
        .assert()
        .code(127);
}

#[test]
fn timeout_on_idle_ends_with_124() {
    let started = std::time::Instant::now();
    let mut cmd = Command::cargo_bin("isolab").unwrap();
    cmd.args(["vm", "run", "--timeout", "0.5", "--workload-bin"])
        .arg(workload())
        .args(["--workload", "idle"]);
    let out = cmd.output().unwrap();
    assert_eq!(out.status.code(), Some(124));
    assert!(String::from_utf8_lossy(&out.stdout).contains("ISOLAB-READY"));
    assert!(started.elapsed().as_secs() < 10);
}

/// Starts `isolab vm run --workload MODE ARGS` with piped output.
fn spawn_vm(workload_args: &[&str]) -> std::process::Child {
    StdCommand::new(assert_cmd::cargo::cargo_bin("isolab"))
        .args([
            "vm",
            "run",
            "--guest",
            "mini",
            "--timeout",
            "60",
            "--workload-bin",
        ])
        .arg(workload())
        .arg("--workload")
        .args(workload_args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

fn signal_and_wait(child: std::process::Child, signal: i32) -> std::process::Output {
    let started = std::time::Instant::now();
    // SAFETY: kill(2) on our own unreaped child.
    assert_eq!(unsafe { libc::kill(child.id() as libc::pid_t, signal) }, 0);
    let out = child.wait_with_output().unwrap();
    assert!(started.elapsed().as_secs() < 5, "{out:?}");
    out
}

#[test]
fn sigterm_and_sigint_reach_the_idle_workloads_own_handler() {
    use std::io::BufRead;
    for signal in [libc::SIGTERM, libc::SIGINT] {
        let mut child = spawn_vm(&["idle"]);
        let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        assert_eq!(line, "ISOLAB-READY\n");
        let out = signal_and_wait(child, signal);
        // Exactly as natively: the handler runs, sigsuspend returns, idle reports and exits 0.
        assert_eq!(out.status.code(), Some(0), "{out:?}");
        line.clear();
        stdout.read_line(&mut line).unwrap();
        assert_eq!(line, "{\"mode\":\"idle\"}\n");
    }
}

#[test]
fn a_busy_guest_is_stopped_by_sigterm_with_143() {
    let child = spawn_vm(&["cpu", "--iters", "1000000000"]);
    // Give it time to boot: a signal before the handlers are installed kills it outright.
    std::thread::sleep(std::time::Duration::from_millis(300));
    let out = signal_and_wait(child, libc::SIGTERM);
    assert_eq!(out.status.code(), Some(143), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("VM stopped on signal 15"), "{stderr}");
}

fn read_json(path: &std::path::Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn only_json_in(dir: &std::path::Path) -> serde_json::Value {
    let files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    read_json(&files[0])
}

#[test]
fn bench_measures_vm_mini_beside_native_with_the_same_bytes() {
    let out_dir = tempfile::tempdir().unwrap();
    let out = Command::cargo_bin("isolab")
        .unwrap()
        .args(["bench", "--target", "native,vm-mini", "--workload", "ready"])
        .args(["--runs", "3", "--warmup", "0", "--workload-bin"])
        .arg(workload())
        .arg("--out")
        .arg(out_dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let set = only_json_in(out_dir.path());
    let targets = set["targets"].as_array().unwrap();
    assert_eq!(targets.len(), 2);
    for target in targets {
        let runs = target["runs"].as_array().unwrap();
        assert_eq!(runs.len(), 3, "{}", target["name"]);
        assert!(runs.iter().all(|r| r["ready_ns"].as_u64().unwrap() > 0));
    }
    assert_eq!(targets[1]["name"], "vm-mini");
    assert!(
        set["workload"]["path"]
            .as_str()
            .unwrap()
            .ends_with("isolab-workload")
    );
}

/// Processes whose command line mentions `needle` (a temporary directory's path).
fn processes_mentioning(needle: &str) -> Vec<String> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| {
            let entry = e.ok()?;
            entry.file_name().to_str()?.parse::<u32>().ok()?;
            let cmdline = std::fs::read(entry.path().join("cmdline")).ok()?;
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            cmdline.contains(needle).then_some(cmdline)
        })
        .collect()
}

#[test]
fn density_starts_and_stops_five_idle_instances_per_target_leaving_nothing() {
    // A private copy of the workload: any process left behind would name its path.
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("isolab-workload");
    std::fs::copy(workload(), &copy).unwrap();
    let out_dir = dir.path().join("results");
    let out = Command::cargo_bin("isolab")
        .unwrap()
        .args(["bench", "--target", "native,vm-mini", "--workload", "idle"])
        .args(["--count", "5", "--timeout", "30s", "--workload-bin"])
        .arg(&copy)
        .arg("--out")
        .arg(&out_dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("vm-mini: 5 running"), "{stdout}");
    let set = only_json_in(&out_dir);
    assert_eq!(set["kind"], "density");
    for target in set["targets"].as_array().unwrap() {
        assert_eq!(target["runs"].as_array().unwrap().len(), 5);
        let density = &target["density"];
        assert_eq!(density["stopped_clean"], true);
        assert_eq!(density["steps"][0]["running"], 5);
        assert!(density["steps"][0]["pss_sum_kib"].as_u64().unwrap() > 0);
    }
    let left = processes_mentioning(&dir.path().to_string_lossy());
    assert!(left.is_empty(), "left behind: {left:?}");
}
