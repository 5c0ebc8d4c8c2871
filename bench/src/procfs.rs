//! Memory of a process tree, read from /proc.
//!
//! PSS (proportional set size) charges each shared page to its sharers in equal parts, so
//! summing it over a launcher and its helpers does not count a shared library once per process
//! the way RSS would.

use std::fs;

/// The `Pss:` value, in KiB, of an `smaps_rollup` text. The `Pss_Anon:`/`Pss_File:`/... lines
/// are breakdowns of it and are not added.
pub fn parse_pss_kib(smaps_rollup: &str) -> Option<u64> {
    smaps_rollup.lines().find_map(|line| {
        let value = line.strip_prefix("Pss:")?;
        value.trim().strip_suffix("kB")?.trim().parse().ok()
    })
}

/// MemTotal − MemAvailable, in KiB, from a `/proc/meminfo` text: the memory the host cannot
/// hand out without reclaiming or swapping, which is what running instances take from it.
pub fn parse_host_used_kib(meminfo: &str) -> Option<i64> {
    Some(parse_meminfo_kib(meminfo, "MemTotal")? - parse_meminfo_kib(meminfo, "MemAvailable")?)
}

/// The field `name` (e.g. `Slab`), in KiB, of a `/proc/meminfo` text.
pub fn parse_meminfo_kib(meminfo: &str, name: &str) -> Option<i64> {
    meminfo.lines().find_map(|line| {
        let value = line.strip_prefix(name)?.strip_prefix(':')?;
        value.trim().strip_suffix("kB")?.trim().parse::<i64>().ok()
    })
}

/// The parent pid from a `/proc/<pid>/stat` text. The command name (field 2) may contain
/// spaces and parentheses, so fields are counted after its last `)`.
pub fn parse_stat_ppid(stat: &str) -> Option<u32> {
    let (_, after_comm) = stat.rsplit_once(')')?;
    // After the name come: state, ppid, ...
    after_comm.split_whitespace().nth(1)?.parse().ok()
}

/// `root` and every live process below it. Uses the kernel's per-thread `children` lists
/// (CONFIG_PROC_CHILDREN), which cost a few reads per process in the tree, and falls back to
/// [`process_tree_by_parent_links`], which reads every process on the host, where they are
/// missing.
pub fn process_tree(root: u32) -> Vec<u32> {
    if children(root).is_none() {
        return process_tree_by_parent_links(root);
    }
    breadth_first(root, |pid| children(pid).unwrap_or_default())
}

/// `root` and every live process below it, from one pass over every /proc/<pid>/stat.
/// Processes that vanish during the pass are skipped: they have nothing left to measure.
pub fn process_tree_by_parent_links(root: u32) -> Vec<u32> {
    let parents: Vec<(u32, u32)> = fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            let stat = fs::read_to_string(entry.path().join("stat")).ok()?;
            Some((pid, parse_stat_ppid(&stat)?))
        })
        .collect();
    descendants_of(root, &parents)
}

/// `root` followed by its descendants, given `(pid, ppid)` pairs.
pub fn descendants_of(root: u32, parents: &[(u32, u32)]) -> Vec<u32> {
    breadth_first(root, |parent| {
        parents
            .iter()
            .filter(|&&(pid, ppid)| ppid == parent && pid != root)
            .map(|&(pid, _)| pid)
            .collect()
    })
}

/// The children of every thread of `pid`; `None` when the kernel has no `children` files or
/// the process is gone.
fn children(pid: u32) -> Option<Vec<u32>> {
    let mut found = Vec::new();
    for task in fs::read_dir(format!("/proc/{pid}/task")).ok()?.flatten() {
        let list = fs::read_to_string(task.path().join("children")).ok()?;
        found.extend(
            list.split_whitespace()
                .filter_map(|p| p.parse::<u32>().ok()),
        );
    }
    Some(found)
}

fn breadth_first(root: u32, mut children: impl FnMut(u32) -> Vec<u32>) -> Vec<u32> {
    let mut tree = vec![root];
    let mut next = 0;
    while let Some(&parent) = tree.get(next) {
        tree.extend(children(parent));
        next += 1;
    }
    tree
}

/// The summed PSS of `root` and its descendants, in KiB; `None` when `root` itself can no
/// longer be read (it has exited: a zombie has no memory map left).
pub fn tree_pss_kib(root: u32) -> Option<u64> {
    let read = |pid: u32| {
        fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))
            .ok()
            .as_deref()
            .and_then(parse_pss_kib)
    };
    let root_pss = read(root)?;
    let others: u64 = process_tree(root)
        .into_iter()
        .skip(1)
        .filter_map(read)
        .sum();
    Some(root_pss + others)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Verbatim `smaps_rollup` of a small process (kernel 6.x).
    const SMAPS_ROLLUP: &str = "\
55d0c0a4e000-7ffd5a3f9000 ---p 00000000 00:00 0                          [rollup]
Rss:                1536 kB
Pss:                 391 kB
Pss_Dirty:           108 kB
Pss_Anon:            104 kB
Pss_File:            287 kB
Pss_Shmem:             0 kB
Shared_Clean:       1232 kB
Shared_Dirty:          0 kB
Private_Clean:       196 kB
Private_Dirty:       108 kB
Referenced:         1536 kB
Anonymous:           108 kB
";

    #[test]
    fn pss_is_the_total_not_a_breakdown() {
        assert_eq!(parse_pss_kib(SMAPS_ROLLUP), Some(391));
        assert_eq!(parse_pss_kib("Pss_Anon: 4 kB\n"), None);
        assert_eq!(parse_pss_kib(""), None);
    }

    #[test]
    fn host_used_is_total_minus_available() {
        let meminfo =
            "MemTotal:       24684000 kB\nMemFree:        1000 kB\nMemAvailable:   24000000 kB\n";
        assert_eq!(parse_host_used_kib(meminfo), Some(684_000));
        assert_eq!(parse_host_used_kib("MemTotal: 5 kB\n"), None);
    }

    #[test]
    fn ppid_survives_odd_command_names() {
        let stat = "4242 (a) b (c) S 17 4242 4242 0 -1 4194560 96 0 0 0 0 0 0 0 20 0 1 0";
        assert_eq!(parse_stat_ppid(stat), Some(17));
        assert_eq!(parse_stat_ppid("garbage"), None);
    }

    #[test]
    fn descendants_are_found_across_generations() {
        let parents = [(1, 0), (10, 1), (11, 10), (12, 11), (13, 1), (14, 10)];
        assert_eq!(descendants_of(10, &parents), [10, 11, 14, 12]);
        assert_eq!(descendants_of(99, &parents), [99]);
    }

    #[test]
    fn both_walks_find_a_child() {
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .unwrap();
        let me = std::process::id();
        let by_links = process_tree_by_parent_links(me);
        let tree = process_tree(me);
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(by_links.contains(&child.id()), "{by_links:?}");
        assert!(tree.contains(&child.id()), "{tree:?}");
        assert_eq!(tree[0], me);
    }

    #[test]
    fn this_process_has_a_pss() {
        let pss = tree_pss_kib(std::process::id()).unwrap();
        assert!(pss > 0);
        assert!(process_tree(std::process::id()).starts_with(&[std::process::id()]));
    }
}
