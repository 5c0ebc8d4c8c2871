//! Bad command lines: exit 2 and exactly one stderr line naming the problem.

mod common;

use common::run;

#[test]
fn each_kind_of_bad_input_is_a_usage_error() {
    let cases: &[(&[&str], &str)] = &[
        (&[], "missing mode"),
        (&["fly"], "unknown mode 'fly'"),
        (&["cpu"], "missing required flag --iters"),
        (&["mem", "--mib"], "missing value for --mib"),
        (&["io", "--mib", "lots"], "invalid value 'lots' for --mib"),
        (&["syscall", "--n", "0"], "must be at least 1"),
        (&["mem", "--mib", "2000000"], "too large"),
        (&["cpu", "--iters", "1", "--fast"], "unknown flag '--fast'"),
        (&["ready", "extra"], "unexpected argument 'extra'"),
        (
            &["cpu", "--iters", "1", "--iters", "2"],
            "duplicate flag --iters",
        ),
    ];
    for (args, needle) in cases {
        let out = run(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {out:?}");
        assert!(out.stdout.is_empty(), "{args:?}: nothing on stdout");
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr:?}");
        assert!(stderr.ends_with('\n'));
        assert!(
            stderr.contains(needle),
            "{args:?}: {stderr:?} lacks {needle:?}"
        );
        assert!(stderr.contains("usage: isolab-workload"), "{stderr:?}");
    }
}
