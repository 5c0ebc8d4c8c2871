//! Docker's default seccomp profile (moby profiles/seccomp/default.json) for x86-64 and
//! Docker's default capability set, compiled to BPF with seccompiler before the clone.
//!
//! The profile is an allowlist; anything else fails with EPERM. Of its conditional parts this
//! applies what holds for x86-64, kernel >= 4.8 and the default capabilities: arch_prctl and
//! modify_ldt, ptrace and process_vm_*, chroot (CAP_SYS_CHROOT), personality with the five
//! values Docker allows, socket except AF_VSOCK, clone without namespace flags (no
//! CAP_SYS_ADMIN), and clone3 answered with ENOSYS so that libc falls back to clone, whose
//! flags a filter can see. Names in the profile that x86-64 does not have (the `*32`,
//! `*64` and `*_time64` variants of 32-bit ABIs, socketcall, ...) have no number here.
//!
//! seccompiler gives every rule one action, so the ENOSYS for clone3 is a second filter
//! installed after the allowlist: for the same action class (ERRNO) the most recently
//! installed filter's value wins.
//!
//! `--security-opt seccomp=FILE` adds the filters of a seccompiler JSON file after these
//! (or alone, with `seccomp=unconfined`): the kernel runs every installed filter and the
//! strictest action wins, so a profile can only take calls away from the default.

use std::collections::BTreeMap;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};

#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    #[error(transparent)]
    Backend(#[from] seccompiler::BackendError),
    #[error("not a valid seccompiler JSON profile: {0}")]
    Profile(#[from] seccompiler::Error),
}

/// Namespace-creating clone flags (Docker's mask 2114060288).
const CLONE_NAMESPACE_FLAGS: u64 = (libc::CLONE_NEWNS
    | libc::CLONE_NEWUTS
    | libc::CLONE_NEWIPC
    | libc::CLONE_NEWUSER
    | libc::CLONE_NEWPID
    | libc::CLONE_NEWNET
    | libc::CLONE_NEWCGROUP) as u64;

const AF_VSOCK: u64 = 40;

/// personality(2) values Docker allows: PER_LINUX, PER_LINUX32, UNAME26, UNAME26|PER_LINUX32,
/// and 0xffffffff (query).
const PERSONALITIES: [u64; 5] = [0x0, 0x8, 0x20000, 0x20008, 0xffff_ffff];

/// io_pgetevents on x86-64; the libc crate has no constant for it.
const SYS_IO_PGETEVENTS: libc::c_long = 333;

macro_rules! syscalls {
    ($($name:ident),* ; $($number:expr),* $(,)?) => {
        [$(libc::$name,)* $($number),*]
    };
}

/// The unconditional allowlist, in the profile's order.
const ALLOWED: &[libc::c_long] = &syscalls![
    SYS_accept, SYS_accept4, SYS_access, SYS_adjtimex, SYS_alarm, SYS_bind, SYS_brk,
    SYS_capget, SYS_capset, SYS_chdir, SYS_chmod, SYS_chown, SYS_clock_adjtime,
    SYS_clock_getres, SYS_clock_gettime, SYS_clock_nanosleep, SYS_close, SYS_close_range,
    SYS_connect, SYS_copy_file_range, SYS_creat, SYS_dup, SYS_dup2, SYS_dup3,
    SYS_epoll_create, SYS_epoll_create1, SYS_epoll_ctl, SYS_epoll_ctl_old, SYS_epoll_pwait,
    SYS_epoll_pwait2, SYS_epoll_wait, SYS_epoll_wait_old, SYS_eventfd, SYS_eventfd2,
    SYS_execve, SYS_execveat, SYS_exit, SYS_exit_group, SYS_faccessat, SYS_faccessat2,
    SYS_fadvise64, SYS_fallocate, SYS_fanotify_mark, SYS_fchdir, SYS_fchmod, SYS_fchmodat,
    SYS_fchown, SYS_fchownat, SYS_fcntl, SYS_fdatasync, SYS_fgetxattr, SYS_flistxattr,
    SYS_flock, SYS_fork, SYS_fremovexattr, SYS_fsetxattr, SYS_fstat, SYS_fstatfs, SYS_fsync,
    SYS_ftruncate, SYS_futex, SYS_futex_waitv, SYS_futimesat, SYS_getcpu, SYS_getcwd,
    SYS_getdents, SYS_getdents64, SYS_getegid, SYS_geteuid, SYS_getgid, SYS_getgroups,
    SYS_getitimer, SYS_getpeername, SYS_getpgid, SYS_getpgrp, SYS_getpid, SYS_getppid,
    SYS_getpriority, SYS_getrandom, SYS_getresgid, SYS_getresuid, SYS_getrlimit,
    SYS_get_robust_list, SYS_getrusage, SYS_getsid, SYS_getsockname, SYS_getsockopt,
    SYS_get_thread_area, SYS_gettid, SYS_gettimeofday, SYS_getuid, SYS_getxattr,
    SYS_inotify_add_watch, SYS_inotify_init, SYS_inotify_init1, SYS_inotify_rm_watch,
    SYS_io_cancel, SYS_ioctl, SYS_io_destroy, SYS_io_getevents,
    SYS_ioprio_get, SYS_ioprio_set, SYS_io_setup, SYS_io_submit, SYS_io_uring_enter,
    SYS_io_uring_register, SYS_io_uring_setup, SYS_kill, SYS_landlock_add_rule,
    SYS_landlock_create_ruleset, SYS_landlock_restrict_self, SYS_lchown, SYS_lgetxattr,
    SYS_link, SYS_linkat, SYS_listen, SYS_listxattr, SYS_llistxattr, SYS_lremovexattr,
    SYS_lseek, SYS_lsetxattr, SYS_lstat, SYS_madvise, SYS_membarrier, SYS_memfd_create,
    SYS_memfd_secret, SYS_mincore, SYS_mkdir, SYS_mkdirat, SYS_mknod, SYS_mknodat, SYS_mlock,
    SYS_mlock2, SYS_mlockall, SYS_mmap, SYS_mprotect, SYS_mq_getsetattr, SYS_mq_notify,
    SYS_mq_open, SYS_mq_timedreceive, SYS_mq_timedsend, SYS_mq_unlink, SYS_mremap,
    SYS_msgctl, SYS_msgget, SYS_msgrcv, SYS_msgsnd, SYS_msync, SYS_munlock, SYS_munlockall,
    SYS_munmap, SYS_name_to_handle_at, SYS_nanosleep, SYS_newfstatat, SYS_open, SYS_openat,
    SYS_openat2, SYS_pause, SYS_pidfd_open, SYS_pidfd_send_signal, SYS_pipe, SYS_pipe2,
    SYS_pkey_alloc, SYS_pkey_free, SYS_pkey_mprotect, SYS_poll, SYS_ppoll, SYS_prctl,
    SYS_pread64, SYS_preadv, SYS_preadv2, SYS_prlimit64, SYS_process_mrelease, SYS_pselect6,
    SYS_pwrite64, SYS_pwritev, SYS_pwritev2, SYS_read, SYS_readahead, SYS_readlink,
    SYS_readlinkat, SYS_readv, SYS_recvfrom, SYS_recvmmsg, SYS_recvmsg, SYS_remap_file_pages,
    SYS_removexattr, SYS_rename, SYS_renameat, SYS_renameat2, SYS_restart_syscall, SYS_rmdir,
    SYS_rseq, SYS_rt_sigaction, SYS_rt_sigpending, SYS_rt_sigprocmask, SYS_rt_sigqueueinfo,
    SYS_rt_sigreturn, SYS_rt_sigsuspend, SYS_rt_sigtimedwait, SYS_rt_tgsigqueueinfo,
    SYS_sched_getaffinity, SYS_sched_getattr, SYS_sched_getparam, SYS_sched_get_priority_max,
    SYS_sched_get_priority_min, SYS_sched_getscheduler, SYS_sched_rr_get_interval,
    SYS_sched_setaffinity, SYS_sched_setattr, SYS_sched_setparam, SYS_sched_setscheduler,
    SYS_sched_yield, SYS_seccomp, SYS_select, SYS_semctl, SYS_semget, SYS_semop,
    SYS_semtimedop, SYS_sendfile, SYS_sendmmsg, SYS_sendmsg, SYS_sendto, SYS_setfsgid,
    SYS_setfsuid, SYS_setgid, SYS_setgroups, SYS_setitimer, SYS_setpgid, SYS_setpriority,
    SYS_setregid, SYS_setresgid, SYS_setresuid, SYS_setreuid, SYS_setrlimit,
    SYS_set_robust_list, SYS_setsid, SYS_setsockopt, SYS_set_thread_area,
    SYS_set_tid_address, SYS_setuid, SYS_setxattr, SYS_shmat, SYS_shmctl, SYS_shmdt,
    SYS_shmget, SYS_shutdown, SYS_sigaltstack, SYS_signalfd, SYS_signalfd4, SYS_socketpair,
    SYS_splice, SYS_stat, SYS_statfs, SYS_statx, SYS_symlink, SYS_symlinkat, SYS_sync,
    SYS_sync_file_range, SYS_syncfs, SYS_sysinfo, SYS_tee, SYS_tgkill, SYS_time,
    SYS_timer_create, SYS_timer_delete, SYS_timer_getoverrun, SYS_timer_gettime,
    SYS_timer_settime, SYS_timerfd_create, SYS_timerfd_gettime, SYS_timerfd_settime,
    SYS_times, SYS_tkill, SYS_truncate, SYS_umask, SYS_uname, SYS_unlink, SYS_unlinkat,
    SYS_utime, SYS_utimensat, SYS_utimes, SYS_vfork, SYS_vmsplice, SYS_wait4, SYS_waitid,
    SYS_write, SYS_writev,
    // minKernel 4.8: ptrace can no longer bypass seccomp.
    SYS_process_vm_readv, SYS_process_vm_writev, SYS_ptrace,
    // arches amd64/x32.
    SYS_arch_prctl, SYS_modify_ldt,
    // caps CAP_SYS_CHROOT, which is in the default set.
    SYS_chroot;
    SYS_IO_PGETEVENTS,
];

/// The filters to install, in order, right before execve.
pub(crate) fn docker_default() -> Result<Vec<BpfProgram>, SeccompError> {
    let arch = TargetArch::x86_64;
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> =
        ALLOWED.iter().map(|&nr| (nr, Vec::new())).collect();
    let dword = |index, op, value| SeccompCondition::new(index, SeccompCmpArgLen::Dword, op, value);
    let mut personality = Vec::new();
    for value in PERSONALITIES {
        personality.push(SeccompRule::new(vec![dword(0, SeccompCmpOp::Eq, value)?])?);
    }
    rules.insert(libc::SYS_personality, personality);
    rules.insert(
        libc::SYS_socket,
        vec![SeccompRule::new(vec![dword(
            0,
            SeccompCmpOp::Ne,
            AF_VSOCK,
        )?])?],
    );
    rules.insert(
        libc::SYS_clone,
        vec![SeccompRule::new(vec![SeccompCondition::new(
            0,
            SeccompCmpArgLen::Qword,
            SeccompCmpOp::MaskedEq(CLONE_NAMESPACE_FLAGS),
            0,
        )?])?],
    );
    let allowlist = SeccompFilter::new(
        rules,
        SeccompAction::Errno(libc::EPERM as u32),
        SeccompAction::Allow,
        arch,
    )?;
    let clone3 = SeccompFilter::new(
        BTreeMap::from([(libc::SYS_clone3, Vec::new())]),
        SeccompAction::Allow,
        SeccompAction::Errno(libc::ENOSYS as u32),
        arch,
    )?;
    Ok(vec![allowlist.try_into()?, clone3.try_into()?])
}

/// The filters of a seccompiler JSON profile, in the order of their names (a map has none).
pub(crate) fn profile(json: &str) -> Result<Vec<BpfProgram>, SeccompError> {
    let mut filters: Vec<_> = seccompiler::compile_from_json(json.as_bytes(), TargetArch::x86_64)?
        .into_iter()
        .collect();
    filters.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(filters.into_iter().map(|(_, program)| program).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_mask_matches_the_profile() {
        assert_eq!(CLONE_NAMESPACE_FLAGS, 2_114_060_288);
    }

    #[test]
    fn the_profile_compiles_and_lists_each_syscall_once() {
        let programs = docker_default().unwrap();
        assert_eq!(programs.len(), 2);
        assert!(programs.iter().all(|p| !p.is_empty()));
        let mut sorted = ALLOWED.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), ALLOWED.len());
        for forbidden in [
            libc::SYS_mount,
            libc::SYS_unshare,
            libc::SYS_setns,
            libc::SYS_bpf,
            libc::SYS_kexec_load,
        ] {
            assert!(!ALLOWED.contains(&forbidden));
        }
    }

    #[test]
    fn a_profile_compiles_to_one_filter_per_name() {
        let json = r#"{"b": {"mismatch_action": "allow", "match_action": {"errno": 13},
            "filter": [{"syscall": "mkdir"}]}, "a": {"mismatch_action": "allow",
            "match_action": "kill_process", "filter": [{"syscall": "reboot"}]}}"#;
        let programs = profile(json).unwrap();
        assert_eq!(programs.len(), 2);
        assert!(programs.iter().all(|p| !p.is_empty()));
        assert!(matches!(profile("{"), Err(SeccompError::Profile(_))));
        assert!(profile(r#"{"x": {"mismatch_action": "allow", "match_action": "allow", "filter": [{"syscall": "no_such_call"}]}}"#).is_err());
    }
}
