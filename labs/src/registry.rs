//! Every lab of the course, in order: those this build implements, and those it does not yet,
//! which `lab list` shows with what they will need, so nothing is faked.

use crate::lab::{cpu, memory, pidns, pids, userns, utsipc};
use crate::{Lab, Lang, Need};
use isolab_runtime::host::NamespaceKind;

/// A lab announced in the course but not in this build.
#[derive(Debug)]
pub struct Planned {
    pub id: u32,
    pub title_en: &'static str,
    pub title_zh: &'static str,
    pub minutes: u32,
    pub needs: &'static [Need],
}

impl Planned {
    pub fn title(&self, lang: Lang) -> &'static str {
        match lang {
            Lang::En => self.title_en,
            Lang::Zh => self.title_zh,
        }
    }
}

#[derive(Clone, Copy)]
pub enum Entry {
    Ready(&'static dyn Lab),
    Planned(&'static Planned),
}

impl std::fmt::Debug for Entry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Entry::Ready(lab) => write!(f, "Ready({})", lab.id()),
            Entry::Planned(p) => write!(f, "Planned({})", p.id),
        }
    }
}

impl Entry {
    pub fn id(&self) -> u32 {
        match self {
            Entry::Ready(lab) => lab.id(),
            Entry::Planned(p) => p.id,
        }
    }

    pub fn title(&self, lang: Lang) -> &'static str {
        match self {
            Entry::Ready(lab) => lab.title(lang),
            Entry::Planned(p) => p.title(lang),
        }
    }

    pub fn minutes(&self) -> u32 {
        match self {
            Entry::Ready(lab) => lab.minutes(),
            Entry::Planned(p) => p.minutes,
        }
    }

    pub fn needs(&self) -> &'static [Need] {
        match self {
            Entry::Ready(lab) => lab.needs(),
            Entry::Planned(p) => p.needs,
        }
    }
}

const fn planned(
    id: u32,
    title_en: &'static str,
    title_zh: &'static str,
    minutes: u32,
    needs: &'static [Need],
) -> Planned {
    Planned {
        id,
        title_en,
        title_zh,
        minutes,
        needs,
    }
}

static LAB2: Planned = planned(
    2,
    "Mount namespace, chroot versus pivot_root",
    "挂载命名空间：chroot 与 pivot_root",
    45,
    &[Need::Root, Need::Namespace(NamespaceKind::Mnt)],
);
static LAB4: Planned = planned(
    4,
    "Network namespace: bridges and veth pairs",
    "网络命名空间：网桥与 veth 对",
    45,
    &[
        Need::Root,
        Need::Namespace(NamespaceKind::Net),
        Need::Command("ip"),
    ],
);
static LAB9: Planned = planned(
    9,
    "Copy-on-write: an overlay by hand",
    "写时复制：手工搭建 overlay",
    40,
    &[Need::Root, Need::Overlayfs],
);
static LAB10: Planned = planned(
    10,
    "Capabilities and seccomp",
    "能力（capabilities）与 seccomp",
    45,
    &[Need::Root],
);
static LAB11: Planned = planned(11, "KVM from scratch", "从零开始使用 KVM", 60, &[Need::Kvm]);
static LAB12: Planned = planned(12, "Inside a micro-VM", "走进微型虚拟机", 40, &[Need::Kvm]);
static LAB13: Planned = planned(
    13,
    "Measuring the claims",
    "用测量检验说法",
    60,
    &[Need::Root],
);
static LAB14: Planned = planned(
    14,
    "Escapes: which layer stops them",
    "逃逸：哪一层挡住了它",
    60,
    &[Need::Root],
);

/// The course, in lab order.
pub fn entries() -> [Entry; 14] {
    [
        Entry::Ready(&pidns::LAB),
        Entry::Planned(&LAB2),
        Entry::Ready(&utsipc::LAB),
        Entry::Planned(&LAB4),
        Entry::Ready(&userns::LAB),
        Entry::Ready(&memory::LAB),
        Entry::Ready(&cpu::LAB),
        Entry::Ready(&pids::LAB),
        Entry::Planned(&LAB9),
        Entry::Planned(&LAB10),
        Entry::Planned(&LAB11),
        Entry::Planned(&LAB12),
        Entry::Planned(&LAB13),
        Entry::Planned(&LAB14),
    ]
}

pub fn find(id: u32) -> Option<Entry> {
    entries().into_iter().find(|e| e.id() == id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_one_to_fourteen_in_order() {
        let ids: Vec<u32> = entries().iter().map(Entry::id).collect();
        assert_eq!(ids, (1..=14).collect::<Vec<_>>());
    }

    #[test]
    fn every_ready_lab_has_both_languages_with_the_same_steps() {
        for entry in entries() {
            if let Entry::Ready(lab) = entry {
                let (en, zh) = (lab.text(Lang::En), lab.text(Lang::Zh));
                assert!(!lab.title(Lang::En).is_empty() && !lab.title(Lang::Zh).is_empty());
                let headings = |t: &str| t.lines().filter(|l| l.starts_with('#')).count();
                assert_eq!(headings(en), headings(zh), "lab {}", lab.id());
                let blocks = |t: &str| t.matches("```").count();
                assert_eq!(blocks(en), blocks(zh), "lab {}", lab.id());
            }
        }
    }
}
