//! Compiles every `bpf/*.bpf.c` with libbpf-cargo and writes two registries
//! into `OUT_DIR`, both keyed by file stem:
//!
//! - `programs.rs`: the compiled BPF objects (ELF bytes, BTF included),
//!   from `bpf/` and, marked test-only, from `tests/bpf/` when the
//!   `test-programs` feature is on (test and bench builds only: the
//!   shipped binary carries no program that, say, drops every packet);
//! - `configs.rs`: the YAML files of `configs/` (the default set) and of
//!   `configs/opt-in/` (shipped, run only when named).
//!
//! It also hands the build's identity to the code (`BPF_EXPORTER_REVISION`,
//! `BPF_EXPORTER_RUSTC`, `BPF_EXPORTER_TARGET`, for `--version` and
//! `bpf_exporter_build_info`), and builds `tests/target/truth_target.c`, the process the truth tests
//! probe, and hands its path to them as `BPF_EXPORTER_TRUTH_TARGET`.
//!
//! The objects are embedded whole rather than as typed skeleton structs:
//! the metrics layer finds maps and programs by name from the config, so a
//! new program needs no Rust code, only `bpf/<name>.bpf.c` and
//! `configs/<name>.yaml`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::{env, fs};

use libbpf_cargo::SkeletonBuilder;

fn main() {
    let root = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let out = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let include = root.join("bpf/include");
    let vmlinux = vmlinux_dir(&include);

    println!("cargo:rerun-if-changed=bpf");
    println!("cargo:rerun-if-changed=configs");
    println!("cargo:rerun-if-changed=tests/bpf");
    build_identity(&root);

    let test_programs = match env::var_os("CARGO_FEATURE_TEST_PROGRAMS") {
        Some(_) => files_with_suffix(&root.join("tests/bpf"), ".bpf.c"),
        None => Vec::new(),
    };
    let sources = files_with_suffix(&root.join("bpf"), ".bpf.c")
        .into_iter()
        .map(|s| (s, false))
        .chain(test_programs.into_iter().map(|s| (s, true)));
    let mut programs = String::from("pub static EMBEDDED_PROGRAMS: &[EmbeddedProgram] = &[\n");
    for (source, test_only) in sources {
        let name = stem(&source, ".bpf.c");
        let object = out.join(format!("{name}.bpf.o"));
        SkeletonBuilder::new()
            .source(&source)
            .obj(&object)
            .clang_args([
                "-Wall".into(),
                "-Werror".into(),
                "-I".into(),
                include.clone().into_os_string(),
                "-I".into(),
                vmlinux.clone().into_os_string(),
            ])
            .build()
            .unwrap_or_else(|e| panic!("compiling {}: {e:#}", source.display()));
        writeln!(
            programs,
            "    EmbeddedProgram {{ name: {name:?}, object: include_bytes!({object:?}), test_only: {test_only} }},"
        )
        .unwrap();
    }
    programs.push_str("];\n");
    fs::write(out.join("programs.rs"), programs).expect("writing programs.rs");

    // configs/ is the default set; configs/opt-in/ ships too, but runs only
    // when named (--config.names).
    let mut configs = String::from("pub static EMBEDDED_CONFIGS: &[EmbeddedConfig] = &[\n");
    let mut names = std::collections::BTreeSet::new();
    for (dir, default) in [("configs", true), ("configs/opt-in", false)] {
        for path in files_with_suffix(&root.join(dir), ".yaml") {
            let name = stem(&path, ".yaml");
            assert!(
                names.insert(name.clone()),
                "{}: a config named {name} is already in configs/ or configs/opt-in/",
                path.display()
            );
            writeln!(
                configs,
                "    EmbeddedConfig {{ name: {name:?}, path: \"{dir}/{name}.yaml\", text: include_str!({path:?}), default: {default} }},"
            )
            .unwrap();
        }
    }
    configs.push_str("];\n");
    fs::write(out.join("configs.rs"), configs).expect("writing configs.rs");

    build_truth_target(&root, &out);
    // libbpf's own headers (<bpf/bpf_helpers.h>), for the tests that build
    // an object with plain clang, as a user without libbpf-dev would.
    let libbpf = env::var("DEP_BPF_INCLUDE").expect("libbpf-sys gives its include directory");
    println!("cargo:rustc-env=BPF_EXPORTER_LIBBPF_INCLUDE={libbpf}");
}

/// Compiles the truth tests' target process for the host with the clang the
/// BPF build already needs. Its probe functions must stay real calls, so it
/// is built as tests run it: optimised, with symbols.
fn build_truth_target(root: &Path, out: &Path) {
    let source = root.join("tests/target/truth_target.c");
    let binary = out.join("truth_target");
    println!("cargo:rerun-if-changed={}", source.display());
    let status = Command::new("clang")
        .args(["-O2", "-g", "-pthread", "-Wall", "-Werror", "-o"])
        .arg(&binary)
        .arg(&source)
        .status()
        .unwrap_or_else(|e| panic!("running clang for {}: {e}", source.display()));
    assert!(status.success(), "compiling {} failed", source.display());
    println!("cargo:rustc-env=BPF_EXPORTER_TRUTH_TARGET={}", binary.display());
}

/// The committed `vmlinux.h` for the target architecture. Stops the build
/// with instructions when there is none.
/// The git revision (or `unknown` outside a checkout), the compiler's
/// version and the target, as environment variables of the build.
fn build_identity(root: &Path) {
    let git = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .current_dir(root)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    let revision = git(&["rev-parse", "--short=12", "HEAD"]).unwrap_or_else(|| "unknown".into());
    // A new commit moves HEAD or the branch it names: look again then.
    if let Some(dir) = git(&["rev-parse", "--absolute-git-dir"]) {
        println!("cargo:rerun-if-changed={dir}/HEAD");
        if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
            if let Some(common) = git(&["rev-parse", "--path-format=absolute", "--git-common-dir"]) {
                println!("cargo:rerun-if-changed={common}/{branch}");
                println!("cargo:rerun-if-changed={common}/packed-refs");
            }
        }
    }
    let rustc = env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let rustc_version = Command::new(rustc)
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|v| v.split_whitespace().nth(1).map(str::to_string))
        .unwrap_or_else(|| "unknown".into());
    let target = env::var("TARGET").unwrap_or_else(|_| "unknown".into());
    println!("cargo:rustc-env=BPF_EXPORTER_REVISION={revision}");
    println!("cargo:rustc-env=BPF_EXPORTER_RUSTC={rustc_version}");
    println!("cargo:rustc-env=BPF_EXPORTER_TARGET={target}");
}

fn vmlinux_dir(include: &Path) -> PathBuf {
    let arch = env::var("CARGO_CFG_TARGET_ARCH").expect("cargo sets CARGO_CFG_TARGET_ARCH");
    let dir = match arch.as_str() {
        "x86_64" => "x86",
        "aarch64" => "arm64",
        other => other,
    };
    let path = include.join("vmlinux").join(dir);
    if !path.join("vmlinux.h").is_file() {
        panic!(
            "no {}/vmlinux.h for target architecture {arch}: on a {arch} machine whose kernel \
             has BTF (/sys/kernel/btf/vmlinux), run scripts/gen-vmlinux.sh (needs bpftool) \
             and commit the file it writes",
            path.display()
        );
    }
    path
}

fn files_with_suffix(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|entry| entry.expect("reading directory entry").path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.ends_with(suffix))
        })
        .collect();
    files.sort();
    files
}

/// The file name without `suffix`; names become registry keys, config names
/// and metric-adjacent identifiers, so they are kept to `[a-z0-9_]`.
fn stem(path: &Path, suffix: &str) -> String {
    let file = path
        .file_name()
        .and_then(|n| n.to_str())
        .expect("UTF-8 file name");
    let name = file.strip_suffix(suffix).expect("filtered by suffix");
    assert!(
        !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
        "{}: file names must be [a-z0-9_]+ followed by {suffix}",
        path.display()
    );
    name.to_string()
}
