//! The BPF build, checked without a cargo build: every shipped program
//! compiles for arm64 (a build here compiles them for this machine's
//! architecture only) with the flags a build for arm64 gives clang, and
//! file names become program and config names by the rules of
//! `build/bpf.rs`.

#[path = "../../build/bpf.rs"]
mod bpf;

use std::path::{Path, PathBuf};
use std::process::Command;

/// ELF `e_machine` of BPF objects.
const EM_BPF: u16 = 247;

/// libbpf's headers as libbpf-cargo hands them to the build, as `bpf/*.h`
/// under `dir`.
fn libbpf_headers(dir: &Path) {
    let headers = dir.join("bpf");
    std::fs::create_dir(&headers).unwrap();
    for (name, text) in libbpf_sys::API_HEADERS {
        std::fs::write(headers.join(name), text).unwrap();
    }
}

#[test]
fn every_shipped_program_compiles_for_arm64() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let args = bpf::clang_args(root, bpf::arch("aarch64").unwrap()).unwrap();
    let out = tempfile::tempdir().unwrap();
    libbpf_headers(out.path());
    let sources = bpf::files_with_suffix(&root.join("bpf"), ".bpf.c").unwrap();
    let (programs, errors) = bpf::named(sources.into_iter().map(|s| (s, ())), ".bpf.c");
    assert!(errors.is_empty(), "{errors:?}");
    assert!(programs.len() >= 10, "only {programs:?} in bpf/");

    // All at once: each takes a few hundred ms, most of it parsing vmlinux.h.
    let failures: Vec<String> = std::thread::scope(|scope| {
        let runs: Vec<_> = programs
            .iter()
            .map(|(name, (source, ()))| {
                let object = out.path().join(format!("{name}.bpf.o"));
                let mut clang = Command::new("clang");
                // In libbpf-cargo's order.
                clang
                    .args(&args)
                    .arg("-I")
                    .arg(out.path())
                    .args(["-fno-stack-protector", "-g", "-O2", "-target", "bpf", "-c"])
                    .arg(source)
                    .arg("-o")
                    .arg(&object);
                scope.spawn(move || check(clang, source, &object))
            })
            .collect();
        runs.into_iter().filter_map(|run| run.join().unwrap()).collect()
    });
    assert!(failures.is_empty(), "for arm64:\n\n{}", failures.join("\n\n"));
}

/// Runs `clang`; what went wrong with `source`, if anything.
fn check(mut clang: Command, source: &Path, object: &Path) -> Option<String> {
    let output = clang
        .output()
        .unwrap_or_else(|e| panic!("running clang (make deps installs it): {e}"));
    if !output.status.success() {
        return Some(format!(
            "{} does not compile ({}):\n{}",
            source.display(),
            output.status,
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    let elf = std::fs::read(object).unwrap();
    let machine = elf.get(18..20).map(|m| u16::from_le_bytes([m[0], m[1]]));
    (machine != Some(EM_BPF))
        .then(|| format!("{}: not a BPF object: e_machine {machine:?}", source.display()))
}

/// `named()` of these paths: the names and their files, and the errors.
fn named(paths: &[PathBuf], suffix: &str) -> (Vec<(String, String)>, Vec<String>) {
    let (named, errors) = bpf::named(paths.iter().map(|p| (p.clone(), ())), suffix);
    let named = named
        .into_iter()
        .map(|(name, (path, ()))| (name, path.display().to_string()))
        .collect();
    (named, errors)
}

fn paths(names: &[&str]) -> Vec<PathBuf> {
    names.iter().map(PathBuf::from).collect()
}

#[test]
fn bpf_build_names_take_dashes_and_dots_as_underscores_for_programs_and_configs_alike() {
    let (programs, errors) = named(
        &paths(&[
            "bpf/cachestat.v2.bpf.c",
            "bpf/execs.bpf.c",
            "bpf/tcp-syn-backlog.bpf.c",
        ]),
        ".bpf.c",
    );
    assert!(errors.is_empty(), "{errors:?}");
    let pair = |name: &str, path: &str| (name.to_string(), path.to_string());
    assert_eq!(
        programs,
        [
            pair("cachestat_v2", "bpf/cachestat.v2.bpf.c"),
            pair("execs", "bpf/execs.bpf.c"),
            pair("tcp_syn_backlog", "bpf/tcp-syn-backlog.bpf.c"),
        ]
    );
    // The config that pairs with a program maps the same way.
    let (configs, errors) = named(
        &paths(&["configs/cachestat.v2.yaml", "configs/tcp-syn-backlog.yaml"]),
        ".yaml",
    );
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(
        configs,
        [
            pair("cachestat_v2", "configs/cachestat.v2.yaml"),
            pair("tcp_syn_backlog", "configs/tcp-syn-backlog.yaml"),
        ]
    );
}

#[test]
fn bpf_build_two_files_of_one_name_are_an_error_naming_both() {
    let (programs, errors) = named(
        &paths(&[
            "bpf/a-b.bpf.c",
            "bpf/a.b.bpf.c",
            "bpf/a_b.bpf.c",
            "bpf/other.bpf.c",
        ]),
        ".bpf.c",
    );
    assert_eq!(
        errors,
        [
            "bpf/a-b.bpf.c and bpf/a.b.bpf.c are both named a_b (`-` and `.` in file names become `_`): \
             rename one",
            "bpf/a-b.bpf.c and bpf/a_b.bpf.c are both named a_b (`-` and `.` in file names become `_`): \
             rename one",
        ]
    );
    // The rest still come out, for the build to report their own errors.
    let names: Vec<&str> = programs.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["a_b", "other"]);
}

#[test]
fn bpf_build_names_outside_a_z_0_9_are_refused_naming_the_file() {
    use std::os::unix::ffi::OsStrExt;
    let odd = PathBuf::from(std::ffi::OsStr::from_bytes(b"bpf/odd\xff.bpf.c"));
    let mut files = paths(&[
        "bpf/Caps.bpf.c",
        "bpf/.bpf.c",
        "bpf/with space.bpf.c",
        "bpf/fine.bpf.c",
    ]);
    files.push(odd);
    let (programs, errors) = named(&files, ".bpf.c");
    assert_eq!(programs, [("fine".to_string(), "bpf/fine.bpf.c".to_string())]);
    let rule = "a name is the file name without .bpf.c, with `-` and `.` as `_`, and must then be \
                [a-z0-9_]+: rename the file";
    let expected: Vec<String> = [
        "bpf/Caps.bpf.c",
        "bpf/.bpf.c",
        "bpf/with space.bpf.c",
        "bpf/odd\u{fffd}.bpf.c",
    ]
    .iter()
    .map(|file| format!("{file}: {rule}"))
    .collect();
    assert_eq!(errors, expected);
}
