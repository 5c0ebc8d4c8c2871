//! Linux micro-VMs side by side in the sandbox: `vm-linux` (isolab's monitor) and
//! `qemu-microvm` (QEMU's microvm machine with KVM) boot the same kernel and initramfs in
//! one sandbox boot, through `isolab bench`; a single run each keeps it short. Then their
//! density: two idle instances of each, started and stopped by the density harness.

use std::time::Duration;

use isolab_bench::sandbox::peers::{self, PeersSpec};

#[path = "common/sandbox.rs"]
mod sandbox_common;
use sandbox_common::{bin_dir, chain, sandbox};

/// One run of each target (`count`: a density run of that many instances) in one sandbox
/// boot, writing into `out`; its one result set was measured on standard KVM.
fn run_peers(
    workload: Vec<String>,
    count: Option<u32>,
    out: &std::path::Path,
) -> peers::PeersOutcome {
    let spec = PeersSpec {
        workload,
        runs: 1,
        warmup: 0,
        count,
        timeout: Duration::from_secs(240),
    };
    let outcome = peers::run(sandbox(), &bin_dir(), &spec, out, &mut std::io::sink())
        .unwrap_or_else(|e| panic!("the peers run failed: {}", chain(&e)));
    assert_eq!(outcome.results.len(), 1, "{:?}", outcome.files);
    assert_eq!(
        outcome.results[0].host.kvm_kind, "svm",
        "standard KVM in the sandbox"
    );
    outcome
}

#[test]
fn both_monitors_boot_the_workload_and_report_their_memory() {
    let out = tempfile::tempdir().unwrap();
    let outcome = run_peers(vec!["ready".to_owned()], None, out.path());
    assert!(outcome.files[0].starts_with(out.path()));
    let set = &outcome.results[0];
    let names: Vec<&str> = set.targets.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, peers::TARGETS);
    for target in &set.targets {
        let run = &target.runs[0];
        assert!(run.ready_ns.is_some(), "{}: {run:?}", target.name);
        let vm = &run.figures["vm"];
        assert_eq!(vm["outcome"], "Exited(0)", "{}: {vm}", target.name);
        // Each monitor's own memory, apart from the guest RAM it backs.
        let pss = vm["vmm_pss_bytes"].as_u64().unwrap_or(0);
        let touched = vm["guest_ram_touched_bytes"].as_u64().unwrap_or(0);
        assert!(pss > 0 && touched > 0, "{}: {vm}", target.name);
        assert!(touched <= 128 << 20, "{}: {vm}", target.name);
        // isolab's own monitor splits its time to ready at its first KVM_RUN; QEMU's
        // insides are not seen.
        match target.name.as_str() {
            "vm-linux" => {
                let phases = run.phases.as_ref().expect("vm-linux records phases");
                let names: Vec<&str> = phases.iter().map(|p| p.name.as_str()).collect();
                assert_eq!(names, ["launch", "monitor", "ready"], "{phases:?}");
                let sum: u64 = phases.iter().map(|p| p.ns).sum();
                assert_eq!(Some(sum), run.ready_ns, "{phases:?}");
            }
            _ => assert!(run.phases.is_none(), "{}: {:?}", target.name, run.phases),
        }
    }
}

#[test]
fn two_idle_linux_vms_of_each_monitor_run_side_by_side_and_stop_clean() {
    let out = tempfile::tempdir().unwrap();
    let outcome = run_peers(Vec::new(), Some(2), out.path());
    let set = &outcome.results[0];
    assert_eq!(set.workload.mode, "idle");
    let names: Vec<&str> = set.targets.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, peers::TARGETS);
    for target in &set.targets {
        let density = target.density.as_ref().expect("a density result");
        let name = &target.name;
        assert_eq!(density.reached(), 2, "{name}: {density:?}");
        assert!(density.stopped_clean, "{name}: {density:?}");
        assert_eq!(target.runs.len(), 2, "{name}");
        for run in &target.runs {
            assert!(run.ready_ns.is_some(), "{name}: {run:?}");
            // The monitor ends the VM on SIGTERM and says so (128+15).
            assert_eq!(
                run.exit_status,
                isolab_reports::schema::ExitStatus::Code(143),
                "{name}: {run:?}"
            );
        }
        let last = density.steps.last().unwrap();
        let guest = last.instance_pss_kib.unwrap_or(0);
        let runtime = last.runtime_pss_kib.unwrap_or(0);
        // Each instance's guest RAM is counted apart from its monitor's own memory; the
        // guest touches tens of MiB of its 128 MiB booting.
        assert!(guest > 2 * 16 * 1024, "{name}: {last:?}");
        assert!(guest <= 2 * 128 * 1024, "{name}: {last:?}");
        assert!(runtime > 0, "{name}: {last:?}");
        assert_eq!(last.pss_sum_kib, guest + runtime, "{name}: {last:?}");
        // The host (the sandbox) sees them: its used memory grew by about their PSS.
        assert!(last.host_used_kib > guest as i64 / 2, "{name}: {last:?}");
    }
}
