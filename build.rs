//! Compiles every `bpf/*.bpf.c` with libbpf-cargo and writes two registries
//! into `OUT_DIR`, both keyed by name (`build/bpf.rs`: the file stem, `-`
//! and `.` as `_`):
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
//!
//! Every error (a bad file name, two files of one name, each program that
//! does not compile, with clang's output) is reported at once, and cargo's
//! directives are printed only after success: a failed build then shows
//! the errors first under the build script, not after its directives.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::{env, fs};

use libbpf_cargo::SkeletonBuilder;

#[path = "build/bpf.rs"]
mod bpf;

fn main() {
    let mut directives = String::new();
    match build(&mut directives) {
        Ok(()) => print!("{directives}"),
        Err(errors) => {
            eprintln!("error: {}", errors.join("\n\nerror: "));
            std::process::exit(1);
        }
    }
}

fn build(directives: &mut String) -> Result<(), Vec<String>> {
    let root = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let out = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let one = |e: String| vec![e];

    directives.push_str("cargo:rerun-if-changed=bpf\n");
    directives.push_str("cargo:rerun-if-changed=configs\n");
    directives.push_str("cargo:rerun-if-changed=tests/bpf\n");
    writeln!(directives, "cargo:rerun-if-env-changed={}", bpf::EXTRA_ARGS_VAR).unwrap();
    build_identity(&root, directives);

    let target_arch = env::var("CARGO_CFG_TARGET_ARCH").expect("cargo sets CARGO_CFG_TARGET_ARCH");
    let clang_args = bpf::clang_args(&root, bpf::arch(&target_arch).map_err(one)?).map_err(one)?;

    // Paths relative to the package, where cargo runs build scripts, so
    // that errors and clang's output name files as the user sees them.
    let mut sources: Vec<(PathBuf, bool)> = bpf::files_with_suffix(Path::new("bpf"), ".bpf.c")
        .map_err(one)?
        .into_iter()
        .map(|s| (s, false))
        .collect();
    if env::var_os("CARGO_FEATURE_TEST_PROGRAMS").is_some() {
        let tests = bpf::files_with_suffix(Path::new("tests/bpf"), ".bpf.c").map_err(one)?;
        sources.extend(tests.into_iter().map(|s| (s, true)));
    }
    let mut programs = String::from("pub static EMBEDDED_PROGRAMS: &[EmbeddedProgram] = &[\n");
    let (sources, mut errors) = bpf::named(sources, ".bpf.c");
    for (name, (source, test_only)) in sources {
        let object = out.join(format!("{name}.bpf.o"));
        match SkeletonBuilder::new()
            .source(&source)
            .obj(&object)
            .clang_args(&clang_args)
            .build()
        {
            Ok(()) => writeln!(
                programs,
                "    EmbeddedProgram {{ name: {name:?}, object: include_bytes!({object:?}), test_only: {test_only} }},"
            )
            .unwrap(),
            Err(e) => errors.push(compile_failure(&source, &*e)),
        }
    }
    programs.push_str("];\n");

    // configs/ is the default set; configs/opt-in/ ships too, but runs only
    // when named (--config.names).
    let mut files = Vec::new();
    for (dir, default) in [("configs", true), ("configs/opt-in", false)] {
        let yaml = bpf::files_with_suffix(Path::new(dir), ".yaml").map_err(one)?;
        files.extend(yaml.into_iter().map(|path| (path, default)));
    }
    let mut configs = String::from("pub static EMBEDDED_CONFIGS: &[EmbeddedConfig] = &[\n");
    let (files, config_errors) = bpf::named(files, ".yaml");
    errors.extend(config_errors);
    for (name, (path, default)) in files {
        let shown = path.to_str().expect("named() takes UTF-8 names only");
        writeln!(
            configs,
            "    EmbeddedConfig {{ name: {name:?}, path: {shown:?}, text: include_str!({:?}), default: {default} }},",
            root.join(&path)
        )
        .unwrap();
    }
    configs.push_str("];\n");
    if !errors.is_empty() {
        return Err(errors);
    }
    fs::write(out.join("programs.rs"), programs).expect("writing programs.rs");
    fs::write(out.join("configs.rs"), configs).expect("writing configs.rs");

    build_truth_target(&root, &out, directives);
    // libbpf's own headers (<bpf/bpf_helpers.h>), for the tests that build
    // an object with plain clang, as a user without libbpf-dev would.
    let libbpf = env::var("DEP_BPF_INCLUDE").expect("libbpf-sys gives its include directory");
    writeln!(directives, "cargo:rustc-env=BPF_EXPORTER_LIBBPF_INCLUDE={libbpf}").unwrap();
    Ok(())
}

/// A program that did not compile: its file, then what clang said (the
/// root of libbpf-cargo's error), then the command that failed, which is
/// long and comes last.
fn compile_failure(source: &Path, error: &(dyn std::error::Error + 'static)) -> String {
    let chain: Vec<String> = std::iter::successors(Some(error), |e| e.source())
        .map(ToString::to_string)
        .collect();
    let said = chain.last().expect("the chain starts with the error itself");
    let command = chain.iter().rev().nth(1).cloned().unwrap_or_default();
    let dir = source.parent().unwrap_or(source).display();
    format!(
        "{} does not compile (fix it, or move it out of {dir}/ to build without it); clang said:\n\n{}\n\n({command})",
        source.display(),
        said.trim_end()
    )
}

/// Compiles the truth tests' target process for the host with the clang the
/// BPF build already needs. Its probe functions must stay real calls, so it
/// is built as tests run it: optimised, with symbols.
fn build_truth_target(root: &Path, out: &Path, directives: &mut String) {
    let source = root.join("tests/target/truth_target.c");
    let binary = out.join("truth_target");
    writeln!(directives, "cargo:rerun-if-changed={}", source.display()).unwrap();
    let status = Command::new("clang")
        .args(["-O2", "-g", "-pthread", "-Wall", "-Werror", "-o"])
        .arg(&binary)
        .arg(&source)
        .status()
        .unwrap_or_else(|e| panic!("running clang for {}: {e}", source.display()));
    assert!(status.success(), "compiling {} failed", source.display());
    writeln!(
        directives,
        "cargo:rustc-env=BPF_EXPORTER_TRUTH_TARGET={}",
        binary.display()
    )
    .unwrap();
}

/// The git revision (or `unknown` outside a checkout), the compiler's
/// version and the target, as environment variables of the build.
fn build_identity(root: &Path, directives: &mut String) {
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
        writeln!(directives, "cargo:rerun-if-changed={dir}/HEAD").unwrap();
        if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
            if let Some(common) = git(&["rev-parse", "--path-format=absolute", "--git-common-dir"]) {
                writeln!(directives, "cargo:rerun-if-changed={common}/{branch}").unwrap();
                writeln!(directives, "cargo:rerun-if-changed={common}/packed-refs").unwrap();
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
    writeln!(directives, "cargo:rustc-env=BPF_EXPORTER_REVISION={revision}").unwrap();
    writeln!(directives, "cargo:rustc-env=BPF_EXPORTER_RUSTC={rustc_version}").unwrap();
    writeln!(directives, "cargo:rustc-env=BPF_EXPORTER_TARGET={target}").unwrap();
}
