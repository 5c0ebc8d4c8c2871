//! Every lab of the course, in order.

use crate::Lab;
use crate::lab::{
    capsec, chroot, claims, cow, cpu, escapes, kvm, memory, minivm, netns, pidns, pids, userns,
    utsipc,
};

/// The course, in lab order.
pub fn labs() -> [&'static dyn Lab; 14] {
    [
        &pidns::LAB,
        &chroot::LAB,
        &utsipc::LAB,
        &netns::LAB,
        &userns::LAB,
        &memory::LAB,
        &cpu::LAB,
        &pids::LAB,
        &cow::LAB,
        &capsec::LAB,
        &kvm::LAB,
        &minivm::LAB,
        &claims::LAB,
        &escapes::LAB,
    ]
}

pub fn find(id: u32) -> Option<&'static dyn Lab> {
    labs().into_iter().find(|lab| lab.id() == id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Lang;

    #[test]
    fn ids_are_one_to_fourteen_in_order() {
        let ids: Vec<u32> = labs().iter().map(|lab| lab.id()).collect();
        assert_eq!(ids, (1..=14).collect::<Vec<_>>());
    }

    #[test]
    fn every_lab_has_both_languages_with_the_same_steps() {
        for lab in labs() {
            let (en, zh) = (lab.text(Lang::En), lab.text(Lang::Zh));
            assert!(!lab.title(Lang::En).is_empty() && !lab.title(Lang::Zh).is_empty());
            let headings = |t: &str| t.lines().filter(|l| l.starts_with('#')).count();
            assert_eq!(headings(en), headings(zh), "lab {}", lab.id());
            let blocks = |t: &str| t.matches("```").count();
            assert_eq!(blocks(en), blocks(zh), "lab {}", lab.id());
        }
    }
}
