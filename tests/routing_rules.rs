//! The ASR/NER recording rules (configs/prometheus-rules.yml) are checked and unit-tested by
//! Prometheus' own `promtool`, and every metric they read is one `RoutingMetrics` registers.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use prometheus::Registry;
use teams_sbc::routing::{CallFailure, RoutingMetrics};

fn configs() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("configs")
}

fn promtool(args: &[&str]) -> String {
    let output = Command::new("promtool")
        .args(args)
        .current_dir(configs())
        .output()
        .unwrap_or_else(|e| {
            panic!("promtool not runnable ({e}); install it with: apt-get install -y prometheus")
        });
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "promtool {args:?} failed:\n{text}");
    text
}

#[test]
fn recording_rules_are_valid_promql() {
    let out = promtool(&["check", "rules", "prometheus-rules.yml"]);
    assert!(out.contains("SUCCESS"), "{out}");
}

#[test]
fn asr_and_ner_rules_compute_the_documented_ratios() {
    // The test file feeds series and expects ASR 0.5 / NER 0.8 for a tenant with busy and
    // no-answer failures, 1.0 for a tenant without user-failure series, and per-trunk sums.
    let out = promtool(&["test", "rules", "prometheus-rules.test.yml"]);
    assert!(out.contains("SUCCESS"), "{out}");
}

#[test]
fn every_metric_the_rules_read_is_registered_by_routing() {
    let rules = std::fs::read_to_string(configs().join("prometheus-rules.yml")).unwrap();
    let registry = Registry::new();
    let metrics = RoutingMetrics::register(&registry).unwrap();
    // Touch each vector once so it appears in the exposition.
    let table_free_labels =
        teams_sbc::routing::CallLabels::unknown(teams_sbc::routing::CallDirection::Inbound);
    metrics.attempt(&table_free_labels);
    metrics.answered(&table_free_labels, Duration::from_secs(1));
    metrics.failed(&table_free_labels, CallFailure::Status(486));
    let registered: Vec<String> = registry
        .gather()
        .iter()
        .map(|f| f.name().to_string())
        .collect();
    let read: Vec<&str> = rules
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .filter(|w| w.starts_with("calls_") && w.ends_with("_total"))
        .collect();
    assert!(read.len() >= 3, "no inputs found in the rules: {read:?}");
    for name in read {
        assert!(
            registered.iter().any(|r| r == name),
            "rules read {name}, which RoutingMetrics does not register ({registered:?})"
        );
    }
}
