//! Linux micro-VMs side by side in the sandbox: `vm-linux` (isolab's monitor) and
//! `qemu-microvm` (QEMU's microvm machine with KVM) boot the same kernel and initramfs in
//! one sandbox boot, through `isolab bench`; a single run each keeps it short.

use std::time::Duration;

use isolab_bench::sandbox::peers::{self, PeersSpec};

#[path = "common/sandbox.rs"]
mod sandbox_common;
use sandbox_common::{bin_dir, chain, sandbox};

#[test]
fn both_monitors_boot_the_workload_and_report_their_memory() {
    let out = tempfile::tempdir().unwrap();
    let spec = PeersSpec {
        workload: vec!["ready".to_owned()],
        runs: 1,
        warmup: 0,
        timeout: Duration::from_secs(240),
    };
    let outcome = peers::run(
        sandbox(),
        &bin_dir(),
        &spec,
        out.path(),
        &mut std::io::sink(),
    )
    .unwrap_or_else(|e| panic!("the peers run failed: {}", chain(&e)));
    assert_eq!(outcome.results.len(), 1, "{:?}", outcome.files);
    assert!(outcome.files[0].starts_with(out.path()));
    let set = &outcome.results[0];
    assert_eq!(set.host.kvm_kind, "svm", "standard KVM in the sandbox");
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
    }
}
