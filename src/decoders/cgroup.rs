//! `cgroup`: a cgroup id in decimal (the output of `uint` over the `u64`
//! from `bpf_get_current_cgroup_id()`) → the cgroup's path, e.g.
//! `/sys/fs/cgroup/system.slice/ssh.service`.
//!
//! The path is absolute, mount point included, as ebpf_exporter prints it,
//! so its label values carry over. An id no cgroup has becomes
//! `unknown_cgroup_id:<id>`, as in ebpf_exporter. Input that is not a
//! decimal `u64` is an error.
//!
//! BPF gets cgroup v2 ids (the inode numbers of cgroup2 directories) even
//! on hybrid hosts, where the v1 controllers are mounted too and cgroup2
//! sits at e.g. `/sys/fs/cgroup/unified`. So only the cgroup2 mount is
//! walked, wherever `/proc/self/mountinfo` says it is: walking all of
//! `/sys/fs/cgroup`, as ebpf_exporter does (its issue #613), mixes in v1
//! hierarchies whose inode numbers collide with v2 ids (each v1 root is
//! inode 1, like the v2 root). With no cgroup2 mount the decoder refuses to
//! build: no id could ever resolve. Run in a cgroup namespace, only that
//! namespace's part of the tree is visible.
//!
//! Ids are never reused (on 64-bit kernels), so paths are kept once found
//! (a deleted cgroup's rows keep their name) and an id a walk did not find
//! stays unknown for good; both sets are bounded. Cgroups are created all
//! the time, so an id not yet seen walks the tree again, at most every
//! [`WALK_AT_MOST_EVERY`]: a burst of new ids costs one walk, and any id
//! looked up before a walk is settled by it.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::io;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::{DecodeError, Decoder, DecoderOptions};

const MOUNTINFO: &str = "/proc/self/mountinfo";

/// The shortest time between two walks of the tree.
const WALK_AT_MOST_EVERY: Duration = Duration::from_secs(1);

/// Ids known to be unknown kept at most; past it they are forgotten (and
/// would each cost one more walk).
const MAX_UNKNOWN: usize = 65_536;

struct Cgroup {
    /// The cgroup2 mount point; a scratch tree in tests.
    root: PathBuf,
    walk_every: Duration,
    state: Mutex<State>,
}

impl std::fmt::Debug for Cgroup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cgroup")
            .field("root", &self.root)
            .finish_non_exhaustive()
    }
}

#[derive(Default)]
struct State {
    /// Id → path, from every walk so far.
    paths: HashMap<u64, Vec<u8>>,
    /// How many cgroups the last walk found.
    live: usize,
    /// Ids looked up since the last walk and not found.
    pending: HashSet<u64>,
    /// Ids a walk made after they were looked up did not find.
    unknown: HashSet<u64>,
    walked_at: Option<Instant>,
}

pub(super) fn build(options: &DecoderOptions) -> Result<Box<dyn Decoder>, String> {
    options.only("cgroup", &[])?;
    let mountinfo =
        fs::read_to_string(MOUNTINFO).map_err(|e| format!("cgroup decoder: reading {MOUNTINFO}: {e}"))?;
    let root = cgroup2_mount(&mountinfo).ok_or_else(|| {
        format!(
            "cgroup decoder: no cgroup2 filesystem is mounted (none in {MOUNTINFO}), and BPF reports \
             cgroup v2 ids: mount one, e.g. `mount -t cgroup2 none /sys/fs/cgroup/unified`"
        )
    })?;
    Ok(Box::new(Cgroup::new(root, WALK_AT_MOST_EVERY)))
}

impl Cgroup {
    fn new(root: PathBuf, walk_every: Duration) -> Self {
        Cgroup {
            root,
            walk_every,
            state: Mutex::new(State::default()),
        }
    }

    /// Walks the tree (when the last walk is old enough) and settles the
    /// pending ids.
    fn settle(&self, state: &mut State) -> Result<(), DecodeError> {
        if state.walked_at.is_some_and(|at| at.elapsed() < self.walk_every) {
            return Ok(());
        }
        state.walked_at = Some(Instant::now());
        let found = walk(&self.root).map_err(|e| {
            DecodeError::Invalid(format!("cgroup decoder: walking {}: {e}", self.root.display()))
        })?;
        state.live = found.len();
        // Deleted cgroups keep their names, until they outnumber the live
        // ones (plus some slack for small trees).
        if state.paths.len() + found.len() > 2 * state.live + 1024 {
            state.paths.clear();
        }
        state.paths.extend(found);
        if state.unknown.len() + state.pending.len() > MAX_UNKNOWN {
            state.unknown.clear();
        }
        for id in state.pending.drain() {
            if !state.paths.contains_key(&id) {
                state.unknown.insert(id);
            }
        }
        Ok(())
    }
}

impl Decoder for Cgroup {
    fn decode(&self, input: &[u8]) -> Result<Vec<u8>, DecodeError> {
        let id = std::str::from_utf8(input)
            .ok()
            .and_then(|s| s.parse::<u64>().ok())
            .ok_or_else(|| {
                DecodeError::Invalid(format!(
                    "cgroup decoder: expected a decimal cgroup id, got {} (put `uint` before `cgroup`)",
                    super::quoted(input)
                ))
            })?;
        // A poisoned lock only means another decode panicked; the maps are
        // still consistent.
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if !state.paths.contains_key(&id) && !state.unknown.contains(&id) {
            state.pending.insert(id);
            self.settle(&mut state)?;
        }
        Ok(match state.paths.get(&id) {
            Some(path) => path.clone(),
            None => format!("unknown_cgroup_id:{id}").into_bytes(),
        })
    }

    /// Cgroups are created and removed all the time.
    fn answer_can_change(&self) -> bool {
        true
    }
}

/// Every directory under `root`, `root` included, by inode number → its
/// path. Directories that vanish or cannot be read mid-walk are skipped;
/// only an unreadable `root` is an error.
fn walk(root: &Path) -> io::Result<HashMap<u64, Vec<u8>>> {
    let mut found = HashMap::new();
    found.insert(fs::metadata(root)?.ino(), root.as_os_str().as_bytes().to_vec());
    let mut dirs = vec![fs::read_dir(root)?];
    while let Some(entries) = dirs.pop() {
        for entry in entries.flatten() {
            // From the directory entry: no stat for the many control files.
            if !entry.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            let path = entry.path();
            let Ok(meta) = entry.metadata() else {
                continue;
            };
            if let Ok(children) = fs::read_dir(&path) {
                dirs.push(children);
            }
            found.insert(meta.ino(), path.into_os_string().into_vec());
        }
    }
    Ok(found)
}

/// Where the cgroup2 filesystem is mounted on this host, if it is.
pub fn cgroup2_root() -> Option<PathBuf> {
    cgroup2_mount(&std::fs::read_to_string(MOUNTINFO).ok()?)
}

/// The mount point of the cgroup2 filesystem in `/proc/self/mountinfo`
/// text: the first mount of the whole hierarchy (root `/`), else the first
/// mount of a part of it.
fn cgroup2_mount(mountinfo: &str) -> Option<PathBuf> {
    // `<id> <parent> <dev> <root> <mount point> <options> [optional…] - <type> <source> <options>`
    let mounts = mountinfo.lines().filter_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        let fields: Vec<&str> = left.split(' ').collect();
        let (root, mount_point) = (fields.get(3)?, fields.get(4)?);
        (right.split(' ').next()? == "cgroup2").then(|| (*root == "/", unescape(mount_point)))
    });
    let mut first = None;
    for (whole, mount_point) in mounts {
        if whole {
            return Some(mount_point);
        }
        first.get_or_insert(mount_point);
    }
    first
}

/// Undoes mountinfo's octal escapes (`\040` for a space, `\011`, `\012`,
/// `\134`).
fn unescape(field: &str) -> PathBuf {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|d| bytes[i] == b'\\' && d.iter().all(|b| (b'0'..=b'7').contains(b)))
            .and_then(|d| std::str::from_utf8(d).ok())
            .and_then(|d| u8::from_str_radix(d, 8).ok());
        match octal {
            Some(byte) => {
                out.push(byte);
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    PathBuf::from(std::ffi::OsString::from_vec(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A scratch directory, removed when dropped.
    struct Scratch(tempfile::TempDir);

    impl Scratch {
        fn new() -> Scratch {
            Scratch(tempfile::tempdir().unwrap())
        }

        fn path(&self) -> &Path {
            self.0.path()
        }

        fn mkdir(&self, relative: &str) -> (u64, String) {
            let path = self.0.path().join(relative);
            fs::create_dir_all(&path).unwrap();
            (
                fs::metadata(&path).unwrap().ino(),
                path.to_str().unwrap().to_string(),
            )
        }
    }

    #[test]
    fn decodes_table() {
        let tree = Scratch::new();
        let root = (
            fs::metadata(tree.path()).unwrap().ino(),
            tree.path().to_str().unwrap().to_string(),
        );
        let system = tree.mkdir("system.slice");
        let ssh = tree.mkdir("system.slice/ssh.service");
        let spaced = tree.mkdir("user.slice/user 1000.slice");
        let deep = tree.mkdir("kubepods.slice/kubepods-burstable.slice/pod1/cri-containerd-abc.scope");
        // Files and symlinks are not cgroups.
        fs::write(tree.path().join("system.slice/cgroup.procs"), "").unwrap();
        let file_ino = fs::metadata(tree.path().join("system.slice/cgroup.procs"))
            .unwrap()
            .ino();
        std::os::unix::fs::symlink(tree.path().join("system.slice"), tree.path().join("link")).unwrap();
        let unknown = (1u64 << 40).to_string();
        let file_unknown = format!("unknown_cgroup_id:{file_ino}");
        let unknown_text = format!("unknown_cgroup_id:{unknown}");
        let cases: &[(&str, String, Result<&str, &str>)] = &[
            ("the root is the mount point", root.0.to_string(), Ok(&root.1)),
            ("a slice", system.0.to_string(), Ok(&system.1)),
            ("a service", ssh.0.to_string(), Ok(&ssh.1)),
            ("a space in a name", spaced.0.to_string(), Ok(&spaced.1)),
            ("deep", deep.0.to_string(), Ok(&deep.1)),
            ("a file's inode", file_ino.to_string(), Ok(&file_unknown)),
            ("unknown", unknown.clone(), Ok(&unknown_text)),
            ("zero", "0".into(), Ok("unknown_cgroup_id:0")),
            (
                "raw bytes instead of uint output",
                String::from_utf8(vec![1, 0, 0, 0]).unwrap(),
                Err(
                    "cgroup decoder: expected a decimal cgroup id, got \"\\x01\\x00\\x00\\x00\" (put `uint` \
                     before `cgroup`)",
                ),
            ),
            (
                "negative",
                "-1".into(),
                Err("cgroup decoder: expected a decimal cgroup id, got \"-1\" (put `uint` before `cgroup`)"),
            ),
            (
                "empty",
                "".into(),
                Err("cgroup decoder: expected a decimal cgroup id, got \"\" (put `uint` before `cgroup`)"),
            ),
        ];
        let decoder = Cgroup::new(tree.path().to_path_buf(), Duration::ZERO);
        let cases: Vec<_> = cases.iter().map(|(n, i, w)| (*n, i.as_bytes(), *w)).collect();
        // Twice: the second pass answers from what the first walk found.
        for _ in 0..2 {
            super::super::check_cases(&decoder, &cases);
        }
        assert!(decoder.answer_can_change());
    }

    #[test]
    fn walk_maps_every_directory_inode_to_its_path() {
        let tree = Scratch::new();
        let mut expected = HashMap::from([(
            fs::metadata(tree.path()).unwrap().ino(),
            tree.path().as_os_str().as_bytes().to_vec(),
        )]);
        for dir in ["a", "a/b", "a/b/c", "d", "d/e f"] {
            let (ino, path) = tree.mkdir(dir);
            expected.insert(ino, path.into_bytes());
        }
        fs::write(tree.path().join("a/memory.max"), "max").unwrap();
        assert_eq!(walk(tree.path()).unwrap(), expected);
        assert_eq!(
            walk(&tree.path().join("missing")).unwrap_err().kind(),
            io::ErrorKind::NotFound
        );
    }

    #[test]
    fn a_cgroup_created_later_is_found() {
        let tree = Scratch::new();
        tree.mkdir("system.slice");
        let decoder = Cgroup::new(tree.path().to_path_buf(), Duration::ZERO);
        assert!(decoder.decode(b"1").is_ok());
        let (id, path) = tree.mkdir("system.slice/new.service");
        assert_eq!(decoder.decode(id.to_string().as_bytes()), Ok(path.into_bytes()));
    }

    #[test]
    fn a_deleted_cgroup_keeps_its_path() {
        let tree = Scratch::new();
        let (id, path) = tree.mkdir("gone.scope");
        let decoder = Cgroup::new(tree.path().to_path_buf(), Duration::ZERO);
        assert_eq!(
            decoder.decode(id.to_string().as_bytes()),
            Ok(path.clone().into_bytes())
        );
        fs::remove_dir(tree.path().join("gone.scope")).unwrap();
        assert!(decoder.decode(b"0").is_ok());
        assert_eq!(decoder.decode(id.to_string().as_bytes()), Ok(path.into_bytes()));
    }

    #[test]
    fn ids_looked_up_between_walks_are_settled_by_the_next_walk() {
        let tree = Scratch::new();
        let decoder = Cgroup::new(tree.path().to_path_buf(), Duration::from_secs(3600));
        // The first lookup walks; a cgroup made after it is not seen until
        // the next walk, which the throttle holds back.
        assert_eq!(decoder.decode(b"0"), Ok(b"unknown_cgroup_id:0".to_vec()));
        let (id, _) = tree.mkdir("new.scope");
        let id_text = id.to_string();
        assert_eq!(
            decoder.decode(id_text.as_bytes()),
            Ok(format!("unknown_cgroup_id:{id}").into_bytes())
        );
        let state = decoder.state.lock().unwrap();
        // Looked up before any walk saw it: still pending, not known unknown.
        assert!(state.pending.contains(&id) && !state.unknown.contains(&id));
        assert!(state.unknown.contains(&0));
    }

    #[test]
    fn unreadable_root_is_an_error() {
        let decoder = Cgroup::new(PathBuf::from("/nonexistent/cgroup"), Duration::ZERO);
        assert_eq!(
            decoder.decode(b"1"),
            Err(DecodeError::Invalid(
                "cgroup decoder: walking /nonexistent/cgroup: No such file or directory (os error 2)".into()
            ))
        );
    }

    #[test]
    fn finds_the_cgroup2_mount() {
        let hybrid = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:5 - cgroup2 cgroup2 rw
";
        let unified = "\
25 20 0:22 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 rw,nsdelegate
";
        let part_first = "\
50 20 0:22 /system.slice /mnt/part rw - cgroup2 cgroup2 rw
51 20 0:22 / /mnt/whole\\040tree rw - cgroup2 cgroup2 rw
";
        let only_part = "50 20 0:22 /system.slice /mnt/part rw master:1 - cgroup2 cgroup2 rw\n";
        let v1_only = "32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu\n";
        let cases: &[(&str, &str, Option<&str>)] = &[
            (
                "hybrid: the unified mount, not /sys/fs/cgroup",
                hybrid,
                Some("/sys/fs/cgroup/unified"),
            ),
            ("unified", unified, Some("/sys/fs/cgroup")),
            ("the whole tree over a part", part_first, Some("/mnt/whole tree")),
            ("a part when that is all", only_part, Some("/mnt/part")),
            ("v1 only", v1_only, None),
            ("nothing", "", None),
            ("garbage", "x\n - cgroup2\n1 2 3\n", None),
        ];
        for (name, text, want) in cases {
            assert_eq!(cgroup2_mount(text), want.map(PathBuf::from), "case {name}");
        }
        assert_eq!(
            unescape(r"a\040b\011c\134d\\e\04"),
            PathBuf::from("a b\tc\\d\\\\e\\04")
        );
        assert_eq!(unescape(r"\+12\999"), PathBuf::from(r"\+12\999"));
    }

    #[test]
    fn reads_this_host() {
        // Every cgroup this process can see resolves to its path under the
        // cgroup2 mount, including this process's own cgroup.
        if build(&DecoderOptions::default()).is_err() {
            return;
        }
        let root = cgroup2_mount(&fs::read_to_string(MOUNTINFO).unwrap()).unwrap();
        // Walking again on every miss: the host's tree may change meanwhile.
        let decoder = Cgroup::new(root.clone(), Duration::ZERO);
        let own = fs::read_to_string("/proc/self/cgroup").unwrap();
        let own = own.lines().find_map(|l| l.strip_prefix("0::")).unwrap();
        let own = root.join(own.trim_start_matches('/'));
        let own_id = fs::metadata(&own).unwrap().ino();
        let path = decoder.decode(own_id.to_string().as_bytes()).unwrap();
        let want = own
            .as_os_str()
            .as_bytes()
            .strip_suffix(b"/")
            .unwrap_or(own.as_os_str().as_bytes());
        assert_eq!(path, want);
        for (id, path) in walk(&root).unwrap() {
            assert_eq!(decoder.decode(id.to_string().as_bytes()), Ok(path));
        }
    }
}
