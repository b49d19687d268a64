//! How the files of `bpf/`, `tests/bpf/` and `configs/` become embedded
//! programs and configs: their names, and the clang flags the programs are
//! compiled with. `build.rs` uses it, and so do the integration tests
//! (`tests/integration/bpf_build.rs`), so that their arm64 compile is the
//! one a build for arm64 runs, and the name rules are tested without a
//! build.

use std::collections::BTreeMap;
use std::env;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// Extra clang flags for every program, split at whitespace, after the
/// build's own: `-Wno-error` for a program written for a build without
/// `-Werror` (ebpf_exporter's examples are), `-DNAME=value`, `-I DIR`.
pub const EXTRA_ARGS_VAR: &str = "BPF_EXPORTER_CLANG_ARGS";

/// A target architecture as the BPF build names it.
#[derive(Debug, Clone, Copy)]
pub struct Arch {
    /// `__TARGET_ARCH_<name>` (bpf_tracing.h reads registers by it) and the
    /// directory of its `vmlinux.h`, `bpf/include/vmlinux/<name>/`.
    name: &'static str,
    /// Debian's multiarch directory under /usr/include, which holds the
    /// `asm/` headers that `<linux/*.h>` include.
    multiarch: &'static str,
}

/// The architecture of Rust's `target_arch` (`CARGO_CFG_TARGET_ARCH`).
pub fn arch(target_arch: &str) -> Result<Arch, String> {
    match target_arch {
        "x86_64" => Ok(Arch {
            name: "x86",
            multiarch: "x86_64-linux-gnu",
        }),
        "aarch64" => Ok(Arch {
            name: "arm64",
            multiarch: "aarch64-linux-gnu",
        }),
        other => Err(format!(
            "target architecture {other}: the BPF programs build for x86_64 and aarch64; another \
             needs its entry in build/bpf.rs and its bpf/include/vmlinux/<arch>/vmlinux.h"
        )),
    }
}

/// The flags every program is compiled with for `arch`, beside the ones
/// libbpf-cargo adds (`-g -O2 -target bpf`, libbpf's headers). The
/// multiarch directory comes after the system's own (`-idirafter`): with
/// `-target bpf` clang searches no architecture's directory, so
/// `<linux/errno.h>` would not find `<asm/errno.h>`, but a header the
/// system has stays the system's.
pub fn clang_args(root: &Path, arch: Arch) -> Result<Vec<OsString>, String> {
    let include = root.join("bpf/include");
    let vmlinux = include.join("vmlinux").join(arch.name);
    if !vmlinux.join("vmlinux.h").is_file() {
        return Err(format!(
            "no {}/vmlinux.h for target architecture {}: on a machine of that architecture whose \
             kernel has BTF (/sys/kernel/btf/vmlinux), run scripts/gen-vmlinux.sh (needs bpftool) \
             and commit the file it writes",
            vmlinux.display(),
            arch.name
        ));
    }
    let mut args: Vec<OsString> = vec![
        "-Wall".into(),
        "-Werror".into(),
        format!("-D__TARGET_ARCH_{}", arch.name).into(),
        "-I".into(),
        include.into(),
        "-I".into(),
        vmlinux.into(),
        "-idirafter".into(),
        Path::new("/usr/include").join(arch.multiarch).into(),
    ];
    match env::var(EXTRA_ARGS_VAR) {
        Ok(extra) => args.extend(extra.split_whitespace().map(OsString::from)),
        Err(env::VarError::NotPresent) => {}
        Err(env::VarError::NotUnicode(_)) => {
            return Err(format!("{EXTRA_ARGS_VAR} is not UTF-8: set it to clang flags"));
        }
    }
    Ok(args)
}

/// The entries of `dir` whose file names end in `suffix`, sorted; names
/// that are not UTF-8 are kept, for [`named`] to refuse.
pub fn files_with_suffix(dir: &Path, suffix: &str) -> Result<Vec<PathBuf>, String> {
    let entries = std::fs::read_dir(dir).map_err(|e| format!("reading {}: {e}", dir.display()))?;
    let mut files = Vec::new();
    for entry in entries {
        let path = entry
            .map_err(|e| format!("reading {}: {e}", dir.display()))?
            .path();
        if path
            .file_name()
            .is_some_and(|n| n.as_encoded_bytes().ends_with(suffix.as_bytes()))
        {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// `files` (each with what the caller keeps beside it) by name: the file
/// name without `suffix`, `-` and `.` as `_` (`tcp-syn-backlog.bpf.c` is
/// `tcp_syn_backlog`), as ebpf_exporter's programs are named like that and
/// names become registry keys, config names and label values. Every file
/// whose name is not then `[a-z0-9_]+`, and every two files of one name,
/// are an error; the errors come beside the files that are fine, so a build
/// can report everything else that is wrong with those as well.
pub fn named<T>(
    files: impl IntoIterator<Item = (PathBuf, T)>,
    suffix: &str,
) -> (BTreeMap<String, (PathBuf, T)>, Vec<String>) {
    let mut named: BTreeMap<String, (PathBuf, T)> = BTreeMap::new();
    let mut errors = Vec::new();
    for (path, extra) in files {
        let name = match name(&path, suffix) {
            Ok(name) => name,
            Err(e) => {
                errors.push(e);
                continue;
            }
        };
        if let Some((first, _)) = named.get(&name) {
            errors.push(format!(
                "{} and {} are both named {name} (`-` and `.` in file names become `_`): rename one",
                first.display(),
                path.display()
            ));
            continue;
        }
        named.insert(name, (path, extra));
    }
    (named, errors)
}

fn name(path: &Path, suffix: &str) -> Result<String, String> {
    let rule = || {
        format!(
            "{}: a name is the file name without {suffix}, with `-` and `.` as `_`, and must then be \
             [a-z0-9_]+: rename the file",
            path.display()
        )
    };
    let stem = path
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_suffix(suffix))
        .ok_or_else(rule)?;
    let name: String = stem
        .chars()
        .map(|c| if c == '-' || c == '.' { '_' } else { c })
        .collect();
    if name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    {
        return Err(rule());
    }
    Ok(name)
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    /// `named()` of these paths: the names and their files, and the errors.
    fn named(paths: &[PathBuf], suffix: &str) -> (Vec<(String, String)>, Vec<String>) {
        let (named, errors) = super::named(paths.iter().map(|p| (p.clone(), ())), suffix);
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
    fn names_take_dashes_and_dots_as_underscores_for_programs_and_configs_alike() {
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
    fn two_files_of_one_name_are_an_error_naming_both() {
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
    fn names_outside_a_z_0_9_are_refused_naming_the_file() {
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
}
