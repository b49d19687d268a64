//! An OOM kill in a memory-limited cgroup, on cgroup v2 and on hybrid
//! hosts (v2 mounted beside v1 controllers). Shared by the tests and by the
//! program_cost bench, which includes this file by path, so it uses std and
//! libc only. A limit in a plain directory would limit nothing, and the
//! task would eat the host's memory: every write goes to a cgroup
//! filesystem found in mountinfo, or the setup panics.

use std::time::{Duration, Instant};

/// A cgroup for one process to run out of memory in: a cgroup v2 directory,
/// which names it (oomkills counts by the v2 cgroup), and a memory limit, on
/// v2 where the memory controller is there and on its v1 hierarchy
/// otherwise (hybrid hosts). Both directories are removed on drop.
pub struct OomCgroup {
    /// The v2 directory, as the cgroup decoder names it.
    pub path: String,
    /// The v1 memory cgroup, on hybrid hosts.
    memory_v1: Option<String>,
}

impl OomCgroup {
    /// `name` must be unique among the cgroups of every process that may
    /// run at the same time.
    pub fn create(name: &str, limit: u64) -> OomCgroup {
        let unified = cgroup_mount(|fstype, _| fstype == "cgroup2").expect("no cgroup2 mount");
        let path = format!("{unified}/{name}");
        std::fs::create_dir(&path).unwrap();
        let mut cgroup = OomCgroup {
            path,
            memory_v1: None,
        };
        let controllers = std::fs::read_to_string(format!("{unified}/cgroup.controllers")).unwrap();
        let write = |dir: &str, file: &str, value: &str| {
            std::fs::write(format!("{dir}/{file}"), value).unwrap_or_else(|e| panic!("{dir}/{file}: {e}"))
        };
        if controllers.split_whitespace().any(|c| c == "memory") {
            write(&unified, "cgroup.subtree_control", "+memory");
            write(&cgroup.path, "memory.max", &limit.to_string());
            if std::path::Path::new(&format!("{}/memory.swap.max", cgroup.path)).exists() {
                write(&cgroup.path, "memory.swap.max", "0");
            }
        } else {
            let memory = cgroup_mount(|fstype, options| {
                fstype == "cgroup" && options.split(',').any(|o| o == "memory")
            })
            .expect("no memory controller on cgroup v2 nor v1");
            let dir = format!("{memory}/{name}");
            std::fs::create_dir(&dir).unwrap();
            cgroup.memory_v1 = Some(dir.clone());
            write(&dir, "memory.limit_in_bytes", &limit.to_string());
            // Memory plus swap, where swap is accounted: no way out to swap.
            if std::path::Path::new(&format!("{dir}/memory.memsw.limit_in_bytes")).exists() {
                write(&dir, "memory.memsw.limit_in_bytes", &limit.to_string());
            }
        }
        cgroup
    }

    /// Runs a task in the cgroup that allocates until the OOM killer kills
    /// it: `tail` looks for the last line of an endless file without a
    /// newline, so it keeps all it read, and as the only task of its cgroup
    /// it is the victim.
    pub fn oom_kill_a_task(&self) {
        use std::os::unix::process::ExitStatusExt;
        let status = self.run("exec tail /dev/zero");
        assert_eq!(status.signal(), Some(libc::SIGKILL), "{status}");
    }

    /// Runs the shell `script` inside the cgroup; its exit status. Kills it
    /// if the OOM killer has not within a minute.
    fn run(&self, script: &str) -> std::process::ExitStatus {
        let procs: Vec<String> = std::iter::once(&self.path)
            .chain(&self.memory_v1)
            .map(|dir| format!("{dir}/cgroup.procs"))
            .collect();
        let mut child = std::process::Command::new("/bin/sh")
            .arg("-c")
            .arg(format!("for f; do echo $$ > \"$f\" || exit 100; done; {script}"))
            .arg("sh")
            .args(&procs)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                child.kill().unwrap();
                child.wait().unwrap();
                panic!("not OOM-killed within a minute");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for OomCgroup {
    fn drop(&mut self) {
        // Empty by now: the one process in it has been reaped.
        let _ = std::fs::remove_dir(&self.path);
        if let Some(dir) = &self.memory_v1 {
            let _ = std::fs::remove_dir(dir);
        }
    }
}

/// The mount point of the first cgroup filesystem that `wanted(fstype,
/// super options)` accepts, from /proc/self/mountinfo.
pub(crate) fn cgroup_mount(wanted: impl Fn(&str, &str) -> bool) -> Option<String> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    mountinfo.lines().find_map(|line| {
        // "<id> <parent> <dev> <root> <mount point> <options> [optional…] -
        // <fstype> <source> <super options>"
        let (mount, fs) = line.split_once(" - ")?;
        let mut fs = fs.split(' ');
        let (fstype, _source, options) = (fs.next()?, fs.next()?, fs.next()?);
        wanted(fstype, options).then(|| mount.split(' ').nth(4).map(str::to_string))?
    })
}
