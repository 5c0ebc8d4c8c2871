//! `answers.txt`: the student's answers to a lab's questions, one `key = value` a line. An
//! answer never passes a step by itself: each is compared with what the checker measured.

use std::collections::BTreeMap;

use crate::StepResult;
use crate::error::LabError;
use crate::workspace::Workspace;

pub const FILE: &str = "answers.txt";

#[derive(Debug, Default)]
pub struct Answers {
    values: BTreeMap<String, String>,
}

impl Answers {
    pub fn load(ws: &Workspace) -> Result<Self, LabError> {
        let text = ws.read(FILE)?.unwrap_or_default();
        Ok(Answers {
            values: parse(&text),
        })
    }

    /// Grades the answer to `key` against `measured` (`None` when the checker could not
    /// measure it, because an earlier step failed); `agrees` decides, given the answer.
    pub fn grade(
        &self,
        key: &str,
        measured: Option<&str>,
        agrees: impl Fn(&str, &str) -> bool,
    ) -> StepResult {
        let step = format!("answer: {key}");
        let answer = self.values.get(key).map(String::as_str).unwrap_or("");
        match measured {
            None => StepResult::fail(
                &step,
                format!("you answered {answer:?}; nothing to compare with"),
                "the measurement this question is about failed above: fix those steps first",
            ),
            Some(_) if answer.is_empty() => StepResult::fail(
                &step,
                "no answer",
                format!("write your answer after `{key} =` in {FILE}"),
            ),
            Some(value) => StepResult::judge(
                &step,
                agrees(answer, value),
                format!("you answered {answer:?}; the checker measured {value:?}"),
                "compare your answer with what you observed; re-run the step and look again",
            ),
        }
    }
}

/// The answers template with each `key =` line filled in: how a reference solution writes
/// the values it measured.
pub fn fill(template: &str, values: &[(&str, String)]) -> String {
    template
        .lines()
        .map(|line| {
            let key = line.split_once('=').map(|(k, _)| k.trim());
            match values
                .iter()
                .find(|(k, _)| !line.starts_with('#') && Some(*k) == key)
            {
                Some((k, v)) => format!("{k} = {v}\n"),
                None => format!("{line}\n"),
            }
        })
        .collect()
}

/// Equal, ignoring case and surrounding blanks.
pub fn same(answer: &str, measured: &str) -> bool {
    answer.trim().eq_ignore_ascii_case(measured.trim())
}

/// An integer, written in decimal or as 0x-prefixed hexadecimal.
pub fn number(text: &str) -> Option<u64> {
    let text = text.trim();
    match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => text.parse().ok(),
    }
}

/// The same number, however each side wrote it.
pub fn same_number(answer: &str, measured: &str) -> bool {
    number(answer).is_some_and(|a| Some(a) == number(measured))
}

/// For kernel counters that only grow: the student read one at some moment before the check
/// did, so any count from 1 up to the measured one is right.
pub fn counted_up_to(answer: &str, measured: &str) -> bool {
    number(answer)
        .zip(number(measured))
        .is_some_and(|(a, m)| (1..=m).contains(&a))
}

/// A measured ratio (a slowdown, a speed-up), right when within `tolerance` (0.35 for ±35 %)
/// of the checker's own; the student may write `4`, `4.1` or `4.1x`.
pub fn ratio_within(answer: &str, measured: &str, tolerance: f64) -> bool {
    let ratio = |t: &str| {
        t.trim()
            .trim_end_matches(['x', 'X', '×'])
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|r| r.is_finite() && *r > 0.0)
    };
    ratio(answer)
        .zip(ratio(measured))
        .is_some_and(|(a, m)| (a - m).abs() <= m * tolerance)
}

fn parse(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_compares() {
        let values = parse("# q\npid = 1\nkey= 0x1F \nempty =\n");
        assert_eq!(values["pid"], "1");
        assert_eq!(values["empty"], "");
        assert!(same_number(&values["key"], "31"));
        assert!(!same_number("abc", "31"));
        assert!(same(" No", "no"));
        let filled = fill("# a = b\npid =\nother =\n", &[("pid", "7".into())]);
        assert_eq!(filled, "# a = b\npid = 7\nother =\n");
        assert!(ratio_within("4.1x", "4.0", 0.35));
        assert!(ratio_within("3", "4.0", 0.35));
        assert!(!ratio_within("2.5", "4.0", 0.35));
        assert!(!ratio_within("fast", "4.0", 0.35));
    }
}
