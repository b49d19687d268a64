//! `skb_drop_reason`: a kernel drop reason in decimal (the output of
//! `uint`, from an `enum skb_drop_reason`) → its name as the kernel's
//! `skb/kfree_skb` tracepoint prints it, e.g. `3` → `NO_SOCKET` on Linux
//! 6.18.
//!
//! The numbers change between kernel versions (reasons are inserted in the
//! middle of the enum), so a `static_map` written for one kernel misnames
//! drops on the next. The names come from the running kernel's BTF instead
//! (`/sys/kernel/btf/vmlinux`, or wherever libbpf finds vmlinux BTF, as
//! when it loads the programs): each enumerator of `enum skb_drop_reason`
//! with its `SKB_DROP_REASON_` prefix taken off, as the tracepoint does.
//! The two enumerators without that prefix keep their whole name
//! (`SKB_NOT_DROPPED_YET`, `SKB_CONSUMED`: not drops, which the tracepoint
//! never reports), and `SKB_DROP_REASON_SUBSYS_MASK` is a mask, not a
//! reason. The BTF is read once per process, on the first decode.
//!
//! Since Linux 6.4 the top 16 bits of a reason can name a subsystem that
//! keeps its own list (`enum skb_drop_reason_subsys`: mac80211,
//! openvswitch). Those lists live in the subsystems' modules, so such a
//! reason becomes `<subsystem>:<code>`, e.g. `OPENVSWITCH:1` for openvswitch's
//! first reason, with the subsystem named from the same BTF. A number the
//! kernel does not name becomes `unknown:<n>`; so does every number when no
//! BTF can be read, with one warning saying why, so drops are still counted
//! by number. Input that is not a decimal number is an error.

use std::sync::LazyLock;

use libbpf_rs::btf::types::Enum;
use libbpf_rs::btf::Btf;

use super::{DecodeError, Decoder, DecoderOptions};

const ENUM: &str = "skb_drop_reason";
const SUBSYS_ENUM: &str = "skb_drop_reason_subsys";
const PREFIX: &str = "SKB_DROP_REASON_";
const SUBSYS_PREFIX: &str = "SKB_DROP_REASON_SUBSYS_";
/// Bits of a reason above the subsystem's own code
/// (SKB_DROP_REASON_SUBSYS_SHIFT, include/net/dropreason.h).
const SUBSYS_SHIFT: u32 = 16;

/// The reasons of the running kernel, for every decoder of the process.
static KERNEL: LazyLock<Option<Reasons>> = LazyLock::new(|| match Reasons::from_vmlinux() {
    Ok(reasons) => Some(reasons),
    Err(err) => {
        tracing::warn!("skb_drop_reason decoder: {err}; every reason is labelled unknown:<number>");
        None
    }
});

/// Names by number, as one kernel's BTF gives them.
#[derive(Debug)]
struct Reasons {
    /// Core reasons (subsystem 0), sorted by number.
    core: Vec<(u32, String)>,
    /// Subsystems by number, without `SKB_DROP_REASON_SUBSYS_`, sorted.
    subsystems: Vec<(u32, String)>,
}

impl Reasons {
    fn from_vmlinux() -> Result<Reasons, String> {
        let btf = Btf::from_vmlinux().map_err(|e| {
            format!(
                "cannot read the kernel's BTF (/sys/kernel/btf/vmlinux): {e}; \
                 it needs a kernel built with CONFIG_DEBUG_INFO_BTF"
            )
        })?;
        Reasons::from_btf(&btf)
    }

    fn from_btf(btf: &Btf<'_>) -> Result<Reasons, String> {
        let members = |name: &str| -> Option<Vec<(String, i64)>> {
            let found: Enum<'_> = btf.type_by_name(name)?;
            Some(
                found
                    .iter()
                    .filter_map(|m| Some((m.name?.to_str()?.to_string(), m.value)))
                    .collect(),
            )
        };
        let core = members(ENUM).ok_or_else(|| {
            format!(
                "the kernel's BTF has no enum {ENUM} (the kfree_skb tracepoint has reasons since Linux 5.17)"
            )
        })?;
        // Older kernels have no subsystems: every reason is a core one.
        let subsystems = members(SUBSYS_ENUM).unwrap_or_default();
        Ok(Reasons::new(core, subsystems))
    }

    /// From enumerators as BTF lists them: `(name, value)`.
    fn new(core: Vec<(String, i64)>, subsystems: Vec<(String, i64)>) -> Reasons {
        fn table(enumerators: Vec<(String, i64)>, keep: impl Fn(&str) -> Option<&str>) -> Vec<(u32, String)> {
            let mut table: Vec<(u32, String)> = enumerators
                .iter()
                .filter_map(|(name, value)| Some((u32::try_from(*value).ok()?, keep(name)?.to_string())))
                .collect();
            // Aliases: the first name listed for a number wins.
            table.sort_by_key(|(value, _)| *value);
            table.dedup_by_key(|(value, _)| *value);
            table
        }
        Reasons {
            core: table(core, |name| match name {
                "SKB_DROP_REASON_SUBSYS_MASK" => None,
                _ => Some(name.strip_prefix(PREFIX).unwrap_or(name)),
            }),
            subsystems: table(subsystems, |name| match name {
                // Subsystem 0 is the core list; _NUM counts them.
                "SKB_DROP_REASON_SUBSYS_CORE" | "SKB_DROP_REASON_SUBSYS_NUM" => None,
                _ => Some(name.strip_prefix(SUBSYS_PREFIX).unwrap_or(name)),
            }),
        }
    }

    fn name(&self, reason: u64) -> String {
        let unknown = || format!("unknown:{reason}");
        let Ok(reason) = u32::try_from(reason) else {
            return unknown();
        };
        match reason >> SUBSYS_SHIFT {
            0 => find(&self.core, reason).map_or_else(unknown, str::to_string),
            subsystem => find(&self.subsystems, subsystem).map_or_else(unknown, |name| {
                format!("{name}:{}", reason & ((1 << SUBSYS_SHIFT) - 1))
            }),
        }
    }
}

/// The name of `n` in a table sorted by number.
fn find(table: &[(u32, String)], n: u32) -> Option<&str> {
    table
        .binary_search_by_key(&n, |(value, _)| *value)
        .ok()
        .and_then(|i| table.get(i))
        .map(|(_, name)| name.as_str())
}

#[derive(Debug)]
struct SkbDropReason {
    reasons: &'static LazyLock<Option<Reasons>>,
}

pub(super) fn build(options: &DecoderOptions) -> Result<Box<dyn Decoder>, String> {
    options.only("skb_drop_reason", &[])?;
    Ok(Box::new(SkbDropReason { reasons: &KERNEL }))
}

impl Decoder for SkbDropReason {
    fn decode(&self, input: &[u8]) -> Result<Vec<u8>, DecodeError> {
        let reason = std::str::from_utf8(input)
            .ok()
            .and_then(|text| text.parse::<u64>().ok())
            .ok_or_else(|| {
                DecodeError::Invalid(format!(
                    "skb_drop_reason decoder: expected a decimal drop reason, got {}",
                    super::quoted(input)
                ))
            })?;
        let name = match LazyLock::force(self.reasons) {
            Some(reasons) => reasons.name(reason),
            None => format!("unknown:{reason}"),
        };
        Ok(name.into_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The start and the end of Linux 6.18's lists, and an alias.
    fn linux_6_18() -> Reasons {
        let list = |names: &[(&str, i64)]| names.iter().map(|(n, v)| (n.to_string(), *v)).collect();
        Reasons::new(
            list(&[
                ("SKB_NOT_DROPPED_YET", 0),
                ("SKB_CONSUMED", 1),
                ("SKB_DROP_REASON_NOT_SPECIFIED", 2),
                ("SKB_DROP_REASON_NO_SOCKET", 3),
                ("SKB_DROP_REASON_SOCKET_FILTER", 5),
                ("SKB_DROP_REASON_SKB_RX_HEADROOM", 128),
                ("SKB_DROP_REASON_ALIAS_OF_NO_SOCKET", 3),
                ("SKB_DROP_REASON_MAX", 129),
                ("SKB_DROP_REASON_SUBSYS_MASK", 0xffff_0000),
            ]),
            list(&[
                ("SKB_DROP_REASON_SUBSYS_CORE", 0),
                ("SKB_DROP_REASON_SUBSYS_MAC80211_UNUSABLE", 1),
                ("SKB_DROP_REASON_SUBSYS_OPENVSWITCH", 2),
                ("SKB_DROP_REASON_SUBSYS_NUM", 3),
            ]),
        )
    }

    #[test]
    fn decodes_table() {
        let cases: &[(&str, &[u8], Result<&str, &str>)] = &[
            ("prefix taken off", b"3", Ok("NO_SOCKET")),
            ("socket filter", b"5", Ok("SOCKET_FILTER")),
            ("last reason", b"128", Ok("SKB_RX_HEADROOM")),
            (
                "the end marker, named as the tracepoint names it",
                b"129",
                Ok("MAX"),
            ),
            ("not a drop, whole name", b"0", Ok("SKB_NOT_DROPPED_YET")),
            ("consumed, whole name", b"1", Ok("SKB_CONSUMED")),
            ("gap in numbering", b"4", Ok("unknown:4")),
            ("past the list", b"130", Ok("unknown:130")),
            ("top of the core range", b"65535", Ok("unknown:65535")),
            ("mac80211", b"65538", Ok("MAC80211_UNUSABLE:2")),
            ("openvswitch's first", b"131073", Ok("OPENVSWITCH:1")),
            ("subsystem 0 of a list", b"131072", Ok("OPENVSWITCH:0")),
            ("subsystem count is no subsystem", b"196609", Ok("unknown:196609")),
            ("the mask is no reason", b"4294901760", Ok("unknown:4294901760")),
            ("u32 max", b"4294967295", Ok("unknown:4294967295")),
            ("beyond u32", b"4294967296", Ok("unknown:4294967296")),
            (
                "u64 max",
                b"18446744073709551615",
                Ok("unknown:18446744073709551615"),
            ),
            (
                "empty",
                b"",
                Err("skb_drop_reason decoder: expected a decimal drop reason, got \"\""),
            ),
            (
                "negative",
                b"-3",
                Err("skb_drop_reason decoder: expected a decimal drop reason, got \"-3\""),
            ),
            (
                "raw bytes instead of uint output",
                &[3, 0, 0, 0],
                Err("skb_drop_reason decoder: expected a decimal drop reason, got \"\\x03\\x00\\x00\\x00\""),
            ),
            (
                "too big",
                b"18446744073709551616",
                Err("skb_drop_reason decoder: expected a decimal drop reason, got \"18446744073709551616\""),
            ),
        ];
        static FIXTURE: LazyLock<Option<Reasons>> = LazyLock::new(|| Some(linux_6_18()));
        super::super::check_cases(&SkbDropReason { reasons: &FIXTURE }, cases);
    }

    #[test]
    fn without_btf_every_number_is_unknown() {
        static NONE: LazyLock<Option<Reasons>> = LazyLock::new(|| None);
        let cases: &[(&str, &[u8], Result<&str, &str>)] = &[
            ("a reason", b"3", Ok("unknown:3")),
            ("a subsystem's", b"131073", Ok("unknown:131073")),
            (
                "still not a number",
                b"x",
                Err("skb_drop_reason decoder: expected a decimal drop reason, got \"x\""),
            ),
        ];
        super::super::check_cases(&SkbDropReason { reasons: &NONE }, cases);
    }

    #[test]
    fn btf_without_the_enum_says_so() {
        // A BPF object's BTF: real BTF that has no drop reasons in it.
        let program = crate::programs::find("syscalls").unwrap();
        let btf = Btf::from_raw("syscalls", program.object).unwrap().unwrap();
        let err = Reasons::from_btf(&btf).unwrap_err();
        assert_eq!(
            err,
            "the kernel's BTF has no enum skb_drop_reason (the kfree_skb tracepoint has reasons since Linux 5.17)"
        );
    }

    #[test]
    fn reads_the_enum_from_btf() {
        // packet_drops' own BTF carries enum skb_drop_reason as the
        // committed vmlinux.h declares it, so this runs on any machine.
        let program = crate::programs::find("packet_drops").unwrap();
        let btf = Btf::from_raw("packet_drops", program.object).unwrap().unwrap();
        let reasons = Reasons::from_btf(&btf).unwrap();
        let socket_filter = reasons.core.iter().find(|(_, name)| name == "SOCKET_FILTER");
        assert!(socket_filter.is_some(), "{reasons:?}");
        assert_eq!(reasons.name(0), "SKB_NOT_DROPPED_YET");
        assert!(
            reasons.core.iter().all(|(_, name)| !name.starts_with(PREFIX)),
            "{reasons:?}"
        );
    }
}
