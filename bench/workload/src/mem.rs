//! `mem --mib N`: fault in N MiB of fresh anonymous memory, one write per 4096-byte page.

use std::time::Instant;

use crate::json::Object;

/// The touch stride: the x86-64 base page size. `pages` is always `mib * 256`.
pub const PAGE: usize = 4096;

pub fn run(mib: u64) -> Result<Object, String> {
    check_physical_memory(mib)?;
    let len = usize::try_from(mib << 20).map_err(|_| format!("{mib} MiB does not fit"))?;
    let pages = len / PAGE;

    // SAFETY: a fresh private anonymous mapping with no address hint; it aliases nothing
    // and is unmapped below. The arguments are plain integers.
    let base = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if base == libc::MAP_FAILED {
        return Err(format!(
            "mmap of {mib} MiB failed: {}",
            std::io::Error::last_os_error()
        ));
    }
    // Measure one fault per 4 KiB page everywhere: with transparent huge pages the first
    // touch of a 2 MiB region would map all of it, and whether THP is on differs between
    // the host, a container (same kernel) and a guest. Best effort: a kernel without THP
    // (or without madvise) simply keeps 4 KiB pages.
    // SAFETY: advises on exactly the mapping created above; MADV_NOHUGEPAGE changes no
    // memory contents.
    let _ = unsafe { libc::madvise(base, len, libc::MADV_NOHUGEPAGE) };

    let bytes = base.cast::<u8>();
    let start = Instant::now();
    for page in 0..pages {
        // SAFETY: `page * PAGE < len`, so the byte is inside the read-write mapping, which
        // nothing else references. A volatile write keeps the compiler from eliding it.
        unsafe { bytes.add(page * PAGE).write_volatile(1) };
    }
    let elapsed_ns = crate::nanos(start.elapsed());

    // SAFETY: unmaps exactly the mapping created above; `bytes` is not used afterwards.
    unsafe { libc::munmap(base, len) };

    Ok(Object::mode("mem")
        .with("mib", mib)
        .with("pages", pages)
        .with("elapsed_ns", elapsed_ns)
        .with("ns_per_page", elapsed_ns as f64 / pages as f64))
}

/// Refuses sizes beyond the machine's RAM: touching them would only end in the OOM killer
/// (or endless swapping). One sysinfo(2) call; skipped if it fails.
fn check_physical_memory(mib: u64) -> Result<(), String> {
    // SAFETY: `libc::sysinfo` is plain old data; all-zero is a valid value.
    let mut info: libc::sysinfo = unsafe { std::mem::zeroed() };
    // SAFETY: `info` is a valid, writable `struct sysinfo`.
    if unsafe { libc::sysinfo(&mut info) } != 0 {
        return Ok(());
    }
    let total_mib = (u128::from(info.totalram) * u128::from(info.mem_unit.max(1))) >> 20;
    if u128::from(mib) > total_mib {
        return Err(format!(
            "{mib} MiB requested but this system has only {total_mib} MiB of RAM"
        ));
    }
    Ok(())
}
