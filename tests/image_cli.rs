//! `isolab image` end to end: build, ls, du, export/import, and the exit code of a bad file.

use assert_cmd::Command;

fn isolab(store: &std::path::Path) -> Command {
    let mut cmd = Command::cargo_bin("isolab").unwrap();
    cmd.env("ISOLAB_STORE", store);
    cmd
}

#[test]
fn scratch_image_builds_lists_exports_and_reimports() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let workload = assert_cmd::cargo::cargo_bin("isolab-workload");
    isolab(&store)
        .args([
            "image",
            "build",
            "wl",
            "--from",
            "scratch",
            "--add-workload",
            "--workload-bin",
        ])
        .arg(&workload)
        .assert()
        .success();
    let ls = isolab(&store).args(["image", "ls"]).output().unwrap();
    assert!(String::from_utf8_lossy(&ls.stdout).contains("wl:latest"));
    let du = isolab(&store)
        .args(["image", "du", "--json"])
        .output()
        .unwrap();
    let du: serde_json::Value = serde_json::from_slice(&du.stdout).unwrap();
    assert!(du["units"].as_str().unwrap().contains("st_blocks"));
    let exported = dir.path().join("wl.tar");
    isolab(&store)
        .args(["image", "export", "wl"])
        .arg(&exported)
        .assert()
        .success();
    isolab(&dir.path().join("other"))
        .args(["image", "import", "--name", "again"])
        .arg(&exported)
        .assert()
        .success();
}

#[test]
fn a_corrupt_file_exits_2_and_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.tar.gz");
    std::fs::write(&bad, [0x1f, 0x8b, 8, 0, 1, 2, 3]).unwrap();
    let out = isolab(&dir.path().join("store"))
        .args(["image", "import"])
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("bad.tar.gz") && stderr.contains("left unchanged"),
        "{stderr}"
    );
}
