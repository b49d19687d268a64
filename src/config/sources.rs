//! Where configs come from: the set embedded at build time, or the
//! `<name>.yaml` files of `--config.dir`, narrowed by `--config.names`.
//!
//! Reading a directory gives a [`Listing`]: the files that could be read,
//! and the ones that could not with why. One bad entry (a directory named
//! `x.yaml`, a file that is not UTF-8, a dangling link) costs only its own
//! config, at start-up as on every reload; only a directory that cannot be
//! listed at all fails the whole read.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::bail;

/// A config shipped inside the binary, from `configs/<name>.yaml`.
#[derive(Debug)]
pub struct EmbeddedConfig {
    pub name: &'static str,
    pub path: &'static str,
    pub text: &'static str,
    /// In the set that runs when no `--config.names` are given (`configs/`);
    /// the others (`configs/opt-in/`) run only when named.
    pub default: bool,
}

/// The `--config.names` entry that stands for the default set, so opt-in
/// configs can be added to it (`default,syscall_latency`).
pub const DEFAULT_SET: &str = "default";

include!(concat!(env!("OUT_DIR"), "/configs.rs"));

/// The text of one config and where it came from.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Source {
    /// File stem; also the default program name.
    pub name: String,
    /// How errors name the file: a path, or `embedded:configs/x.yaml`.
    pub origin: String,
    pub text: String,
    /// The compiled object the config runs instead of an embedded program:
    /// the file its `object:` names, or `<name>.bpf.o` beside it.
    pub object: Option<ObjectFile>,
    /// Each pin a `pinned:` config reads and which file it is now (device
    /// and inode; `None` while absent): a pin that goes or is replaced is
    /// a change the next look at the configs applies.
    pub pins: Vec<(String, Option<(u64, u64)>)>,
}

/// A compiled BPF object read from a file. Its bytes are part of the
/// config's identity, so replacing the file is a change a reload applies.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ObjectFile {
    pub path: PathBuf,
    pub bytes: Arc<[u8]>,
}

/// The largest object file read. ebpf_exporter's compiled examples are
/// tens of KB; the largest real-world objects (with BTF) a few MB.
pub const MAX_OBJECT_BYTES: u64 = 64 << 20;

/// A config that could not be read, and why.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Unreadable {
    pub name: String,
    pub origin: String,
    pub error: String,
}

/// Every config selected: those read, and those that could not be.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Listing {
    pub sources: Vec<Source>,
    pub unreadable: Vec<Unreadable>,
    /// Objects of `--config.dir` that no config runs.
    pub ignored_objects: Vec<PathBuf>,
}

impl Listing {
    pub fn is_empty(&self) -> bool {
        self.sources.is_empty() && self.unreadable.is_empty()
    }

    /// Every config of the listing, named; sorted by name.
    pub fn names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.in_order().collect();
        names.sort_unstable();
        names
    }

    /// The names of the configs read, then of those that could not be.
    fn in_order(&self) -> impl Iterator<Item = &str> {
        self.sources
            .iter()
            .map(|s| s.name.as_str())
            .chain(self.unreadable.iter().map(|u| u.name.as_str()))
    }
}

impl From<Vec<Source>> for Listing {
    fn from(sources: Vec<Source>) -> Self {
        Listing {
            sources,
            ..Listing::default()
        }
    }
}

/// Which configs to run, as the flags say: read again on every reload.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selection {
    /// `--config.dir`; the embedded set when `None`.
    pub dir: Option<PathBuf>,
    /// `--config.names`; the default set when `None`.
    pub names: Option<Vec<String>>,
}

impl Selection {
    pub fn read(&self) -> anyhow::Result<Listing> {
        sources(self.dir.as_deref(), self.names.as_deref())
    }
}

/// The configs to run: the embedded default set, or all of `dir`; when
/// `names` are given, exactly those, where [`DEFAULT_SET`] stands for the
/// whole default set (every config of `dir`). An unknown embedded name is
/// an error that lists the known ones (the embedded set never changes, so
/// it is a typo in the flag); a name missing from `dir` is an unreadable
/// entry, as the file may come back.
pub fn sources(dir: Option<&Path>, names: Option<&[String]>) -> anyhow::Result<Listing> {
    let (all, default_set) = match dir {
        None => {
            let all = Listing::from(
                EMBEDDED_CONFIGS
                    .iter()
                    .map(|c| Source {
                        name: c.name.to_string(),
                        origin: format!("embedded:{}", c.path),
                        text: c.text.to_string(),
                        object: None,
                        pins: Vec::new(),
                    })
                    .collect::<Vec<_>>(),
            );
            let default_set = all
                .sources
                .iter()
                .zip(EMBEDDED_CONFIGS)
                .filter(|(_, c)| c.default)
                .map(|(s, _)| s.clone())
                .collect::<Vec<_>>();
            (all, Some(Listing::from(default_set)))
        }
        // Every config of a directory is in its default set.
        Some(dir) => (read_dir(dir)?, None),
    };
    let Some(names) = names else {
        return Ok(default_set.unwrap_or(all));
    };
    let default_set = default_set.as_ref().unwrap_or(&all);
    let mut selected = Listing {
        ignored_objects: all.ignored_objects.clone(),
        ..Listing::default()
    };
    for name in names {
        if name == DEFAULT_SET {
            for name in default_set.in_order() {
                select(&all, &mut selected, name);
            }
            continue;
        }
        if select(&all, &mut selected, name) {
            continue;
        }
        match dir {
            None => bail!(
                "--config.names: no config named {name:?} in the embedded set (known: {}; {DEFAULT_SET} \
                 stands for the default set)",
                all.sources
                    .iter()
                    .map(|s| s.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Some(dir) => selected.unreadable.push(Unreadable {
                name: name.clone(),
                origin: dir.join(format!("{name}.yaml")).display().to_string(),
                error: format!(
                    "--config.names names {name:?}, but --config.dir {} has no {name}.yaml (it has: {})",
                    dir.display(),
                    all.names().join(", ")
                ),
            }),
        }
    }
    Ok(selected)
}

/// Adds config `name` of `all` to `selected` once; false if `all` has none.
fn select(all: &Listing, selected: &mut Listing, name: &str) -> bool {
    if selected.in_order().any(|n| n == name) {
        return true;
    }
    if let Some(source) = all.sources.iter().find(|s| s.name == name) {
        selected.sources.push(source.clone());
    } else if let Some(bad) = all.unreadable.iter().find(|u| u.name == name) {
        selected.unreadable.push(bad.clone());
    } else {
        return false;
    }
    true
}

/// The `*.yaml` entries of `dir`, sorted by name. An empty directory is an
/// empty listing: running nothing is the caller's call.
fn read_dir(dir: &Path) -> anyhow::Result<Listing> {
    let shown = dir.display();
    let entries = std::fs::read_dir(dir).map_err(|e| {
        let why = match e.raw_os_error() {
            Some(libc::ENOENT) => "it does not exist (deleted, or not mounted yet?)".to_string(),
            Some(libc::ENOTDIR) => "it is not a directory".to_string(),
            Some(libc::EMFILE | libc::ENFILE) => {
                format!("out of file descriptors ({e}); raise the open-file limit (ulimit -n, LimitNOFILE=)")
            }
            _ => e.to_string(),
        };
        anyhow::anyhow!("--config.dir {shown}: cannot read the directory: {why}")
    })?;
    let mut listing = Listing::default();
    for entry in entries {
        let entry =
            entry.map_err(|e| anyhow::anyhow!("--config.dir {shown}: cannot list the directory: {e}"))?;
        let file_name = entry.file_name();
        let lossy = file_name.to_string_lossy();
        let Some(stem) = lossy.strip_suffix(".yaml") else {
            continue;
        };
        let path = entry.path();
        let origin = path.display().to_string();
        let name = stem.to_string();
        if file_name.to_str().is_none() {
            listing.unreadable.push(Unreadable {
                name,
                origin,
                error: "the file name is not UTF-8: rename it (config names become label values)".into(),
            });
            continue;
        }
        let read = read_limited(&path)
            .map_err(|e| format!("{origin}: {}", unreadable(&path, &e)))
            .and_then(|text| {
                let object = object_of(dir, &name, &text)?;
                Ok(Source {
                    name: name.clone(),
                    origin: origin.clone(),
                    pins: pins_of(&text),
                    text,
                    object,
                })
            });
        match read {
            Ok(source) => listing.sources.push(source),
            Err(error) => listing.unreadable.push(Unreadable { name, origin, error }),
        }
    }
    listing.ignored_objects = objects_without_config(dir, &listing);
    listing.sources.sort_by(|a, b| a.name.cmp(&b.name));
    listing.unreadable.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(listing)
}

/// The object config `name` (text `text`, in `dir`) runs, if a file: the
/// one its `object:` names (relative to `dir`), else `<name>.bpf.o` beside
/// it unless `program:` names an embedded program. ebpf_exporter's layout
/// is a `.yaml` beside its `.bpf.o`, so that object wins over an embedded
/// program of the same name: it is what the user put there to run.
fn object_of(dir: &Path, name: &str, text: &str) -> Result<Option<ObjectFile>, String> {
    let keys = super::yaml::program_keys(text);
    let path = match (&keys.object, &keys.program) {
        (Some(object), _) => dir.join(object),
        (None, Some(_)) => return Ok(None),
        (None, None) => {
            let beside = dir.join(format!("{name}.bpf.o"));
            if std::fs::symlink_metadata(&beside).is_err() {
                return Ok(None);
            }
            beside
        }
    };
    read_object(&path).map(Some).map_err(|e| {
        format!(
            "{}: {}",
            path.display(),
            unreadable(&path, &e).replace("config file", "BPF object")
        )
    })
}

/// Where each pin of a `pinned:` config stands now.
fn pins_of(text: &str) -> Vec<(String, Option<(u64, u64)>)> {
    use std::os::unix::fs::MetadataExt as _;
    let pinned = super::yaml::program_keys(text).pinned.unwrap_or_default();
    pinned
        .into_values()
        .map(|path| {
            let id = std::fs::metadata(&path).ok().map(|m| (m.dev(), m.ino()));
            (path, id)
        })
        .collect()
}

/// The bytes of the object at `path`, refused unread beyond
/// [`MAX_OBJECT_BYTES`].
fn read_object(path: &Path) -> io::Result<ObjectFile> {
    Ok(ObjectFile {
        path: path.to_path_buf(),
        bytes: read_capped(path, MAX_OBJECT_BYTES, "a BPF object")?.into(),
    })
}

/// The `*.bpf.o` files of `dir` no config runs: a `.bpf.o` without its
/// `.yaml` does nothing, and saying so beats silence.
fn objects_without_config(dir: &Path, listing: &Listing) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let used: Vec<&Path> = listing
        .sources
        .iter()
        .filter_map(|s| s.object.as_ref().map(|o| o.path.as_path()))
        .collect();
    let mut ignored: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.to_str().is_some_and(|p| p.ends_with(".bpf.o")))
        .filter(|p| {
            let stem = p
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".bpf.o"));
            !used.contains(&p.as_path())
                && !stem.is_some_and(|stem| listing.unreadable.iter().any(|u| u.name == stem))
        })
        .collect();
    ignored.sort();
    ignored
}

/// The largest config file read. ebpf_exporter's biggest configs are a
/// few KB; a file of megabytes is a mistake (a log, a dump) that would cost
/// hundreds of MB resident and a page of the same size.
pub const MAX_CONFIG_BYTES: u64 = 1 << 20;

/// `path` as UTF-8 text, refused without reading it all when it is bigger
/// than [`MAX_CONFIG_BYTES`] (an `ErrorKind::FileTooLarge` error).
pub(crate) fn read_limited(path: &Path) -> io::Result<String> {
    String::from_utf8(read_capped(path, MAX_CONFIG_BYTES, "a config file")?)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// The bytes of `path`, refused (`ErrorKind::FileTooLarge`) without
/// reading it all when it is bigger than `max`: a file of `what` that big
/// is a mistake.
fn read_capped(path: &Path, max: u64, what: &str) -> io::Result<Vec<u8>> {
    use std::io::Read as _;
    let file = std::fs::File::open(path)?;
    let size = file.metadata()?.len();
    let mut bytes = Vec::new();
    // `take` too: the file may grow between the check and the read.
    file.take(max + 1).read_to_end(&mut bytes)?;
    if size > max || bytes.len() as u64 > max {
        return Err(io::Error::new(
            io::ErrorKind::FileTooLarge,
            format!(
                "{} bytes, more than the {max} {what} can be: is it the right file?",
                size.max(bytes.len() as u64)
            ),
        ));
    }
    Ok(bytes)
}

/// Why a config file could not be read, with what to do.
fn unreadable(path: &Path, e: &io::Error) -> String {
    if e.kind() == io::ErrorKind::FileTooLarge {
        return e.to_string();
    }
    match e.raw_os_error() {
        Some(libc::EISDIR) => {
            "a directory, not a config file: move it out of --config.dir or rename it".into()
        }
        Some(libc::ELOOP) => "a loop of symbolic links: point the link at a file".into(),
        Some(libc::ENOENT) => format!(
            "a dangling symbolic link (to {}): point it at a file or remove it",
            std::fs::read_link(path).map_or_else(|_| "?".into(), |t| t.display().to_string())
        ),
        Some(libc::EMFILE | libc::ENFILE) => {
            format!("cannot open it, out of file descriptors ({e}); raise the open-file limit")
        }
        Some(libc::EACCES) => format!("cannot read it ({e}): let the exporter's user read it"),
        _ if e.kind() == io::ErrorKind::InvalidData => "not UTF-8 text: a config is a UTF-8 YAML file".into(),
        _ => format!("cannot read it: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Used to: a 50 MB YAML file was read whole and accepted (213 MB
    /// resident, a 52 MB `/metrics`).
    #[test]
    fn an_oversized_config_is_refused_unread_and_the_others_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let big = dir.path().join("big.yaml");
        let file = std::fs::File::create(&big).unwrap();
        file.set_len(50 << 20).unwrap();
        std::fs::write(dir.path().join("small.yaml"), "metrics: {}\n").unwrap();
        let listing = sources(Some(dir.path()), None).unwrap();
        assert_eq!(names(&listing), ["small"]);
        let error = &listing.unreadable[0].error;
        assert!(
            error.contains("big.yaml: 52428800 bytes, more than the 1048576"),
            "{error}"
        );
    }

    fn names(listing: &Listing) -> Vec<&str> {
        listing.sources.iter().map(|s| s.name.as_str()).collect()
    }

    fn embedded(default: bool) -> Vec<&'static str> {
        EMBEDDED_CONFIGS
            .iter()
            .filter(|c| c.default == default)
            .map(|c| c.name)
            .collect()
    }

    #[test]
    fn without_names_the_default_set_runs_and_opt_in_configs_do_not() {
        let opt_in = embedded(false);
        assert!(opt_in.contains(&"syscall_latency"), "{opt_in:?}");
        assert_eq!(names(&sources(None, None).unwrap()), embedded(true));
    }

    #[test]
    fn default_in_names_stands_for_the_default_set_once() {
        let wanted: Vec<String> = ["syscalls", "default", "syscall_latency", "syscalls"]
            .map(String::from)
            .into();
        let mut expected = vec!["syscalls"];
        expected.extend(embedded(true).into_iter().filter(|n| *n != "syscalls"));
        expected.push("syscall_latency");
        assert_eq!(names(&sources(None, Some(&wanted)).unwrap()), expected);
    }

    #[test]
    fn an_unknown_name_lists_every_embedded_config() {
        let err = sources(None, Some(&["sycalls".to_string()]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("no config named \"sycalls\""), "{err}");
        assert!(
            err.contains("syscall_latency") && err.contains("default stands for"),
            "{err}"
        );
    }

    #[test]
    fn every_config_of_a_directory_is_in_its_default_set() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["a", "b"] {
            std::fs::write(dir.path().join(format!("{name}.yaml")), "metrics: {}\n").unwrap();
        }
        let all = sources(Some(dir.path()), None).unwrap();
        let named = sources(Some(dir.path()), Some(&["default".to_string()])).unwrap();
        assert_eq!(names(&all), ["a", "b"]);
        assert_eq!(all, named);
    }

    /// Each of these used to stop the exporter at start-up and to stop
    /// every reload, unreported, while it was there.
    #[test]
    fn a_bad_entry_costs_only_its_own_config() {
        use std::os::unix::ffi::OsStrExt;
        let dir = tempfile::tempdir().unwrap();
        let path = |name: &str| dir.path().join(name);
        std::fs::write(path("good.yaml"), "metrics: {}\n").unwrap();
        std::fs::create_dir(path("subdir.yaml")).unwrap();
        std::fs::write(path("latin1.yaml"), b"help: caf\xe9\n").unwrap();
        std::os::unix::fs::symlink("loop.yaml", path("loop.yaml")).unwrap();
        std::os::unix::fs::symlink("nowhere", path("dangling.yaml")).unwrap();
        let odd = std::ffi::OsStr::from_bytes(b"odd\xff.yaml");
        std::fs::write(dir.path().join(odd), "metrics: {}\n").unwrap();
        std::fs::write(path("notes.txt"), "not a config").unwrap();

        let listing = sources(Some(dir.path()), None).unwrap();
        assert_eq!(names(&listing), ["good"]);
        let why = |name: &str| {
            listing
                .unreadable
                .iter()
                .find(|u| u.name == name)
                .unwrap_or_else(|| panic!("{name} is not listed: {listing:?}"))
                .error
                .clone()
        };
        assert!(
            why("subdir").contains("a directory, not a config file"),
            "{}",
            why("subdir")
        );
        assert!(why("latin1").contains("not UTF-8 text"), "{}", why("latin1"));
        assert!(
            why("loop").contains("a loop of symbolic links"),
            "{}",
            why("loop")
        );
        assert!(
            why("dangling").contains("dangling symbolic link (to nowhere)"),
            "{}",
            why("dangling")
        );
        assert!(
            why("odd\u{fffd}").contains("file name is not UTF-8"),
            "{}",
            why("odd\u{fffd}")
        );
        assert!(why("subdir").starts_with(&path("subdir.yaml").display().to_string()));
        assert_eq!(listing.unreadable.len(), 5, "{listing:?}");
    }

    #[test]
    fn a_directory_that_cannot_be_listed_fails_the_whole_read_and_says_why() {
        let dir = tempfile::tempdir().unwrap();
        let gone = dir.path().join("configs");
        let err = sources(Some(&gone), None).unwrap_err().to_string();
        assert!(
            err.contains("cannot read the directory: it does not exist"),
            "{err}"
        );
        std::fs::write(&gone, "a file").unwrap();
        let err = sources(Some(&gone), None).unwrap_err().to_string();
        assert!(err.contains("it is not a directory"), "{err}");
    }

    #[test]
    fn an_empty_directory_is_an_empty_listing() {
        let dir = tempfile::tempdir().unwrap();
        assert!(sources(Some(dir.path()), None).unwrap().is_empty());
    }

    #[test]
    fn a_name_missing_from_the_directory_is_an_unreadable_entry_not_an_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.yaml"), "metrics: {}\n").unwrap();
        let wanted = ["a".to_string(), "b".to_string()];
        let listing = sources(Some(dir.path()), Some(&wanted)).unwrap();
        assert_eq!(names(&listing), ["a"]);
        assert_eq!(listing.unreadable.len(), 1);
        assert!(
            listing.unreadable[0].error.contains("has no b.yaml (it has: a)"),
            "{listing:?}"
        );
    }

    /// Operators choose programs from their config headers: what each
    /// measures, its series count, what the kernel must have, what an event
    /// costs, and for an opt-in config why it is not on by default.
    #[test]
    fn every_embedded_config_documents_labels_kernel_and_cost() {
        for config in EMBEDDED_CONFIGS {
            let header: Vec<&str> = config.text.lines().take_while(|l| l.starts_with('#')).collect();
            let mut wanted = vec!["# Labels:", "# Kernel:"];
            if !config.default {
                wanted.push("# Opt-in:");
            }
            for field in wanted {
                assert!(
                    header.iter().any(|l| l.starts_with(field)),
                    "{}: the header comment has no line starting {field:?}",
                    config.path
                );
            }
            let measured = header.iter().any(|l| {
                l.strip_prefix("# Cost: ~")
                    .is_some_and(|figure| figure.starts_with(|c: char| c.is_ascii_digit()))
            });
            assert!(measured, "{}: no \"# Cost: ~<figure>\" line", config.path);
        }
    }
}
