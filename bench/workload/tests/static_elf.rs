//! The workload must be one self-contained ELF: no interpreter, no shared libraries.

use goblin::elf::{Elf, program_header::PT_INTERP};

const BIN: &str = env!("CARGO_BIN_EXE_isolab-workload");

#[test]
fn binary_is_static() {
    let bytes = std::fs::read(BIN).expect("read the workload binary");
    let elf = Elf::parse(&bytes).expect("parse the workload as ELF");

    assert!(elf.is_64, "x86-64 ELF expected");
    assert_eq!(elf.header.e_machine, goblin::elf::header::EM_X86_64);
    assert!(
        !elf.program_headers.iter().any(|ph| ph.p_type == PT_INTERP),
        "PT_INTERP present: the binary needs a dynamic loader"
    );
    assert_eq!(elf.interpreter, None);
    assert!(
        elf.libraries.is_empty(),
        "DT_NEEDED entries present: {:?}",
        elf.libraries
    );
}

#[test]
fn binary_is_small() {
    let size = std::fs::metadata(BIN).expect("stat").len();
    assert!(
        size <= 3 << 20,
        "{size} bytes: the workload has grown past 3 MiB"
    );
}
