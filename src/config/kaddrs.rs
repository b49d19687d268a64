//! `kaddrs`: kernel symbols whose addresses a program needs (to compare a
//! pointer with, say, a function it is called from), as ebpf_exporter
//! gives them: the program declares `const volatile u64 kaddr_<symbol>`
//! and the exporter writes the address from `/proc/kallsyms` into it
//! before load. Checked here against the object; resolved at load.

use serde_saphyr::Spanned;

use super::validate::Validator;
use super::Kaddr;
use crate::programs::ObjectInfo;

impl Validator<'_> {
    pub(super) fn kaddrs(
        &mut self,
        raw: Option<&Spanned<Vec<Spanned<String>>>>,
        info: &ObjectInfo,
    ) -> Vec<Kaddr> {
        let Some(raw) = raw else {
            return Vec::new();
        };
        let mut kaddrs = Vec::new();
        for (i, symbol) in raw.value.iter().enumerate() {
            let variable = format!("kaddr_{}", symbol.value);
            match info.constants.iter().find(|c| c.name == variable) {
                Some(c) if c.size == 8 => kaddrs.push(Kaddr {
                    symbol: symbol.value.clone(),
                    map: c.map.clone(),
                    offset: c.offset,
                }),
                Some(c) => self.error(
                    symbol.referenced,
                    &format!("kaddrs[{i}]"),
                    format!("{variable} is {} bytes; declare it `const volatile u64 {variable}`", c.size),
                ),
                None => self.error(
                    symbol.referenced,
                    &format!("kaddrs[{i}]"),
                    format!(
                        "the program has no `const volatile u64 {variable}` to write the address of {:?} into \
                         (its constants: {})",
                        symbol.value,
                        match info.constants.iter().map(|c| c.name.as_str()).collect::<Vec<_>>() {
                            names if names.is_empty() => "none".to_string(),
                            names => names.join(", "),
                        }
                    ),
                ),
            }
        }
        kaddrs
    }
}
