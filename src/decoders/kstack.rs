//! `kstack`: a kernel stack (the `u64` array `bpf_get_stack()` fills) → its
//! functions, innermost first, one per line, e.g.
//! `mark_page_accessed\nunmap_page_range\n…`.
//!
//! The input is the key bytes themselves: 8-byte addresses in host byte
//! order. The stack ends at the first zero address (the rest of the array is
//! unused), as in ebpf_exporter; a size that is not a whole number of
//! addresses is an error instead of its panic, since it means the label's
//! `size` is not the array's.
//!
//! Each address resolves like `ksym` (the closest symbol at or below it,
//! through the same shared table); a frame below every symbol prints as
//! `??`, and the frames are joined with `\n`, both as ebpf_exporter does so
//! its stack labels carry over. A stack with any such frame makes the table
//! be read again, at most as often as `ksym` allows.

use super::ksym::{Kallsyms, SHARED};
use super::{DecodeError, Decoder, DecoderOptions};

#[derive(Debug)]
struct Kstack {
    symbols: &'static Kallsyms,
}

pub(super) fn build(options: &DecoderOptions) -> Result<Box<dyn Decoder>, String> {
    options.only("kstack", &[])?;
    Ok(Box::new(Kstack { symbols: &SHARED }))
}

impl Decoder for Kstack {
    fn decode(&self, input: &[u8]) -> Result<Vec<u8>, DecodeError> {
        if !input.len().is_multiple_of(8) {
            return Err(DecodeError::Invalid(format!(
                "kstack decoder: cannot decode {} bytes, expected a whole number of 8-byte addresses \
                 (set the label's size to the stack array's)",
                input.len()
            )));
        }
        let addresses: Vec<u64> = input
            .chunks_exact(8)
            .map(|a| u64::from_ne_bytes([a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7]]))
            .take_while(|&a| a != 0)
            .collect();
        if addresses.is_empty() {
            return Ok(Vec::new());
        }
        let names = self
            .symbols
            .resolve(&addresses)
            .map_err(|e| DecodeError::Invalid(format!("kstack decoder: {e}")))?;
        let frames: Vec<Vec<u8>> = names
            .into_iter()
            .map(|name| name.unwrap_or_else(|| b"??".to_vec()))
            .collect();
        Ok(frames.join(&b'\n'))
    }

    /// Modules and BPF programs load and unload.
    fn answer_can_change(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use std::io;

    use super::super::ksym::tests::{fixed, leak, ON_EVERY_MISS};
    use super::*;

    fn stack(addresses: &[u64]) -> Vec<u8> {
        addresses.iter().flat_map(|a| a.to_ne_bytes()).collect()
    }

    #[test]
    fn decodes_ebpf_exporters_table() {
        // ebpf_exporter's kstack test: `zero` appears in kallsyms after the
        // first read and is found by the re-read a `??` frame causes.
        use std::sync::atomic::{AtomicBool, Ordering};
        static READ_ONCE: AtomicBool = AtomicBool::new(false);
        fn growing() -> io::Result<Vec<u8>> {
            let mut text =
                b"0000000000000004 T one\n0000000000000006 T two\n00000000000000aa T three\n".to_vec();
            if READ_ONCE.swap(true, Ordering::SeqCst) {
                text.extend_from_slice(b"0000000000000002 T zero\n");
            }
            Ok(text)
        }
        let symbols = leak(growing, ON_EVERY_MISS);
        symbols.resolve(&[4]).unwrap();
        let cases: &[(&str, Vec<u8>, Result<&str, &str>)] = &[
            ("all zero", stack(&[0, 0]), Ok("")),
            ("exact and inside", stack(&[4, 5, 6, 0]), Ok("one\none\ntwo")),
            (
                "above the last symbol",
                stack(&[0xab, 0x10, 6, 0]),
                Ok("three\ntwo\ntwo"),
            ),
            ("found after a re-read", stack(&[0xab, 3, 0]), Ok("three\nzero")),
            ("below every symbol", stack(&[1, 0xac, 1, 0]), Ok("??\nthree\n??")),
        ];
        let cases: Vec<_> = cases.iter().map(|(n, i, w)| (*n, i.as_slice(), *w)).collect();
        super::super::check_cases(&Kstack { symbols }, &cases);
    }

    #[test]
    fn decodes_table() {
        let err = |n: usize| {
            format!(
                "kstack decoder: cannot decode {n} bytes, expected a whole number of 8-byte addresses \
                 (set the label's size to the stack array's)"
            )
        };
        let (e7, e12) = (err(7), err(12));
        // ebpf_exporter's kallsyms stack test, from its piece of an arm64
        // kallsyms: return addresses inside each function.
        let arm64 = stack(&[
            0xffffffc0801cee9c,
            0xffffffc08012d06c,
            0xffffffeb19cadfc8,
            0xffffffeb19a8a5fc,
            0xffffffeb19a8a7fc,
            0xffffffeb19d908c0,
        ]);
        let cases: &[(&str, Vec<u8>, Result<&str, &str>)] = &[
            (
                "arm64 stack",
                arm64.clone(),
                Ok(
                    "bpf_prog_9a4f2895a09f572a_mark_page_accessed\t[bpf]\nbpf_trampoline_6442507883\t[bpf]\n\
                    mark_page_accessed\n__mmput\nmmput\ngeneric_pipe_buf_get",
                ),
            ),
            (
                "zeros after the stack are ignored",
                [arm64[..16].to_vec(), vec![0; 32]].concat(),
                Ok("bpf_prog_9a4f2895a09f572a_mark_page_accessed\t[bpf]\nbpf_trampoline_6442507883\t[bpf]"),
            ),
            (
                "the stack ends at the first zero",
                stack(&[0xffffffeb19d90830, 0, 0xffffffeb19d90870]),
                Ok("pipe_lock"),
            ),
            ("one frame", stack(&[0xffffffeb19d90870]), Ok("pipe_unlock")),
            (
                "unknown frame",
                stack(&[0x1000, 0xffffffeb19d90870]),
                Ok("??\npipe_unlock"),
            ),
            ("empty", vec![], Ok("")),
            ("not whole addresses", vec![1; 7], Err(&e7)),
            ("one and a half addresses", vec![1; 12], Err(&e12)),
        ];
        let decoder = Kstack {
            symbols: leak(fixed, ON_EVERY_MISS),
        };
        let cases: Vec<_> = cases.iter().map(|(n, i, w)| (*n, i.as_slice(), *w)).collect();
        super::super::check_cases(&decoder, &cases);
        assert!(decoder.answer_can_change());
    }
}
