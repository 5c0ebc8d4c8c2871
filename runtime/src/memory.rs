//! Memory a long-waiting isolab process can give back: the supervisor of a detached
//! container and the monitor of a micro-VM whose guest is blocked both spend their lives
//! waiting, and most of what a static binary has resident is pages the wait never touches.

/// Gives back what the kernel can restore on demand: free heap, and the pages of the
/// binary's read-only mappings. Those are file pages the kernel maps in large folios (a
/// static binary of a few MiB is mostly resident after start-up); dropped, the few the wait
/// needs fault back in, and the rest only once the container has ended. Mappings holding
/// anonymous pages (the relocated, then write-protected RELRO data) are kept: dropping
/// them would bring back the unrelocated bytes from the file.
pub fn shed() {
    // SAFETY: malloc_trim only returns free heap memory to the kernel.
    unsafe { libc::malloc_trim(0) };
    let Ok(smaps) = std::fs::read_to_string("/proc/self/smaps") else {
        return;
    };
    let mut droppable = Vec::new();
    let mut current: Option<(usize, usize)> = None;
    for line in smaps.lines() {
        if let Some(anon) = line.strip_prefix("Anonymous:") {
            if let (Some(range), Some("0")) = (current.take(), anon.split_whitespace().next()) {
                droppable.push(range);
            }
            continue;
        }
        let mut fields = line.split_whitespace();
        let (Some(range), Some(perms)) = (fields.next(), fields.next()) else {
            continue;
        };
        let Some((start, end)) = range.split_once('-') else {
            continue;
        };
        let path = fields.nth(3).unwrap_or("");
        let read_only = perms.len() == 4 && perms.as_bytes()[1] == b'-';
        current = match (
            usize::from_str_radix(start, 16),
            usize::from_str_radix(end, 16),
        ) {
            (Ok(start), Ok(end)) if read_only && path.starts_with('/') => Some((start, end)),
            _ => None,
        };
    }
    drop(smaps);
    for (start, end) in droppable {
        // SAFETY: the range is a whole read-only, file-backed mapping of this process with
        // no anonymous pages; MADV_DONTNEED only unmaps pages that a later access reads
        // back from the file, unchanged.
        unsafe { libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_DONTNEED) };
    }
}
