//! Maps pinned by another process (here bpftool, standing in for a
//! firewall or a tc classifier that pins its counters): a `pinned:` config
//! exports them, follows the pin when its owner restarts, and says so when
//! the pin is gone.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::binary::{sample_text, Exporter};
use crate::common::{bpf_available, bpftool, tool_available, Bpffs};

/// What another tool does: a hash map of u32 port → u64 count, pinned at
/// `pin`, holding `count` for port 80.
fn pin_map(pin: &Path, count: u8) {
    let pin = pin.to_str().unwrap();
    bpftool(&[
        "map", "create", pin, "type", "hash", "key", "4", "value", "8", "entries", "16", "name", "drops",
    ]);
    set(pin, count);
}

fn set(pin: &str, count: u8) {
    let count = count.to_string();
    bpftool(&[
        "map", "update", "pinned", pin, "key", "80", "0", "0", "0", "value", &count, "0", "0", "0", "0", "0",
        "0", "0",
    ]);
}

#[test]
fn a_map_pinned_by_another_program_is_exported_followed_across_restarts_and_missed_when_gone() {
    if !bpf_available() {
        return;
    }
    assert!(tool_available("bpftool"), "the pinned-map test needs bpftool");
    let bpffs = Bpffs::new();
    let pin = bpffs.path("drops");
    pin_map(&pin, 5);
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "pinned:\n  fw_drops_total: {}\nmetrics:\n  counters:\n    - name: fw_drops_total\n      help: Drops, by port.\n      \
         labels:\n        - name: port\n          size: 4\n          decoders:\n            - name: uint\n",
        pin.display()
    );
    std::fs::write(dir.path().join("fw.yaml"), config).unwrap();
    let exporter = Exporter::start(&[
        "--config.dir",
        dir.path().to_str().unwrap(),
        "--config.check-interval",
        "1s",
    ]);
    let series = r#"ebpf_fw_drops_total{port="80"}"#;
    let reaches = |want: u64| {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let body = exporter.get("/metrics", "").2;
            let seen = sample_text(&body, series).map(|v| v.parse::<u64>().unwrap());
            if seen == Some(want) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{series} is {seen:?}, not {want}:\n{body}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    reaches(5);
    set(pin.to_str().unwrap(), 7);
    reaches(7);

    // The owner exits: the pin goes. The config says so on / and in
    // /-/status, and the last version keeps what it had.
    std::fs::remove_file(&pin).unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        let status: serde_json::Value = serde_json::from_str(&exporter.get("/-/status", "").2).unwrap();
        let fw = status["configs"][0].clone();
        if fw["rejected"]
            .as_str()
            .is_some_and(|r| r.contains("cannot open the pinned map"))
        {
            break fw;
        }
        assert!(
            Instant::now() < deadline,
            "the missing pin is not reported: {status}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        status["rejected"]
            .as_str()
            .unwrap()
            .contains(pin.to_str().unwrap()),
        "{status}"
    );
    assert!(exporter.get("/", "").2.contains("cannot open the pinned map"));

    // It restarts with a new map at the same pin: followed.
    pin_map(&pin, 11);
    reaches(11);
    exporter.stop();
}
