//! Loads a static x86-64 ELF into guest RAM and builds its initial stack (argv, envp,
//! auxv) exactly as Linux's `execve` lays it out, so an unmodified static glibc program
//! starts through its normal `_start`.
//!
//! A static-pie program (ET_DYN without PT_INTERP) is loaded at `PIE_BASE` and relocates
//! itself (glibc's `_dl_relocate_static_pie` finds its load address from `_DYNAMIC`; no
//! AT_BASE needed, so AT_BASE is 0 as for any static program); a non-PIE one (ET_EXEC) is
//! loaded at its link addresses.

use goblin::elf::Elf;
use goblin::elf::header::{EM_X86_64, ET_DYN, ET_EXEC};
use goblin::elf::program_header::{PT_INTERP, PT_LOAD, PT_PHDR};

use super::layout::{PAGE, PIE_BASE, USER_START, align_down, align_up};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("not an ELF executable ({0})")]
    NotElf(String),
    #[error("not an x86-64 executable (e_machine {0})")]
    WrongMachine(u16),
    #[error("not an executable ELF (e_type {0})")]
    WrongType(u16),
    #[error("dynamically linked (has PT_INTERP); the mini kernel runs static executables only")]
    Dynamic,
    #[error("has no loadable segment")]
    NoSegments,
    #[error("segment {vaddr:#x}+{memsz:#x} does not fit in user RAM {start:#x}..{end:#x}")]
    DoesNotFit {
        vaddr: u64,
        memsz: u64,
        start: u64,
        end: u64,
    },
    #[error("segment at file offset {0:#x} runs past the end of the file")]
    Truncated(u64),
}

/// One PT_LOAD: `filesz` bytes from `offset` in the file go to guest address `vaddr`, the
/// rest up to `memsz` is zero (bss).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    pub vaddr: u64,
    pub offset: u64,
    pub filesz: u64,
    pub memsz: u64,
    /// PF_W: the program writes it (relocations, .data, .bss).
    pub writable: bool,
}

/// A program ready to load: where each segment goes and what auxv must say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Program {
    pub segments: Vec<Segment>,
    pub entry: u64,
    pub phdr: u64,
    pub phnum: u64,
    pub phent: u64,
    /// Lowest and end (page-aligned) of the loaded image; brk starts at `end`.
    pub start: u64,
    pub end: u64,
}

impl Program {
    /// Validates `file` and decides where everything goes; nothing is written yet, so a
    /// bad file is rejected before any VM exists.
    pub fn parse(file: &[u8], ram_end: u64) -> Result<Self, Error> {
        let elf = Elf::parse(file).map_err(|e| Error::NotElf(e.to_string()))?;
        if elf.header.e_machine != EM_X86_64 || !elf.is_64 {
            return Err(Error::WrongMachine(elf.header.e_machine));
        }
        let base = match elf.header.e_type {
            ET_EXEC => 0,
            ET_DYN => {
                let lowest = elf
                    .program_headers
                    .iter()
                    .filter(|p| p.p_type == PT_LOAD)
                    .map(|p| p.p_vaddr)
                    .min()
                    .unwrap_or(0);
                PIE_BASE.wrapping_sub(align_down(lowest, PAGE))
            }
            other => return Err(Error::WrongType(other)),
        };
        if elf.program_headers.iter().any(|p| p.p_type == PT_INTERP) {
            return Err(Error::Dynamic);
        }
        let mut segments = Vec::new();
        for ph in elf.program_headers.iter().filter(|p| p.p_type == PT_LOAD) {
            let vaddr = base.wrapping_add(ph.p_vaddr);
            let fits = vaddr >= USER_START
                && ph.p_filesz <= ph.p_memsz
                && vaddr
                    .checked_add(ph.p_memsz)
                    .is_some_and(|end| end <= ram_end);
            if !fits {
                return Err(Error::DoesNotFit {
                    vaddr,
                    memsz: ph.p_memsz,
                    start: USER_START,
                    end: ram_end,
                });
            }
            if ph
                .p_offset
                .checked_add(ph.p_filesz)
                .is_none_or(|end| end > file.len() as u64)
            {
                return Err(Error::Truncated(ph.p_offset));
            }
            segments.push(Segment {
                vaddr,
                offset: ph.p_offset,
                filesz: ph.p_filesz,
                memsz: ph.p_memsz,
                writable: ph.is_write(),
            });
        }
        if segments.is_empty() {
            return Err(Error::NoSegments);
        }
        let phoff = elf.header.e_phoff;
        let phdr = match elf.program_headers.iter().find(|p| p.p_type == PT_PHDR) {
            Some(p) => base.wrapping_add(p.p_vaddr),
            None => elf
                .program_headers
                .iter()
                .find(|p| {
                    p.p_type == PT_LOAD && p.p_offset <= phoff && phoff < p.p_offset + p.p_filesz
                })
                .map_or(0, |p| base.wrapping_add(p.p_vaddr + (phoff - p.p_offset))),
        };
        let start = segments
            .iter()
            .map(|s| align_down(s.vaddr, PAGE))
            .min()
            .unwrap_or(USER_START);
        let end = segments
            .iter()
            .map(|s| align_up(s.vaddr + s.memsz, PAGE))
            .max()
            .unwrap_or(USER_START);
        Ok(Program {
            segments,
            entry: base.wrapping_add(elf.header.e_entry),
            phdr,
            phnum: u64::from(elf.header.e_phnum),
            phent: u64::from(elf.header.e_phentsize),
            start,
            end,
        })
    }
}

pub const AT_NULL: u64 = 0;
pub const AT_PHDR: u64 = 3;
pub const AT_PHENT: u64 = 4;
pub const AT_PHNUM: u64 = 5;
pub const AT_PAGESZ: u64 = 6;
pub const AT_BASE: u64 = 7;
pub const AT_FLAGS: u64 = 8;
pub const AT_ENTRY: u64 = 9;
pub const AT_UID: u64 = 11;
pub const AT_EUID: u64 = 12;
pub const AT_GID: u64 = 13;
pub const AT_EGID: u64 = 14;
pub const AT_PLATFORM: u64 = 15;
pub const AT_HWCAP: u64 = 16;
pub const AT_CLKTCK: u64 = 17;
pub const AT_SECURE: u64 = 23;
pub const AT_RANDOM: u64 = 25;
pub const AT_HWCAP2: u64 = 26;
pub const AT_EXECFN: u64 = 31;
pub const AT_MINSIGSTKSZ: u64 = 51;

/// What the initial stack says beyond the program itself.
#[derive(Debug, Clone)]
pub struct StackInputs<'a> {
    pub argv: &'a [String],
    pub envp: &'a [String],
    pub execfn: &'a str,
    pub random: [u8; 16],
    pub hwcap: u64,
    pub hwcap2: u64,
    pub minsigstksz: u64,
}

/// The initial stack: `bytes` go at `[top - bytes.len(), top)`, the program starts with
/// RSP = `rsp`, which points at argc and is 16-byte aligned as the ABI requires.
#[derive(Debug)]
pub struct Stack {
    pub bytes: Vec<u8>,
    pub rsp: u64,
}

/// Lays out, from the top down: strings and AT_RANDOM's bytes, then (16-byte aligned)
/// argc, argv[], NULL, envp[], NULL, auxv pairs, AT_NULL.
pub fn build_stack(top: u64, program: &Program, input: &StackInputs<'_>) -> Stack {
    let mut strings: Vec<u8> = Vec::new();
    // Offsets from the bottom of the strings block, fixed up into addresses below.
    let mut push = |s: &[u8]| {
        let at = strings.len();
        strings.extend_from_slice(s);
        at
    };
    let random = push(&input.random);
    let platform = push(b"x86_64\0");
    let execfn = push(&[input.execfn.as_bytes(), b"\0"].concat());
    let argv: Vec<usize> = input
        .argv
        .iter()
        .map(|a| push(&[a.as_bytes(), b"\0"].concat()))
        .collect();
    let envp: Vec<usize> = input
        .envp
        .iter()
        .map(|e| push(&[e.as_bytes(), b"\0"].concat()))
        .collect();
    let strings_at = align_down(top - strings.len() as u64, 16);
    let addr = |offset: usize| strings_at + offset as u64;

    let auxv: [(u64, u64); 19] = [
        (AT_PHDR, program.phdr),
        (AT_PHENT, program.phent),
        (AT_PHNUM, program.phnum),
        (AT_PAGESZ, PAGE),
        (AT_BASE, 0),
        (AT_FLAGS, 0),
        (AT_ENTRY, program.entry),
        (AT_UID, 0),
        (AT_EUID, 0),
        (AT_GID, 0),
        (AT_EGID, 0),
        (AT_SECURE, 0),
        (AT_RANDOM, addr(random)),
        (AT_HWCAP, input.hwcap),
        (AT_HWCAP2, input.hwcap2),
        (AT_CLKTCK, 100),
        (AT_EXECFN, addr(execfn)),
        (AT_PLATFORM, addr(platform)),
        (AT_MINSIGSTKSZ, input.minsigstksz),
    ];
    let mut words: Vec<u64> = Vec::new();
    words.push(input.argv.len() as u64);
    words.extend(argv.iter().map(|&o| addr(o)));
    words.push(0);
    words.extend(envp.iter().map(|&o| addr(o)));
    words.push(0);
    for (key, value) in auxv {
        words.extend([key, value]);
    }
    words.extend([AT_NULL, 0]);
    let rsp = align_down(strings_at - 8 * words.len() as u64, 16);

    let mut bytes = vec![0u8; (top - rsp) as usize];
    for (i, word) in words.iter().enumerate() {
        bytes[8 * i..8 * i + 8].copy_from_slice(&word.to_le_bytes());
    }
    let s = (strings_at - rsp) as usize;
    bytes[s..s + strings.len()].copy_from_slice(&strings);
    Stack { bytes, rsp }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn word(stack: &Stack, top: u64, addr: u64) -> u64 {
        let at = (addr - (top - stack.bytes.len() as u64)) as usize;
        u64::from_le_bytes(stack.bytes[at..at + 8].try_into().unwrap())
    }

    fn string(stack: &Stack, top: u64, addr: u64) -> String {
        let at = (addr - (top - stack.bytes.len() as u64)) as usize;
        let end = stack.bytes[at..].iter().position(|&b| b == 0).unwrap();
        String::from_utf8(stack.bytes[at..at + end].to_vec()).unwrap()
    }

    fn program() -> Program {
        Program {
            segments: vec![Segment {
                vaddr: 0x40_0000,
                offset: 0,
                filesz: 0x1000,
                memsz: 0x2000,
                writable: true,
            }],
            entry: 0x40_0100,
            phdr: 0x40_0040,
            phnum: 9,
            phent: 56,
            start: 0x40_0000,
            end: 0x40_2000,
        }
    }

    #[test]
    fn stack_has_argc_argv_envp_and_auxv_like_linux() {
        let top = 0x800_0000;
        let argv = [
            "isolab-workload".to_string(),
            "cpu".into(),
            "--iters".into(),
        ];
        let envp = ["A=b".to_string()];
        let input = StackInputs {
            argv: &argv,
            envp: &envp,
            execfn: "/isolab-workload",
            random: [7; 16],
            hwcap: 0x1234,
            hwcap2: 2,
            minsigstksz: 2048,
        };
        let stack = build_stack(top, &program(), &input);
        assert_eq!(stack.rsp % 16, 0);
        assert_eq!(stack.rsp + stack.bytes.len() as u64, top);
        let mut p = stack.rsp;
        assert_eq!(word(&stack, top, p), 3);
        for arg in &argv {
            p += 8;
            assert_eq!(&string(&stack, top, word(&stack, top, p)), arg);
        }
        p += 8;
        assert_eq!(word(&stack, top, p), 0);
        p += 8;
        assert_eq!(string(&stack, top, word(&stack, top, p)), "A=b");
        p += 8;
        assert_eq!(word(&stack, top, p), 0);
        let mut auxv = std::collections::BTreeMap::new();
        loop {
            p += 8;
            let key = word(&stack, top, p);
            p += 8;
            if key == AT_NULL {
                break;
            }
            auxv.insert(key, word(&stack, top, p));
        }
        assert_eq!(auxv[&AT_PHDR], 0x40_0040);
        assert_eq!(auxv[&AT_PHNUM], 9);
        assert_eq!(auxv[&AT_PHENT], 56);
        assert_eq!(auxv[&AT_PAGESZ], 4096);
        assert_eq!(auxv[&AT_ENTRY], 0x40_0100);
        assert_eq!(auxv[&AT_BASE], 0);
        assert_eq!(auxv[&AT_SECURE], 0);
        assert_eq!(auxv[&AT_HWCAP], 0x1234);
        assert_eq!(auxv[&AT_HWCAP2], 2);
        assert_eq!(auxv[&AT_CLKTCK], 100);
        assert_eq!(auxv[&AT_MINSIGSTKSZ], 2048);
        assert_eq!(string(&stack, top, auxv[&AT_EXECFN]), "/isolab-workload");
        assert_eq!(string(&stack, top, auxv[&AT_PLATFORM]), "x86_64");
        let random = auxv[&AT_RANDOM];
        assert_eq!(random % 16, 0);
        let at = (random - stack.rsp) as usize;
        assert_eq!(&stack.bytes[at..at + 16], &[7; 16]);
        for key in [AT_UID, AT_EUID, AT_GID, AT_EGID] {
            assert_eq!(auxv[&key], 0);
        }
    }

    #[test]
    fn garbage_is_not_an_elf() {
        let err = Program::parse(b"#!/bin/sh\necho hi\n", 1 << 30).unwrap_err();
        assert!(matches!(err, Error::NotElf(_)), "{err}");
    }

    /// The test binary itself is a static-pie (or static) x86-64 ELF, built with the
    /// workspace's +crt-static: the very kind of file the mini kernel runs.
    #[test]
    fn loads_a_real_static_executable() {
        let exe = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        let program = Program::parse(&exe, 1 << 30).unwrap();
        assert!(program.start >= USER_START);
        assert!(program.entry >= program.start && program.entry < program.end);
        assert!(program.phdr >= program.start && program.phdr < program.end);
        assert_eq!(program.phent, 56);
        for s in &program.segments {
            assert!(s.filesz <= s.memsz && s.vaddr >= program.start);
            assert!(s.vaddr + s.memsz <= program.end);
        }
        assert!(program.segments.iter().any(|s| s.writable));
        assert!(program.segments.iter().any(|s| !s.writable));
        let small = Program::parse(&exe, 8 << 20);
        assert!(matches!(small, Err(Error::DoesNotFit { .. })) || small.is_ok());
    }
}
