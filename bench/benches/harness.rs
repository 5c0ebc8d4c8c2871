//! The harness's own work during a run set: the /proc parsing behind every PSS sample (which
//! runs beside the workload and competes with it for a CPU) and the tree walk around it.

use std::fs;
use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use isolab_bench::procfs::{
    parse_pss_kib, parse_stat_ppid, process_tree, process_tree_by_parent_links, tree_pss_kib,
};

fn bench_procfs(c: &mut Criterion) {
    let smaps_rollup = fs::read_to_string("/proc/self/smaps_rollup").expect("reading smaps_rollup");
    let stat = fs::read_to_string("/proc/self/stat").expect("reading /proc/self/stat");
    let me = std::process::id();
    c.bench_function("parse smaps_rollup Pss", |b| {
        b.iter(|| parse_pss_kib(black_box(&smaps_rollup)))
    });
    c.bench_function("parse stat ppid", |b| {
        b.iter(|| parse_stat_ppid(black_box(&stat)))
    });
    c.bench_function("process tree from children lists", |b| {
        b.iter(|| process_tree(black_box(me)))
    });
    c.bench_function("process tree from every /proc/<pid>/stat", |b| {
        b.iter(|| process_tree_by_parent_links(black_box(me)))
    });
    c.bench_function("sample the PSS of a process tree", |b| {
        b.iter(|| tree_pss_kib(black_box(me)))
    });
}

criterion_group!(benches, bench_procfs);
criterion_main!(benches);
