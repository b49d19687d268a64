//! The BPF build, checked without a cargo build: every shipped program
//! compiles for arm64 (a build here compiles them for this machine's
//! architecture only) with the flags a build for arm64 gives clang. The
//! name rules of `build/bpf.rs` are tested beside them, in it.

#[path = "../../build/bpf.rs"]
pub(crate) mod bpf;

use std::path::Path;
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
