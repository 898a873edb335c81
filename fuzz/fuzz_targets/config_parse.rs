//! The configuration loader (`config::parse_str`) on arbitrary TOML text: every error must
//! be reported (never a panic), and what loads must validate again to the same result.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let base = Path::new("/nonexistent-fuzz-base");
    match teams_sbc::config::parse_str(text, "fuzz.toml", base, false) {
        Ok(_) => {
            // Deterministic: the same text loads again.
            assert!(teams_sbc::config::parse_str(text, "fuzz.toml", base, false).is_ok());
        }
        Err(errors) => {
            assert!(
                !errors.0.is_empty(),
                "an error result names at least one error"
            );
            let _ = errors.to_string();
        }
    }
});
