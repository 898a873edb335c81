#!/usr/bin/env bash
# Runs every test of teams-sbc on a fresh Debian machine: installs the real peers the
# end-to-end tests drive (SIPp, openssl, baresip, sipsak, tshark, promtool) and the tools they
# check with (systemd-analyze) when missing, then cargo test.
set -euo pipefail
cd "$(dirname "$0")/.."

need_pkgs=()
command -v sipp >/dev/null 2>&1 || need_pkgs+=(sip-tester)
command -v openssl >/dev/null 2>&1 || need_pkgs+=(openssl)
command -v baresip >/dev/null 2>&1 || need_pkgs+=(baresip-core)
command -v sipsak >/dev/null 2>&1 || need_pkgs+=(sipsak)
command -v tshark >/dev/null 2>&1 || need_pkgs+=(tshark)
command -v promtool >/dev/null 2>&1 || need_pkgs+=(prometheus)
command -v systemd-analyze >/dev/null 2>&1 || need_pkgs+=(systemd)
if ((${#need_pkgs[@]})); then
	echo "installing test peers: ${need_pkgs[*]}"
	if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
	$SUDO apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_pkgs[@]}" >/dev/null
fi

# Tests open many loopback sockets (media sessions); use the whole open-file allowance.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

cargo test --all-targets --no-fail-fast "$@"
