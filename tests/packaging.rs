//! The systemd unit (`packaging/teams-sbc.service`): `systemd-analyze verify` accepts it
//! without a warning (with `ExecStart` pointed at the binary this build made, since verify
//! checks the command exists), and it keeps the properties the SBC relies on.

use std::path::Path;
use std::process::Command;

fn unit_text() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/teams-sbc.service");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn systemd_unit_verifies_cleanly() {
    let found = Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        found,
        "`systemd-analyze` not found: install it with `apt-get install -y systemd`"
    );
    let dir = tempfile::tempdir().unwrap();
    let unit = dir.path().join("teams-sbc.service");
    let text = unit_text().replace("/usr/local/bin/teams-sbc", env!("CARGO_BIN_EXE_teams-sbc"));
    std::fs::write(&unit, text).unwrap();
    let output = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&unit)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    let about_unit: Vec<&str> = stderr
        .lines()
        .filter(|line| line.contains("teams-sbc.service"))
        .collect();
    assert!(
        output.status.success() && about_unit.is_empty(),
        "systemd-analyze verify: {:?}\n{stderr}",
        output.status
    );
}

#[test]
fn systemd_unit_restarts_reloads_and_confines_the_sbc() {
    let text = unit_text();
    let directives: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#') && l.contains('='))
        .collect();
    for wanted in [
        "Type=notify",
        "NotifyAccess=main",
        "Restart=on-failure",
        "User=teams-sbc",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "AmbientCapabilities=CAP_NET_BIND_SERVICE",
        "CapabilityBoundingSet=CAP_NET_BIND_SERVICE",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "PrivateTmp=yes",
    ] {
        assert!(directives.contains(&wanted), "{wanted} missing");
    }
    for key in [
        "RestartSec=",
        "LimitNOFILE=",
        "WatchdogSec=",
        "TimeoutStopSec=",
    ] {
        assert!(
            directives.iter().any(|d| d.starts_with(key)),
            "{key} missing"
        );
    }
}
