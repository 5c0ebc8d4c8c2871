//! `isolab vm run --profile`: where a Linux guest's time goes, by sampling. A thread kicks
//! vCPU 0 out of `KVM_RUN` every [`INTERVAL`]; the vCPU loop records the guest's RIP at
//! each such exit, and after the run each address is named from the kernel ELF's symbol
//! table. The samples are taken on the wall clock, so a function's share of them is its
//! share of the guest's time, whatever made that time long (under emulation, an
//! instruction the emulator runs slowly shows as the function that runs it).

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use goblin::elf::Elf;
use goblin::elf::section_header::SHF_EXECINSTR;

use crate::vm::Kicker;

/// How often vCPU 0 is sampled. Each sample is one exit to the monitor (≈ 0.1 ms of the
/// guest's time in the emulated sandbox, far less on hardware).
pub const INTERVAL: Duration = Duration::from_millis(1);
/// The first address of the kernel half of x86-64's address space; below it the guest ran
/// its user space.
const KERNEL_HALF: u64 = 0xffff_8000_0000_0000;
pub const USER_SPACE: &str = "(user space)";
pub const UNNAMED: &str = "(no symbol)";

/// Kicks a vCPU at every [`INTERVAL`] until dropped.
#[derive(Debug)]
pub struct Sampler {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Sampler {
    pub fn start(vcpu: Kicker) -> std::io::Result<Sampler> {
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("isolab-profile".into())
            .stack_size(64 << 10)
            .spawn(move || {
                while !stopped.load(Ordering::Relaxed) {
                    std::thread::sleep(INTERVAL);
                    vcpu.kick();
                }
            })?;
        Ok(Sampler {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The samples by function, most sampled first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Profile {
    pub samples: u64,
    pub by_function: Vec<(String, u64)>,
    /// Whether the kernel file had symbols to name the addresses with (a bzImage has none).
    pub symbols: bool,
}

/// An ELF file's functions as `(start address, name)`, sorted by address: the symbols of
/// its executable sections. Empty for a file without an ELF symbol table (a bzImage).
pub fn kernel_functions(kernel: &Path) -> Vec<(u64, String)> {
    let Ok(bytes) = std::fs::read(kernel) else {
        return Vec::new();
    };
    let Ok(elf) = Elf::parse(&bytes) else {
        return Vec::new();
    };
    let executable = |index: usize| {
        elf.section_headers
            .get(index)
            .is_some_and(|s| s.sh_flags & u64::from(SHF_EXECINSTR) != 0)
    };
    let mut functions: Vec<(u64, String)> = elf
        .syms
        .iter()
        .filter(|sym| sym.st_value != 0 && executable(sym.st_shndx))
        .filter_map(|sym| {
            let name = elf.strtab.get_at(sym.st_name)?;
            (!name.is_empty()).then(|| (sym.st_value, name.to_owned()))
        })
        .collect();
    functions.sort();
    functions
}

/// Names each sampled address with the function it falls in and counts them.
pub fn profile(rips: &[u64], functions: &[(u64, String)]) -> Profile {
    let mut counts: HashMap<&str, u64> = HashMap::new();
    for &rip in rips {
        let name = if rip < KERNEL_HALF {
            USER_SPACE
        } else {
            match functions.partition_point(|(start, _)| *start <= rip) {
                0 => UNNAMED,
                after => functions[after - 1].1.as_str(),
            }
        };
        *counts.entry(name).or_default() += 1;
    }
    let mut by_function: Vec<(String, u64)> = counts
        .into_iter()
        .map(|(name, count)| (name.to_owned(), count))
        .collect();
    by_function.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    Profile {
        samples: rips.len() as u64,
        by_function,
        symbols: !functions.is_empty(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_fall_in_the_function_below_them() {
        let functions = vec![
            (0xffff_ffff_8100_0000, "startup_64".to_owned()),
            (0xffff_ffff_8100_1000, "free_reserved_area".to_owned()),
            (0xffff_ffff_8100_2000, "clear_bss".to_owned()),
        ];
        let rips = [
            0xffff_ffff_8100_1000,
            0xffff_ffff_8100_1fff,
            0xffff_ffff_8100_1234,
            0xffff_ffff_8100_2010,
            0x40_1000,
            0xffff_ffff_80ff_ffff,
        ];
        let profile = profile(&rips, &functions);
        assert_eq!(profile.samples, 6);
        assert!(profile.symbols);
        let expected = [
            ("free_reserved_area", 3),
            (UNNAMED, 1),
            (USER_SPACE, 1),
            ("clear_bss", 1),
        ];
        let expected: Vec<(String, u64)> = expected
            .iter()
            .map(|(n, c)| ((*n).to_owned(), *c))
            .collect();
        assert_eq!(profile.by_function, expected);
        assert!(!super::profile(&rips, &[]).symbols);
    }

    #[test]
    fn an_elf_files_functions_are_read_and_other_files_have_none() {
        let exe = std::env::current_exe().unwrap();
        let functions = kernel_functions(&exe);
        assert!(functions.windows(2).all(|w| w[0].0 <= w[1].0), "sorted");
        assert!(
            functions
                .iter()
                .any(|(_, name)| name.contains("an_elf_files_functions_are_read")),
            "{} functions, none of them this test",
            functions.len()
        );
        let text = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(text.path(), "not an ELF").unwrap();
        assert!(kernel_functions(text.path()).is_empty());
    }
}
