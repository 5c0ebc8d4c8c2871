//! The CPUID each vCPU sees: KVM's supported leaves, made true for this VM's topology.
//!
//! `KVM_GET_SUPPORTED_CPUID` describes what KVM can offer, not one CPU: the APIC ID fields
//! are zero and the topology is the host's. Each vCPU gets its own copy with its APIC ID
//! (leaf 1 EBX, leaves 0xB/0x1F EDX), the logical processor count, and the hypervisor bit,
//! and leaves that describe host-only facilities (the PMU) are cleared.

use kvm_bindings::CpuId;

/// Leaf 1 ECX: running under a hypervisor.
const HYPERVISOR: u32 = 1 << 31;
/// Leaf 1 EDX: the logical processor count in EBX[23:16] is valid.
const HTT: u32 = 1 << 28;
/// Leaf 1 ECX: the local APIC timer has TSC-deadline mode. KVM emulates it with its
/// in-kernel LAPIC (KVM_CAP_TSC_DEADLINE_TIMER) but leaves it out of the supported
/// leaves; without it Linux calibrates the APIC timer by polling for ~100 ms.
const TSC_DEADLINE: u32 = 1 << 24;

/// The CPUID for vCPU `index` of `count`; `tsc_deadline`: KVM emulates the TSC-deadline
/// timer.
pub fn for_vcpu(supported: &CpuId, index: u8, count: u8, tsc_deadline: bool) -> CpuId {
    let mut cpuid = supported.clone();
    for entry in cpuid.as_mut_slice() {
        match entry.function {
            1 => {
                entry.ebx =
                    (entry.ebx & 0x0000_ffff) | (u32::from(index) << 24) | (u32::from(count) << 16);
                entry.ecx |= HYPERVISOR;
                if tsc_deadline {
                    entry.ecx |= TSC_DEADLINE;
                }
                if count > 1 {
                    entry.edx |= HTT;
                } else {
                    entry.edx &= !HTT;
                }
            }
            // Deterministic cache parameters: cores per package in EAX[31:26] (minus one),
            // threads sharing the cache in EAX[25:14] (minus one). One thread per core.
            4 if entry.eax != 0 => {
                entry.eax = (entry.eax & 0x3fff) | (u32::from(count.saturating_sub(1)) << 26);
            }
            // No PMU is virtualised for the guest.
            0xa => {
                entry.eax = 0;
                entry.ebx = 0;
                entry.ecx = 0;
                entry.edx = 0;
            }
            // Extended topology: x2APIC ID in EDX; SMT level holds 1 thread, core level
            // all vCPUs.
            0xb | 0x1f => {
                entry.edx = u32::from(index);
                match entry.index {
                    0 => {
                        entry.eax = 0;
                        entry.ebx = 1;
                        entry.ecx = 1 << 8;
                    }
                    1 => {
                        entry.eax = u32::from(count).next_power_of_two().trailing_zeros();
                        entry.ebx = u32::from(count);
                        entry.ecx = (2 << 8) | 1;
                    }
                    level => {
                        entry.eax = 0;
                        entry.ebx = 0;
                        entry.ecx = level;
                    }
                }
            }
            _ => {}
        }
    }
    cpuid
}

#[cfg(test)]
mod tests {
    use super::*;
    use kvm_bindings::kvm_cpuid_entry2;

    fn entry(function: u32, index: u32, regs: [u32; 4]) -> kvm_cpuid_entry2 {
        kvm_cpuid_entry2 {
            function,
            index,
            eax: regs[0],
            ebx: regs[1],
            ecx: regs[2],
            edx: regs[3],
            ..Default::default()
        }
    }

    fn find(cpuid: &CpuId, function: u32, index: u32) -> kvm_cpuid_entry2 {
        *cpuid
            .as_slice()
            .iter()
            .find(|e| e.function == function && e.index == index)
            .unwrap()
    }

    #[test]
    fn each_vcpu_gets_its_apic_id_and_the_count() {
        let supported = CpuId::from_entries(&[
            entry(1, 0, [0x806f8, 0xff00_0800, 0, HTT]),
            entry(0xb, 0, [1, 2, 0x100, 7]),
            entry(0xb, 1, [5, 16, 0x201, 7]),
            entry(0xa, 0, [0x0703_0105, 0, 0, 0x603]),
            entry(4, 0, [0xfc00_4121, 1, 2, 3]),
        ])
        .unwrap();
        let cpu1 = for_vcpu(&supported, 1, 2, true);
        let leaf1 = find(&cpu1, 1, 0);
        assert_eq!(leaf1.ebx >> 24, 1);
        assert_eq!((leaf1.ebx >> 16) & 0xff, 2);
        assert_eq!(leaf1.ebx & 0xffff, 0x0800, "CLFLUSH size kept");
        assert_ne!(leaf1.ecx & HYPERVISOR, 0);
        assert_ne!(leaf1.edx & HTT, 0);
        assert_ne!(leaf1.ecx & TSC_DEADLINE, 0);
        assert_eq!(find(&cpu1, 0xb, 0).edx, 1);
        let core = find(&cpu1, 0xb, 1);
        assert_eq!((core.eax, core.ebx, core.ecx), (1, 2, 0x201));
        assert_eq!(find(&cpu1, 0xa, 0).eax, 0);
        assert_eq!(find(&cpu1, 4, 0).eax >> 26, 1);
        let alone = for_vcpu(&supported, 0, 1, false);
        assert_eq!(find(&alone, 1, 0).edx & HTT, 0);
        assert_eq!(find(&alone, 1, 0).ecx & TSC_DEADLINE, 0);
        assert_eq!(find(&alone, 1, 0).ebx >> 24, 0);
        // The host's copy is untouched.
        assert_eq!(find(&supported, 0xb, 0).edx, 7);
    }
}
