//! Why a `SEC("usdt/<binary>:<provider>:<name>")` program did not attach.
//! libbpf returns only an errno (its reasons go to its log), so the binary
//! is looked for here as libbpf looks for it, and its `.note.stapsdt`
//! notes (the probes `<sys/sdt.h>` of SystemTap puts in) are read with a
//! minimal ELF reader, for an error that says what is wrong and what the
//! binary does have.

use std::fs::File;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// The section of USDT notes (SystemTap's `sys/sdt.h`).
const NOTES: &str = ".note.stapsdt";
/// `NT_STAPSDT`, the type of each probe's note.
const NT_STAPSDT: u64 = 3;
/// Probes named in an error at most.
const LISTED: usize = 40;

/// What is wrong with the USDT probe `section` names, if it is a usdt
/// section and something is: `None` when the probe is there as named.
pub fn diagnose(section: &str) -> Option<String> {
    let spec = section
        .strip_prefix("usdt/")
        .or_else(|| section.strip_prefix("usdt.s/"));
    let Some(spec) = spec else {
        return (section == "usdt" || section == "usdt.s").then(|| {
            format!("SEC(\"{section}\") names no probe: write it as SEC(\"usdt/<binary>:<provider>:<name>\")")
        });
    };
    // libbpf reads it with sscanf("usdt/%m[^:]:%m[^:]:%m[^:]").
    let malformed = || {
        Some(format!(
            "SEC(\"{section}\") is not usdt/<binary>:<provider>:<name>"
        ))
    };
    let mut parts = spec.split(':');
    let (Some(binary), Some(provider), Some(name)) = (parts.next(), parts.next(), parts.next()) else {
        return malformed();
    };
    if [binary, provider, name].contains(&"") {
        return malformed();
    }
    let path = match resolve(binary) {
        Ok(path) => path,
        Err(why) => return Some(why),
    };
    // Named by its path, or by its name and where it was found.
    let found = if binary.contains('/') {
        binary.to_string()
    } else {
        format!("{binary} (found at {})", path.display())
    };
    let readelf = format!("see `readelf -n {}`", path.display());
    match notes(&path) {
        Err(e) => Some(format!("cannot read {found}: {e}")),
        Ok(Notes::NotElf(head)) => {
            let script = head.starts_with(b"#!");
            Some(format!(
                "{binary} is not an ELF file ({}found at {}): name the real binary, by its absolute path",
                if script { "a script, " } else { "a script? " },
                path.display()
            ))
        }
        Ok(Notes::OtherClass(bits)) => Some(format!(
            "{found} is a {bits}-bit ELF file: libbpf attaches USDT probes only in {}-bit binaries, as the \
             exporter is",
            usize::BITS
        )),
        Ok(Notes::Missing) => Some(format!(
            "{found} has no USDT notes ({NOTES}): it was not built with SystemTap SDT probes ({readelf})"
        )),
        Ok(Notes::Probes(probes)) => {
            if probes.iter().any(|(p, n)| p == provider && n == name) {
                return None;
            }
            let mut listed: Vec<String> = probes
                .iter()
                .take(LISTED)
                .map(|(p, n)| format!("{p}:{n}"))
                .collect();
            if probes.len() > LISTED {
                listed.push(format!("and {} more", probes.len() - LISTED));
            }
            Some(format!(
                "{found} has no USDT probe {provider}:{name}; its probes: {} ({readelf})",
                listed.join(", ")
            ))
        }
    }
}

/// Where libbpf looks for `binary` (`resolve_full_path()` of libbpf.c): a
/// name with a `/` as it is; a library (`.so`, `.so.N`) in
/// LD_LIBRARY_PATH, /usr/lib64, /usr/lib and the architecture's Debian
/// directory; anything else on PATH, then in /usr/bin and /usr/sbin.
fn resolve(binary: &str) -> Result<PathBuf, String> {
    if binary.contains('/') {
        if !Path::new(binary).exists() {
            return Err(format!(
                "there is no file {binary}: name the binary by a path that exists"
            ));
        }
        return Ok(binary.into());
    }
    let library = binary.ends_with(".so") || binary.contains(".so.");
    let env = |name: &str| std::env::var(name).unwrap_or_default();
    let (searched, mode) = if library {
        (
            vec![
                ("LD_LIBRARY_PATH", env("LD_LIBRARY_PATH")),
                ("", "/usr/lib64:/usr/lib".to_string()),
                ("", format!("/lib/{}-linux-gnu", std::env::consts::ARCH)),
            ],
            libc::R_OK,
        )
    } else {
        (
            vec![("PATH", env("PATH")), ("", "/usr/bin:/usr/sbin".to_string())],
            libc::R_OK | libc::X_OK,
        )
    };
    let found = searched
        .iter()
        .flat_map(|(_, dirs)| dirs.split(':').filter(|d| !d.is_empty()))
        .map(|dir| Path::new(dir).join(binary))
        .find(|path| accessible(path, mode));
    found.ok_or_else(|| {
        let places: Vec<String> = searched
            .iter()
            .map(|(var, dirs)| match *var {
                "" => dirs.replace(':', ", "),
                var => format!("{var} ({dirs})"),
            })
            .collect();
        format!(
            "there is no {binary} in {}, where libbpf looks for it: name the binary by its absolute path",
            places.join(", ")
        )
    })
}

/// `faccessat(AT_EACCESS)`, as libbpf checks.
fn accessible(path: &Path, mode: libc::c_int) -> bool {
    let Ok(c) = std::ffi::CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: `c` is a valid NUL-terminated path.
    unsafe { libc::faccessat(libc::AT_FDCWD, c.as_ptr(), mode, libc::AT_EACCESS) == 0 }
}

/// What a file holds, as far as USDT probes go.
#[derive(Debug, PartialEq, Eq)]
enum Notes {
    /// Not ELF: its first bytes.
    NotElf(Vec<u8>),
    /// ELF of another word size than the exporter's.
    OtherClass(u32),
    /// ELF without a `.note.stapsdt` section.
    Missing,
    /// Each probe's provider and name, once each, in the notes' order.
    Probes(Vec<(String, String)>),
}

/// An ELF file's layout: its word size and byte order.
struct Elf {
    wide: bool,
    big: bool,
}

impl Elf {
    fn u16(&self, b: &[u8], at: usize) -> Option<u64> {
        let b: [u8; 2] = b.get(at..at + 2)?.try_into().ok()?;
        Some(u64::from(if self.big {
            u16::from_be_bytes(b)
        } else {
            u16::from_le_bytes(b)
        }))
    }

    fn u32(&self, b: &[u8], at: usize) -> Option<u64> {
        let b: [u8; 4] = b.get(at..at + 4)?.try_into().ok()?;
        Some(u64::from(if self.big {
            u32::from_be_bytes(b)
        } else {
            u32::from_le_bytes(b)
        }))
    }

    fn u64(&self, b: &[u8], at: usize) -> Option<u64> {
        let b: [u8; 8] = b.get(at..at + 8)?.try_into().ok()?;
        Some(if self.big {
            u64::from_be_bytes(b)
        } else {
            u64::from_le_bytes(b)
        })
    }
}

fn notes(path: &Path) -> std::io::Result<Notes> {
    let file = File::open(path)?;
    let bad = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, format!("bad ELF: {what}"));
    let header = read(&file, 0, 64)?;
    if !header.starts_with(b"\x7fELF") || header.len() < 52 {
        return Ok(Notes::NotElf(header));
    }
    let elf = Elf {
        wide: header[4] == 2,
        big: header[5] == 2,
    };
    if elf.wide != (usize::BITS == 64) {
        return Ok(Notes::OtherClass(if elf.wide { 64 } else { 32 }));
    }
    // e_shoff, e_shentsize, e_shnum, e_shstrndx (include/uapi/linux/elf.h).
    let (shoff, shentsize, shnum, shstrndx) = if elf.wide {
        (
            elf.u64(&header, 0x28),
            elf.u16(&header, 0x3a),
            elf.u16(&header, 0x3c),
            elf.u16(&header, 0x3e),
        )
    } else {
        (
            elf.u32(&header, 0x20),
            elf.u16(&header, 0x2e),
            elf.u16(&header, 0x30),
            elf.u16(&header, 0x32),
        )
    };
    let (Some(shoff), Some(shentsize), Some(shnum), Some(shstrndx)) = (shoff, shentsize, shnum, shstrndx)
    else {
        return Err(bad("short header"));
    };
    let table = read(&file, shoff, shnum * shentsize)?;
    // Each section's name offset, file offset and size.
    let section = |i: u64| -> Option<(u64, u64, u64)> {
        let at = usize::try_from(i * shentsize).ok()?;
        let name = elf.u32(&table, at)?;
        let (offset, size) = if elf.wide {
            (elf.u64(&table, at + 0x18)?, elf.u64(&table, at + 0x20)?)
        } else {
            (elf.u32(&table, at + 0x10)?, elf.u32(&table, at + 0x14)?)
        };
        Some((name, offset, size))
    };
    let (_, names_at, names_size) = section(shstrndx).ok_or_else(|| bad("no section names"))?;
    let names = read(&file, names_at, names_size)?;
    let wanted = (0..shnum).filter_map(section).find(|(name, _, _)| {
        let name = usize::try_from(*name).unwrap_or(usize::MAX);
        names.get(name..).and_then(|n| n.split(|b| *b == 0).next()) == Some(NOTES.as_bytes())
    });
    let Some((_, offset, size)) = wanted else {
        return Ok(Notes::Missing);
    };
    let data = read(&file, offset, size)?;
    Ok(Notes::Probes(probes(&elf, &data)))
}

/// The provider and name of each stapsdt note: namesz, descsz and type,
/// the name ("stapsdt") and the description (the probe's address, the
/// `.stapsdt.base` address and the semaphore's, then provider, name and
/// arguments, each NUL-terminated), each part padded to 4 bytes.
fn probes(elf: &Elf, data: &[u8]) -> Vec<(String, String)> {
    let pad = |n: u64| n.div_ceil(4) * 4;
    let mut probes: Vec<(String, String)> = Vec::new();
    let mut at = 0u64;
    while let (Some(namesz), Some(descsz), Some(kind)) = (
        elf.u32(data, at as usize),
        elf.u32(data, at as usize + 4),
        elf.u32(data, at as usize + 8),
    ) {
        let name_at = at + 12;
        let desc_at = name_at + pad(namesz);
        at = desc_at + pad(descsz);
        let slice = |from: u64, len: u64| data.get(from as usize..(from + len) as usize);
        if kind != NT_STAPSDT || slice(name_at, namesz) != Some(b"stapsdt\0") {
            continue;
        }
        let Some(desc) = slice(desc_at, descsz) else {
            break;
        };
        let addresses = if elf.wide { 24 } else { 12 };
        let mut strings = desc.get(addresses..).unwrap_or_default().split(|b| *b == 0);
        if let (Some(provider), Some(name)) = (strings.next(), strings.next()) {
            let probe = (
                String::from_utf8_lossy(provider).into_owned(),
                String::from_utf8_lossy(name).into_owned(),
            );
            if !probes.contains(&probe) {
                probes.push(probe);
            }
        }
    }
    probes
}

/// At most `len` bytes at `offset` (fewer at the end of the file), for
/// parts of a binary that may be hundreds of megabytes; a part larger than
/// a note section can be is refused rather than read.
fn read(file: &File, offset: u64, len: u64) -> std::io::Result<Vec<u8>> {
    const MAX: u64 = 64 << 20;
    if len > MAX {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("bad ELF: a part of {len} bytes"),
        ));
    }
    let mut buf = vec![0u8; len as usize];
    let mut filled = 0;
    while filled < buf.len() {
        match file.read_at(&mut buf[filled..], offset + filled as u64)? {
            0 => break,
            n => filled += n,
        }
    }
    buf.truncate(filled);
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_that_are_not_usdt_are_left_alone_and_bare_ones_are_explained() {
        assert_eq!(diagnose("uprobe//bin/true:main"), None);
        assert_eq!(diagnose("tracepoint/syscalls/sys_enter_read"), None);
        let bare = diagnose("usdt").unwrap();
        assert!(bare.contains("names no probe"), "{bare}");
        let short = diagnose("usdt//bin/true:provider").unwrap();
        assert!(
            short.contains("is not usdt/<binary>:<provider>:<name>"),
            "{short}"
        );
    }

    #[test]
    fn a_missing_binary_is_named_with_where_it_was_looked_for() {
        let why = diagnose("usdt//nonexistent/bpfx:p:n").unwrap();
        assert_eq!(
            why,
            "there is no file /nonexistent/bpfx: name the binary by a path that exists"
        );
        let why = diagnose("usdt/bpfx_nowhere_to_be_found:p:n").unwrap();
        assert!(
            why.starts_with("there is no bpfx_nowhere_to_be_found in PATH (")
                && why.ends_with(
                    ", /usr/bin, /usr/sbin, where libbpf looks for it: name the binary by its absolute path"
                ),
            "{why}"
        );
    }

    #[test]
    fn a_script_and_an_elf_file_without_notes_say_so() {
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("shim");
        std::fs::write(&script, "#!/bin/sh\nexec /usr/bin/true \"$@\"\n").unwrap();
        let why = diagnose(&format!("usdt/{}:p:n", script.display())).unwrap();
        assert_eq!(
            why,
            format!(
                "{0} is not an ELF file (a script, found at {0}): name the real binary, by its absolute path",
                script.display()
            )
        );
        // This test binary: ELF, without SystemTap's notes.
        let exe = std::fs::read_link("/proc/self/exe").unwrap();
        let why = diagnose(&format!("usdt/{}:p:n", exe.display())).unwrap();
        assert!(
            why.starts_with(&format!(
                "{} has no USDT notes (.note.stapsdt): it was not built with",
                exe.display()
            )),
            "{why}"
        );
    }

    /// Notes as `<sys/sdt.h>` lays them out, one probe twice (two sites).
    #[test]
    fn notes_give_each_probe_once_in_order() {
        let elf = Elf {
            wide: true,
            big: false,
        };
        let note = |provider: &str, name: &str| {
            let mut desc = vec![0u8; 24];
            desc.extend_from_slice(format!("{provider}\0{name}\0-4@%edi\0").as_bytes());
            let mut n = Vec::new();
            n.extend_from_slice(&8u32.to_le_bytes());
            n.extend_from_slice(&(desc.len() as u32).to_le_bytes());
            n.extend_from_slice(&(NT_STAPSDT as u32).to_le_bytes());
            n.extend_from_slice(b"stapsdt\0");
            desc.resize(desc.len().div_ceil(4) * 4, 0);
            n.extend_from_slice(&desc);
            n
        };
        let data = [note("app", "start"), note("app", "tick"), note("app", "start")].concat();
        assert_eq!(
            probes(&elf, &data),
            [("app".into(), "start".into()), ("app".into(), "tick".into())]
        );
        // Cut short: what is whole is read.
        assert_eq!(
            probes(&elf, &data[..data.len() / 3 + 5]),
            [("app".into(), "start".into())]
        );
    }
}
