#!/usr/bin/env bash
# Runs the SBC on loopback with the bundled development config (configs/dev.toml):
# builds it, generates development certificates into certs/ when missing, then runs
# in the foreground (Ctrl-C stops it; SIGHUP reloads the certificate).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --bin teams-sbc
if [ ! -s certs/sbc.pem ] || [ ! -s certs/sbc.key ]; then
	./target/release/teams-sbc dev-certs --out certs/ --base-fqdn sbc.example.test
fi
./target/release/teams-sbc check-config configs/dev.toml
exec ./target/release/teams-sbc run --config configs/dev.toml "$@"
