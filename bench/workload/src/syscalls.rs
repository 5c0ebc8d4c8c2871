//! `syscall --n N`: N raw getppid(2) system calls.

use std::time::Instant;

use crate::json::Object;

pub fn run(n: u64) -> Object {
    let start = Instant::now();
    for _ in 0..n {
        // getppid through syscall(2), so no libc layer could cache the answer. The result
        // goes through black_box so the call is not treated as dead code.
        // SAFETY: getppid takes no arguments, touches no memory and cannot fail.
        let ppid = unsafe { libc::syscall(libc::SYS_getppid) };
        std::hint::black_box(ppid);
    }
    let elapsed_ns = crate::nanos(start.elapsed());
    Object::mode("syscall")
        .with("n", n)
        .with("elapsed_ns", elapsed_ns)
        .with("ns_per_call", elapsed_ns as f64 / n as f64)
}
