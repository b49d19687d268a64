//! The BPF programs compiled into the binary, and what their objects hold.
//!
//! `build.rs` writes the registry; [`inspect`] reads an object's maps and
//! programs without loading anything into the kernel, so configs can be
//! checked against the object on any machine, privileged or not.

pub mod budget;
pub mod cgroups;
pub mod fs;
pub mod loader;
pub mod mark;
pub mod pin;
pub mod pinned;
pub mod sections;
pub mod stats;
pub mod usdt;

use libbpf_rs::btf::types::{Composite, DataSec, Int, IntEncoding, MemberAttr, Var};
use libbpf_rs::btf::{Btf, BtfType, ReferencesType, TypeId};
use libbpf_rs::{AsRawLibbpf, MapType, ObjectBuilder};

/// A BPF object compiled by `build.rs` from `bpf/<name>.bpf.c`.
#[derive(Debug, PartialEq, Eq)]
pub struct EmbeddedProgram {
    pub name: &'static str,
    pub object: &'static [u8],
    /// From `tests/bpf/`: loadable by name for tests, never listed.
    pub test_only: bool,
}

include!(concat!(env!("OUT_DIR"), "/programs.rs"));

pub fn find(name: &str) -> Option<&'static EmbeddedProgram> {
    EMBEDDED_PROGRAMS.iter().find(|p| p.name == name)
}

/// The object a config runs: compiled into the binary, or read from a
/// file at run time (ebpf_exporter's `<name>.bpf.o`). Both are checked
/// and loaded the same way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProgramObject {
    Embedded(&'static EmbeddedProgram),
    File {
        /// The file stem as an identifier: the object's name for libbpf,
        /// which prefixes its data sections' maps (`<name>.bss`).
        name: String,
        file: crate::config::ObjectFile,
    },
    /// No program: maps another program pinned in bpffs, by the name the
    /// config reads them under.
    Pinned(Vec<(String, std::path::PathBuf)>),
}

impl ProgramObject {
    pub fn file(file: crate::config::ObjectFile) -> ProgramObject {
        let stem = file
            .path
            .file_name()
            .and_then(|n| n.to_str())
            .map(|n| n.trim_end_matches(".o").trim_end_matches(".bpf"))
            .unwrap_or_default();
        let name = stem
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        ProgramObject::File { name, file }
    }

    pub fn name(&self) -> &str {
        match self {
            ProgramObject::Embedded(p) => p.name,
            ProgramObject::File { name, .. } => name,
            ProgramObject::Pinned(_) => "pinned",
        }
    }

    pub fn bytes(&self) -> &[u8] {
        match self {
            ProgramObject::Embedded(p) => p.object,
            ProgramObject::File { file, .. } => &file.bytes,
            ProgramObject::Pinned(_) => &[],
        }
    }

    /// What `/`, the log and errors call it: the embedded program's name,
    /// or the file's path.
    pub fn describe(&self) -> String {
        match self {
            ProgramObject::Embedded(p) => p.name.to_string(),
            ProgramObject::File { file, .. } => file.path.display().to_string(),
            ProgramObject::Pinned(pins) => format!(
                "pinned: {}",
                pins.iter()
                    .map(|(_, p)| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }
}

pub fn embedded_names() -> Vec<&'static str> {
    EMBEDDED_PROGRAMS
        .iter()
        .filter(|p| !p.test_only)
        .map(|p| p.name)
        .collect()
}

/// A map as declared in the object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MapMeta {
    pub name: String,
    pub map_type: MapType,
    pub key_size: u32,
    pub value_size: u32,
    pub max_entries: u32,
    /// `map_flags` (`BPF_F_NO_PREALLOC`, …).
    pub flags: u32,
    /// `map_extra` (a bloom filter's hash count; 0 for most maps).
    pub extra: u64,
    /// The key's C type, when the object's BTF describes it (maps declared
    /// with `__type(key, …)` do).
    pub key: Option<KeyLayout>,
}

impl MapMeta {
    /// What the kernel says of a map it holds, named `name` here. Its BTF
    /// is not read, so there is no key layout.
    pub fn of_loaded(name: &str, map: &libbpf_rs::MapHandle) -> libbpf_rs::Result<MapMeta> {
        let info = libbpf_rs::MapCore::info(map)?.info;
        Ok(MapMeta {
            name: name.to_string(),
            map_type: MapType::from(info.type_),
            key_size: info.key_size,
            value_size: info.value_size,
            max_entries: info.max_entries,
            flags: info.map_flags,
            extra: info.map_extra,
            key: None,
        })
    }
}

/// A map key as the C code declares it: what config labels are checked
/// against, and what labels without `size` take their bytes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyLayout {
    /// `struct key_t`, `u64`, …, for error messages.
    pub type_name: String,
    /// Top-level members in offset order; a scalar key is one field named
    /// after its type. Bitfields are left out: no label can decode them.
    pub fields: Vec<KeyField>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyField {
    pub name: String,
    pub offset: usize,
    pub size: usize,
}

impl KeyLayout {
    pub fn field_named(&self, name: &str) -> Option<&KeyField> {
        self.fields.iter().find(|f| f.name == name)
    }

    pub fn field_at(&self, offset: usize) -> Option<&KeyField> {
        self.fields.iter().find(|f| f.offset == offset)
    }

    /// The field whose bytes include `offset`.
    pub fn field_containing(&self, offset: usize) -> Option<&KeyField> {
        self.fields
            .iter()
            .find(|f| (f.offset..f.offset + f.size).contains(&offset))
    }
}

/// A program (one `SEC()` function) as declared in the object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProgMeta {
    pub name: String,
    pub section: String,
}

/// A global variable in a writable data section (`.bss`, `.data`), as BTF
/// describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GlobalMeta {
    pub name: String,
    /// The map libbpf keeps the section in (`<object>.bss`).
    pub map: String,
    pub offset: usize,
    pub size: usize,
    /// `Some(signed)` for integers, `None` for anything else.
    pub int_signed: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    pub maps: Vec<MapMeta>,
    pub programs: Vec<ProgMeta>,
    pub globals: Vec<GlobalMeta>,
    /// Variables of `.rodata`: set before load (ebpf_exporter's
    /// `kaddr_<symbol>`), never read as metrics.
    pub constants: Vec<GlobalMeta>,
}

impl ObjectInfo {
    pub fn map(&self, name: &str) -> Option<&MapMeta> {
        self.maps.iter().find(|m| m.name == name)
    }

    pub fn global(&self, name: &str) -> Option<&GlobalMeta> {
        self.globals.iter().find(|g| g.name == name)
    }
}

/// Reads an object's declared maps and programs. Opening parses ELF and BTF
/// only; nothing reaches the kernel.
pub fn inspect(name: &str, object: &[u8]) -> anyhow::Result<ObjectInfo> {
    let open = ObjectBuilder::default()
        .name(name)?
        .open_memory(object)
        .map_err(|e| anyhow::anyhow!("opening BPF object {name}: {e}"))?;
    // SAFETY: the pointer comes from a live OpenObject that outlives `btf`.
    let btf = Btf::from_bpf_object(unsafe { open.as_libbpf_object().as_ref() })
        .ok()
        .flatten();
    let maps: Vec<MapMeta> = open
        .maps()
        .map(|m| MapMeta {
            name: m.name().to_string_lossy().into_owned(),
            map_type: m.map_type(),
            key_size: m.key_size(),
            value_size: m.value_size(),
            max_entries: m.max_entries(),
            flags: m.map_flags(),
            // SAFETY: the pointer is a live map of `open`.
            extra: unsafe { libbpf_sys::bpf_map__map_extra(m.as_libbpf_object().as_ptr()) },
            key: btf.as_ref().and_then(|btf| {
                // SAFETY: the pointer is a live map of `open`.
                let id = unsafe { libbpf_sys::bpf_map__btf_key_type_id(m.as_libbpf_object().as_ptr()) };
                key_layout(btf, id)
            }),
        })
        .collect();
    let programs = open
        .progs()
        .map(|p| ProgMeta {
            name: p.name().to_string_lossy().into_owned(),
            section: p.section().to_string_lossy().into_owned(),
        })
        .collect();
    let vars = |sections: &[&str]| {
        btf.as_ref()
            .map_or_else(Vec::new, |btf| globals(btf, &maps, sections))
    };
    Ok(ObjectInfo {
        globals: vars(&[".bss", ".data"]),
        constants: vars(&[".rodata"]),
        maps,
        programs,
    })
}

/// Variables of `sections` (`.bss`, `.data`: what can change and be read
/// as metrics; `.rodata`: what is set before load). libbpf has filled in
/// their offsets at open.
fn globals(btf: &Btf<'_>, maps: &[MapMeta], sections: &[&str]) -> Vec<GlobalMeta> {
    let mut globals = Vec::new();
    for section in btf.type_by_kind::<DataSec<'_>>() {
        let Some(section_name) = section.name().and_then(|n| n.to_str()) else {
            continue;
        };
        if !sections.contains(&section_name) {
            continue;
        }
        let Some(map) = maps.iter().find(|m| m.name.ends_with(section_name)) else {
            continue;
        };
        for info in section.iter() {
            let Some(var) = btf.type_by_id::<Var<'_>>(info.ty) else {
                continue;
            };
            let Some(name) = var.name().and_then(|n| n.to_str()) else {
                continue;
            };
            let int_signed = Int::try_from(var.referenced_type().skip_mods_and_typedefs())
                .ok()
                .map(|int| matches!(int.encoding, IntEncoding::Signed));
            globals.push(GlobalMeta {
                name: name.to_string(),
                map: map.name.clone(),
                offset: info.offset as usize,
                size: info.size,
                int_signed,
            });
        }
    }
    globals
}

/// The hooks a config's `attach:` entry can aim a program at, told apart by
/// the program's section as libbpf names them (`libbpf.c`, `section_defs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hook {
    Xdp,
    Uprobe,
    Uretprobe,
    PerfEvent,
}

impl Hook {
    /// The hook of a program in `section`, when an attach entry can place it.
    pub fn of_section(section: &str) -> Option<Hook> {
        match section.split('/').next().unwrap_or_default() {
            "xdp" => Some(Hook::Xdp),
            "uprobe" | "uprobe.s" => Some(Hook::Uprobe),
            "uretprobe" | "uretprobe.s" => Some(Hook::Uretprobe),
            "perf_event" => Some(Hook::PerfEvent),
            _ => None,
        }
    }

    /// The `attach:` key for this hook.
    pub fn key(self) -> &'static str {
        match self {
            Hook::Xdp => "xdp",
            Hook::Uprobe | Hook::Uretprobe => "uprobe",
            Hook::PerfEvent => "perf_event",
        }
    }
}

/// True when a program in `section` attaches only through an `attach:`
/// entry: its section names no interface, binary or perf event to attach
/// to.
pub fn needs_attach_entry(section: &str) -> bool {
    match Hook::of_section(section) {
        // `xdp/<interface>` names its interface (ebpf_exporter's form).
        Some(Hook::Xdp) => {
            section == "xdp" || (section.starts_with("xdp/") && sections::parse(section).is_none())
        }
        Some(Hook::Uprobe | Hook::Uretprobe) => !section.contains('/'),
        // `perf_event/type=…` names its event (ebpf_exporter's form).
        Some(Hook::PerfEvent) => section == "perf_event",
        None => false,
    }
}

/// The layout of BTF type `id`: a struct's members, or a scalar as one
/// field. `None` for id 0 (no BTF for the key) and unsized types.
fn key_layout(btf: &Btf<'_>, id: u32) -> Option<KeyLayout> {
    if id == 0 {
        return None;
    }
    let size_of = |ty: TypeId| -> Option<usize> {
        // SAFETY: the btf pointer is live; btf__resolve_size only reads it.
        let size = unsafe { libbpf_sys::btf__resolve_size(btf.as_libbpf_object().as_ptr(), ty.into()) };
        usize::try_from(size).ok()
    };
    let declared = btf.type_by_id::<BtfType<'_>>(TypeId::from(id))?;
    let ty = declared.skip_mods_and_typedefs();
    let name = |t: &BtfType<'_>| t.name().map(|n| n.to_string_lossy().into_owned());
    if let Ok(composite) = Composite::try_from(ty) {
        let fields = composite
            .iter()
            .filter_map(|member| match member.attr {
                MemberAttr::Normal { offset } if offset % 8 == 0 => Some(KeyField {
                    name: member
                        .name
                        .map_or_else(String::new, |n| n.to_string_lossy().into_owned()),
                    offset: offset as usize / 8,
                    size: size_of(member.ty)?,
                }),
                _ => None,
            })
            .collect();
        let kind = if composite.is_struct { "struct" } else { "union" };
        return Some(KeyLayout {
            type_name: format!("{kind} {}", name(&ty).unwrap_or_else(|| "(anonymous)".into())),
            fields,
        });
    }
    let type_name = name(&declared)
        .or_else(|| name(&ty))
        .unwrap_or_else(|| "key".into());
    Some(KeyLayout {
        fields: vec![KeyField {
            name: type_name.clone(),
            offset: 0,
            size: size_of(TypeId::from(id))?,
        }],
        type_name,
    })
}

/// True for the map types whose values the reader sums or splits per CPU.
pub fn is_percpu(map_type: MapType) -> bool {
    matches!(
        map_type,
        MapType::PercpuHash | MapType::PercpuArray | MapType::LruPercpuHash
    )
}

/// Map types the reader can turn into metrics.
pub fn is_readable(map_type: MapType) -> bool {
    matches!(
        map_type,
        MapType::Hash
            | MapType::Array
            | MapType::PercpuHash
            | MapType::PercpuArray
            | MapType::LruHash
            | MapType::LruPercpuHash
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_embedded_object_opens_and_declares_programs() {
        assert!(!EMBEDDED_PROGRAMS.is_empty());
        for program in EMBEDDED_PROGRAMS {
            let info = inspect(program.name, program.object).unwrap();
            assert!(!info.programs.is_empty(), "{} has no programs", program.name);
        }
    }

    #[test]
    fn sections_say_which_hook_and_whether_an_attach_entry_is_needed() {
        for (section, hook, needs_entry) in [
            ("xdp", Some(Hook::Xdp), true),
            ("xdp/devmap", Some(Hook::Xdp), true),
            ("uprobe", Some(Hook::Uprobe), true),
            ("uprobe.s", Some(Hook::Uprobe), true),
            ("uretprobe", Some(Hook::Uretprobe), true),
            ("uprobe//bin/bash:readline", Some(Hook::Uprobe), false),
            ("uretprobe//bin/bash:readline", Some(Hook::Uretprobe), false),
            (
                "uprobe//proc/self/exe:post_attach_mark",
                Some(Hook::Uprobe),
                false,
            ),
            ("perf_event", Some(Hook::PerfEvent), true),
            (
                "perf_event/type=1,config=0,frequency=99",
                Some(Hook::PerfEvent),
                false,
            ),
            ("uprobe.multi", None, false),
            ("tracepoint/sched/sched_process_exec", None, false),
            ("kprobe/do_nanosleep", None, false),
        ] {
            assert_eq!(Hook::of_section(section), hook, "{section}");
            assert_eq!(needs_attach_entry(section), needs_entry, "{section}");
        }
    }

    #[test]
    fn syscalls_object_declares_its_counter_map() {
        let p = find("syscalls").unwrap();
        let info = inspect(p.name, p.object).unwrap();
        let map = info.map("syscalls_total").unwrap();
        assert_eq!(
            (map.map_type, map.key_size, map.value_size),
            (MapType::Hash, 8, 8)
        );
    }

    #[test]
    fn key_layouts_come_from_btf() {
        let p = find("syscall_latency").unwrap();
        let info = inspect(p.name, p.object).unwrap();
        let key = info.map("syscall_latency_seconds").unwrap().key.clone().unwrap();
        assert_eq!(key.type_name, "struct syscall_latency_key");
        let fields: Vec<(&str, usize, usize)> = key
            .fields
            .iter()
            .map(|f| (f.name.as_str(), f.offset, f.size))
            .collect();
        assert_eq!(fields, [("syscall", 0, 4), ("bucket", 4, 4)]);
        let p = find("syscalls").unwrap();
        let scalar = inspect(p.name, p.object).unwrap().maps[0].key.clone().unwrap();
        assert_eq!(
            (
                scalar.type_name.as_str(),
                scalar.fields.len(),
                scalar.fields[0].size
            ),
            ("u64", 1, 8)
        );
    }
}
