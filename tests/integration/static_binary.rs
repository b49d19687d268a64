//! The static binary of `make dist` needs nothing from the host but the
//! kernel: run from a chroot holding only the binary and the kernel's
//! /proc and /sys, it attaches the default set and counts exactly. This
//! stands in for the Dockerfile's `FROM scratch` image, which cannot be
//! built without a container engine. `make test` builds the binary (a
//! debug build, same link) and names it in BPF_EXPORTER_STATIC_BINARY.

use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};

use crate::binary::{answers_ok, Exporter};
use crate::common::bpf_available;

fn static_binary() -> Option<String> {
    match std::env::var("BPF_EXPORTER_STATIC_BINARY") {
        Ok(path) => Some(path),
        Err(_) if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("BPF_EXPORTER_STATIC_BINARY is not set: run the tests with `make test`")
        }
        Err(_) => None,
    }
}

#[test]
fn static_binary_has_no_dynamic_dependency() {
    let Some(bin) = static_binary() else { return };
    let out = Command::new("ldd").arg(&bin).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        text.contains("not a dynamic executable") || text.contains("statically linked"),
        "{bin}: {text}"
    );
    assert!(!text.contains(".so"), "{bin}: {text}");
}

/// An empty root holding `bin` as /bpf-exporter, and the command that
/// runs it there: a private mount namespace with the kernel's /proc and
/// /sys, whose mounts die with the exporter, so none is left on the host
/// whatever happens to the test.
fn empty_chroot(bin: &str) -> (tempfile::TempDir, Vec<String>) {
    let root = tempfile::tempdir().unwrap();
    std::fs::set_permissions(root.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::copy(bin, root.path().join("bpf-exporter")).unwrap();
    for dir in ["proc", "sys"] {
        std::fs::create_dir(root.path().join(dir)).unwrap();
    }
    let root_path = root.path().to_str().unwrap();
    let script = format!(
        "mount --rbind /sys {root_path}/sys && mount --bind /proc {root_path}/proc && exec chroot {root_path} \"$@\""
    );
    let wrapper = [
        "unshare",
        "--mount",
        "--propagation",
        "private",
        "sh",
        "-c",
        &script,
        "sh",
    ];
    (root, wrapper.map(String::from).to_vec())
}

fn assert_no_mount_left(root: &tempfile::TempDir) {
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains(root.path().to_str().unwrap()), "{mounts}");
}

#[test]
fn static_binary_runs_the_default_set_in_an_empty_chroot() {
    let Some(bin) = static_binary() else { return };
    if !bpf_available() {
        return;
    }
    let (root, wrapper) = empty_chroot(&bin);
    let wrapper: Vec<&str> = wrapper.iter().map(String::as_str).collect();
    let exporter = Exporter::spawn_binary("/bpf-exporter", &wrapper, &[], Stdio::inherit(), |port| {
        answers_ok(port, "/-/ready")
    });
    exporter.assert_default_set_counts_exactly();
    exporter.stop();
    assert_no_mount_left(&root);
}

/// `make dist` strips the binary: no symbol table names post_attach_mark,
/// and its programs still run once each.
#[test]
fn stripped_static_binary_runs_post_attach_mark_programs_once() {
    let Some(bin) = static_binary() else { return };
    if !bpf_available() {
        return;
    }
    let (root, wrapper) = empty_chroot(&bin);
    let exe = root.path().join("bpf-exporter");
    let strip = Command::new("strip")
        .arg("--strip-all")
        .arg(&exe)
        .status()
        .unwrap();
    assert!(strip.success(), "strip {}", exe.display());
    let sections = Command::new("readelf").arg("-S").arg(&exe).output().unwrap();
    let sections = String::from_utf8_lossy(&sections.stdout);
    assert!(!sections.contains(".symtab"), "{sections}");
    std::fs::create_dir(root.path().join("configs")).unwrap();
    crate::objects::write_post_attach_mark_configs(&root.path().join("configs"));
    let wrapper: Vec<&str> = wrapper.iter().map(String::as_str).collect();
    let exporter = Exporter::spawn_binary(
        "/bpf-exporter",
        &wrapper,
        &["--config.dir", "/configs"],
        Stdio::inherit(),
        |port| answers_ok(port, "/-/ready"),
    );
    crate::objects::assert_marked_once(&exporter);
    exporter.stop();
    assert_no_mount_left(&root);
}
