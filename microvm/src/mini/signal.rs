//! Delivering a stop signal (SIGTERM, SIGINT) to a handler the program installed, the way
//! Linux does on x86-64: an `rt_sigframe` on the user stack, the handler entered with
//! (signal, &siginfo, &ucontext), and `rt_sigreturn` (reached through the handler's
//! `sa_restorer`) restoring the interrupted context from the frame.
//!
//! The monitor only delivers when the program blocks waiting for a signal (`pause`,
//! `sigsuspend`, as the `idle` workload does); until then the signal stays pending, as a
//! blocked one would on Linux. The interrupted context is then the return of a libc wrapper
//! call, after which the SysV ABI has every vector register caller-saved, so the frame
//! carries no FPU state (`fpstate` is NULL) and no XSAVE has to be read out of KVM. A
//! signal the program has no handler for, or a second one while one is pending, stops the
//! VM instead (see [`super::Outcome::Stopped`]). The alternate signal stack is not used:
//! `sigaltstack` reports it disabled.

use kvm_bindings::kvm_regs;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

/// `struct sigaction` as the x86-64 kernel takes it (`rt_sigaction`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SigAction {
    pub handler: u64,
    pub flags: u64,
    pub restorer: u64,
    pub mask: u64,
}

const SIG_DFL: u64 = 0;
const SIG_IGN: u64 = 1;
const SA_RESTORER: u64 = 0x0400_0000;
const SA_RESETHAND: u64 = 0x8000_0000;

impl SigAction {
    pub fn from_bytes(raw: &[u8; 32]) -> Self {
        let word = |i: usize| u64::from_le_bytes(raw[8 * i..8 * i + 8].try_into().expect("8"));
        SigAction {
            handler: word(0),
            flags: word(1),
            restorer: word(2),
            mask: word(3),
        }
    }

    pub fn to_bytes(self) -> [u8; 32] {
        let mut raw = [0u8; 32];
        for (i, word) in [self.handler, self.flags, self.restorer, self.mask]
            .into_iter()
            .enumerate()
        {
            raw[8 * i..8 * i + 8].copy_from_slice(&word.to_le_bytes());
        }
        raw
    }

    /// Whether delivering runs a handler. On x86-64 the handler returns through
    /// `sa_restorer` (glibc always sets one); without it there is nowhere to return to.
    pub fn runs_handler(&self) -> bool {
        !matches!(self.handler, SIG_DFL | SIG_IGN) && self.flags & SA_RESTORER != 0
    }

    /// SA_RESETHAND: the action reverts to the default once delivered.
    pub fn resets(&self) -> bool {
        self.flags & SA_RESETHAND != 0
    }
}

/// Below the interrupted RSP: the ABI's red zone, which a handler must not overwrite.
const RED_ZONE: u64 = 128;
/// `struct sigcontext` (x86-64): 18 registers, cs/gs/fs/ss, err, trapno, oldmask, cr2,
/// fpstate, 8 reserved words.
const SIGCONTEXT_SIZE: u64 = 256;
/// `struct ucontext`: uc_flags, uc_link, uc_stack (24 bytes), uc_mcontext, uc_sigmask.
const UC_MCONTEXT: u64 = 40;
const UCONTEXT_SIZE: u64 = UC_MCONTEXT + SIGCONTEXT_SIZE + 8;
/// `struct rt_sigframe`: pretcode (the return address), ucontext, siginfo (128 bytes).
const FRAME_UC: u64 = 8;
const FRAME_INFO: u64 = FRAME_UC + UCONTEXT_SIZE;
const FRAME_SIZE: u64 = FRAME_INFO + 128;
const RFLAGS_TF: u64 = 1 << 8;
const RFLAGS_DF: u64 = 1 << 10;

/// The general registers in `struct sigcontext` order, up to and including eflags.
fn context_words(regs: &kvm_regs) -> [u64; 18] {
    [
        regs.r8,
        regs.r9,
        regs.r10,
        regs.r11,
        regs.r12,
        regs.r13,
        regs.r14,
        regs.r15,
        regs.rdi,
        regs.rsi,
        regs.rbp,
        regs.rbx,
        regs.rdx,
        regs.rax,
        regs.rcx,
        regs.rsp,
        regs.rip,
        regs.rflags,
    ]
}

/// Pushes a signal frame for `signal` describing the context `regs` (the program as it
/// would resume) and points `regs` at the handler, as Linux's `setup_rt_frame` does.
/// `user_cs`/`user_ss` are recorded in the frame for the handler to see.
pub fn push_frame(
    memory: &GuestMemoryMmap,
    regs: &mut kvm_regs,
    signal: i32,
    action: &SigAction,
    user_cs: u16,
    user_ss: u16,
) -> Result<(), vm_memory::GuestMemoryError> {
    // At the handler's entry RSP + 8 is 16-byte aligned, as after a `call`.
    let frame = ((regs.rsp - RED_ZONE - FRAME_SIZE) & !15) - 8;
    let mut bytes = vec![0u8; FRAME_SIZE as usize];
    let mut put = |at: u64, value: &[u8]| {
        bytes[at as usize..at as usize + value.len()].copy_from_slice(value);
    };
    put(0, &action.restorer.to_le_bytes());
    let context = FRAME_UC + UC_MCONTEXT;
    for (i, word) in context_words(regs).into_iter().enumerate() {
        put(context + 8 * i as u64, &word.to_le_bytes());
    }
    put(context + 8 * 18, &user_cs.to_le_bytes());
    put(context + 8 * 18 + 6, &user_ss.to_le_bytes());
    // siginfo: si_signo, si_errno, si_code = SI_USER; si_pid and si_uid stay 0 (the host).
    put(FRAME_INFO, &signal.to_le_bytes());
    memory.write_slice(&bytes, GuestAddress(frame))?;

    regs.rsp = frame;
    regs.rip = action.handler;
    regs.rdi = signal as u64;
    regs.rsi = frame + FRAME_INFO;
    regs.rdx = frame + FRAME_UC;
    regs.rax = 0;
    regs.rflags &= !(RFLAGS_TF | RFLAGS_DF);
    Ok(())
}

/// `rt_sigreturn`: the registers saved by [`push_frame`], read from the frame whose
/// return address the handler's `ret` popped (so it starts at `rsp - 8`). `None` when the
/// frame is not readable guest memory; Linux kills the program with SIGSEGV then.
pub fn restore(memory: &GuestMemoryMmap, rsp: u64) -> Option<kvm_regs> {
    let context = rsp.checked_sub(8)? + FRAME_UC + UC_MCONTEXT;
    let mut raw = [0u8; 8 * 18];
    memory.read_slice(&mut raw, GuestAddress(context)).ok()?;
    let word = |i: usize| u64::from_le_bytes(raw[8 * i..8 * i + 8].try_into().expect("8"));
    Some(kvm_regs {
        r8: word(0),
        r9: word(1),
        r10: word(2),
        r11: word(3),
        r12: word(4),
        r13: word(5),
        r14: word(6),
        r15: word(7),
        rdi: word(8),
        rsi: word(9),
        rbp: word(10),
        rbx: word(11),
        rdx: word(12),
        rax: word(13),
        rcx: word(14),
        rsp: word(15),
        rip: word(16),
        rflags: word(17),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn memory() -> GuestMemoryMmap {
        GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap()
    }

    fn action() -> SigAction {
        SigAction {
            handler: 0x40_1000,
            flags: SA_RESTORER,
            restorer: 0x40_2000,
            mask: 0,
        }
    }

    #[test]
    fn the_handler_gets_linuxs_arguments_and_an_abi_aligned_stack() {
        let memory = memory();
        let interrupted = kvm_regs {
            rsp: 0x8_0000,
            rip: 0x40_5000,
            rax: (-4i64) as u64,
            rbx: 7,
            r15: 9,
            rflags: 0x202 | RFLAGS_DF,
            ..Default::default()
        };
        let mut regs = interrupted;
        push_frame(&memory, &mut regs, libc::SIGTERM, &action(), 0x33, 0x2b).unwrap();
        assert_eq!(regs.rip, 0x40_1000);
        assert_eq!(regs.rdi, libc::SIGTERM as u64);
        assert_eq!((regs.rsp + 8) % 16, 0);
        assert!(regs.rsp + FRAME_SIZE <= interrupted.rsp - RED_ZONE);
        assert_eq!(regs.rflags & RFLAGS_DF, 0);
        let read = |addr: u64| memory.read_obj::<u64>(GuestAddress(addr)).unwrap();
        assert_eq!(read(regs.rsp), 0x40_2000, "returns into the restorer");
        assert_eq!(read(regs.rsi) as u32, libc::SIGTERM as u32, "si_signo");
        assert_eq!(regs.rdx, regs.rsp + 8, "ucontext follows pretcode");
        // The restorer's `rt_sigreturn` runs with the return address popped.
        assert_eq!(restore(&memory, regs.rsp + 8), Some(interrupted));
    }

    #[test]
    fn only_real_handlers_with_a_restorer_run() {
        assert!(action().runs_handler());
        let with = |handler, flags| SigAction {
            handler,
            flags,
            ..action()
        };
        assert!(!with(SIG_DFL, SA_RESTORER).runs_handler());
        assert!(!with(SIG_IGN, SA_RESTORER).runs_handler());
        assert!(!with(0x40_1000, 0).runs_handler());
        let round = SigAction::from_bytes(&action().to_bytes());
        assert_eq!(round, action());
    }

    #[test]
    fn a_frame_outside_memory_is_refused() {
        assert_eq!(restore(&memory(), 4), None);
        assert_eq!(restore(&memory(), 2 << 20), None);
    }
}
