//! `scripts/setup`: the demo's set-up never builds the test broker; the
//! tests' set-up does. A `cargo` that only records its arguments stands in
//! for the real one, so nothing is built here.

use std::path::Path;
use std::process::Command;

/// Runs `scripts/setup MODE` with a recording `cargo` first on the PATH and
/// no tansu anywhere; returns (exit code, output, cargo's recorded calls).
fn setup(mode: &str) -> (i32, String, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).expect("bin");
    let calls = dir.path().join("calls");
    let shim = bin.join("cargo");
    std::fs::write(
        &shim,
        format!("#!/bin/sh\necho \"$@\" >> '{}'\nexit 0\n", calls.display()),
    )
    .expect("shim");
    Command::new("chmod")
        .arg("+x")
        .arg(&shim)
        .status()
        .expect("chmod");
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new("bash")
        .arg(root.join("scripts/setup"))
        .arg(mode)
        .env("PATH", path)
        .env("STRANGLER_TOOLS", dir.path().join("tools"))
        .env_remove("TANSU_BIN")
        .output()
        .expect("run setup");
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
        std::fs::read_to_string(&calls).unwrap_or_default(),
    )
}

#[test]
fn the_demo_setup_does_not_build_the_test_broker() {
    let (code, out, calls) = setup("demo");
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("setup: ok (demo)"), "{out}");
    assert_eq!(calls, "", "the demo's setup ran cargo: {calls}");
}

#[test]
fn the_test_setup_builds_the_test_broker() {
    let (code, out, calls) = setup("test");
    assert_eq!(code, 0, "{out}");
    assert!(
        calls.starts_with("install") && calls.contains("tansu"),
        "{calls}\n{out}"
    );
}
