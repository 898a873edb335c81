#!/usr/bin/env bash
# An interop run of the SBC against peers nobody here wrote, on loopback, as root on a Debian
# machine (installs what it lacks: sip-tester, baresip-core, kamailio + kamailio-tls-modules,
# tcpdump, python3):
#
#   carrier: SIPp over UDP, 127.0.0.2:25070, RTP with a tone (PCMU)
#   SBC: teams-sbc, UDP 127.0.0.1:25060 (carrier), TLS 127.0.0.1:25061 (Microsoft)
#   "Microsoft": Kamailio, 127.0.0.3, mutual TLS to the SBC with the dev
#       sip.pstnhub.microsoft.com certificate (both ways), record-routing, registrar for
#       the Teams clients (scripts/interop/kamailio.cfg)
#   Teams clients: baresip over TLS with SRTP (SDES), each playing its own tone and
#       recording what it hears: alice +4930123450 (127.0.0.5), bob +4930123451 (127.0.0.6).
#       No ICE from them: baresip 1.0's ice module gathers no loopback candidate, so on
#       loopback their SDP names no ICE agent (the SBC's trunk is a bypass one all the same,
#       answering with ICE-lite).
#   media: the SBC on 127.0.0.1:26200-26599 (every fixed port here is below Linux's
#       ephemeral range, so nothing else on the machine picks it by chance)
#   Microsoft's media processor: a third baresip (127.0.0.7), brought into the call by two
#       SIPp in 3PCC (127.0.0.8; scripts/interop/sipp/mp_*.xml), which add fresh ICE
#       credentials and a host candidate to its offer
#
# Calls, each checked with tones both ways before and after its flow:
#   1. PSTN -> Teams: the carrier calls alice; alice transfers to bob (REFER from Teams,
#      the SBC's new INVITE to Microsoft), bob hangs up.
#   2. Teams -> PSTN: alice calls the carrier; Microsoft escalates to a group call: a
#      re-INVITE from the proxy with the media processor's new address, SDES key and ICE
#      credentials; the media processor hangs up and Microsoft ends the call with BYE.
# Tones: carrier 1400 Hz (call 1) and 1600 Hz (call 2); alice 700, bob 900, the media
# processor 1100. The carrier side is checked from a capture of the SBC's RTP towards it
# (tcpdump), the Teams side from what each baresip decoded (its sndfile recordings); a
# Goertzel detector (scripts/interop/lab.py) finds the tones.
#
# Usage: scripts/interop.sh [--release]   (default: the debug build `cargo test` makes)
# Environment: INTEROP_SBC_BIN (a teams-sbc binary to use instead of building one);
# INTEROP_TALK_SECONDS (4) how long each phase of a call talks before the next
# step; INTEROP_KEEP=1 keeps the run directory even when everything passed.
# Exit 0 when every step and every tone check passed; otherwise the first failure is named
# on a line "interop: FAILED: ...", and the run directory keeps every log, recording and
# capture (SIPp message traces, Kamailio's log with each INVITE's SDP, baresip's logs).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
HERE=$ROOT/scripts/interop
TALK=${INTEROP_TALK_SECONDS:-4}
# Each tone must be heard for at least this long in each place it is checked.
MIN_TONE_SECONDS=$(awk -v talk="$TALK" 'BEGIN { print (talk - 1.5 < 1) ? 1 : talk - 1.5 }')
PROFILE=debug
[ "${1:-}" = "--release" ] && PROFILE=release

step() { echo "== $(date +%T) $*"; }

# --- peers ---------------------------------------------------------------------------------
need_pkgs=()
command -v sipp >/dev/null 2>&1 || need_pkgs+=(sip-tester)
command -v baresip >/dev/null 2>&1 || need_pkgs+=(baresip-core)
command -v kamailio >/dev/null 2>&1 || need_pkgs+=(kamailio)
dpkg -s kamailio-tls-modules >/dev/null 2>&1 || need_pkgs+=(kamailio-tls-modules)
command -v tcpdump >/dev/null 2>&1 || need_pkgs+=(tcpdump)
command -v python3 >/dev/null 2>&1 || need_pkgs+=(python3)
if ((${#need_pkgs[@]})); then
	step "installing peers: ${need_pkgs[*]}"
	if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
	$SUDO apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_pkgs[@]}" >/dev/null
fi
# The Debian package may start its own Kamailio (systemd); ours uses its own addresses and
# ports, so a packaged one on 5060 does not disturb it.

if [ -n "${INTEROP_SBC_BIN:-}" ]; then
	SBC_BIN=$INTEROP_SBC_BIN
elif [ "$PROFILE" = release ]; then
	cargo build --release --bin teams-sbc
	SBC_BIN=$ROOT/target/release/teams-sbc
else
	cargo build --bin teams-sbc
	SBC_BIN=$ROOT/target/debug/teams-sbc
fi

RUN=$(mktemp -d /tmp/interop.XXXXXX)
LAB=(python3 "$HERE/lab.py")
PIDS=()
PASSED=0
started() { PIDS+=("$1"); }
stop_all() { # newest first: the clients unregister while Kamailio still answers
	local i pid
	for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
		pid=${PIDS[i]}
		kill -TERM "$pid" 2>/dev/null || continue
		for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$pid" 2>/dev/null || true
	done
}
finish() {
	local rc=$?
	trap - EXIT
	stop_all
	if [ "$rc" -eq 0 ] && [ -z "${INTEROP_KEEP:-}" ]; then
		rm -rf "$RUN"
	else
		echo "interop: logs, recordings and captures in $RUN" >&2
	fi
	exit "$rc"
}
trap finish EXIT
trap 'exit 130' INT TERM

fail() {
	echo "interop: FAILED: $*" >&2
	for log in "$RUN"/sbc.log "$RUN"/kamailio.log "$RUN"/*/baresip.log; do
		[ -s "$log" ] || continue
		echo "--- last lines of $log" >&2
		tail -n 15 "$log" >&2
	done
	echo "interop: $PASSED passed, 1 failed" >&2
	exit 1
}
ok() { PASSED=$((PASSED + 1)); echo "   ok: $*"; }

# wait_for SECONDS WHAT COMMAND...: poll COMMAND every 0.2 s; fail after SECONDS.
wait_for() {
	local limit=$1 what=$2
	shift 2
	local deadline=$((SECONDS + limit))
	until "$@" >/dev/null; do
		((SECONDS < deadline)) || fail "$what (gave up after ${limit} s)"
		sleep 0.2
	done
}
# events_of NAME TYPE: how many events of TYPE baresip NAME has reported.
events_of() { grep -c "\"type\": \"$2\"" "$RUN/$1/events.log" 2>/dev/null || true; }
has_events() { [ "$(events_of "$1" "$2")" -ge "$3" ]; }
alive() { kill -0 "$1" 2>/dev/null; }
# listening udp|tcp IP PORT: a socket is bound there (from /proc, no tools needed).
listening() {
	local a b c d
	IFS=. read -r a b c d <<<"$2"
	grep -q "$(printf ' %02X%02X%02X%02X:%04X ' "$d" "$c" "$b" "$a" "$3")" "/proc/net/$1"
}
# wait_exit SECONDS WHAT PID: wait for a process of ours to end and require status 0.
wait_exit() {
	local limit=$1 what=$2 pid=$3 deadline=$((SECONDS + $1)) status=0
	while alive "$pid"; do
		((SECONDS < deadline)) || fail "$what did not end within ${limit} s"
		sleep 0.2
	done
	wait "$pid" || status=$?
	[ "$status" -eq 0 ] || fail "$what ended with status $status"
}
http_status() { # http_status HOST PORT PATH -> prints the status code
	exec 3<>"/dev/tcp/$1/$2" || return 1
	printf 'GET %s HTTP/1.0\r\nHost: %s\r\n\r\n' "$3" "$1" >&3
	local line
	read -r line <&3 || true
	exec 3<&-
	echo "$line" | cut -d' ' -f2
}
ready() { # fails at once when Kamailio or the SBC has exited
	alive "$KAMAILIO_PID" || fail "Kamailio exited (see kamailio.log)"
	alive "$SBC_PID" || fail "the SBC exited (see sbc.log)"
	[ "$(http_status 127.0.0.1 29090 /readyz 2>/dev/null)" = 200 ]
}
metric() { # metric NAME LABEL_FILTER: the sum of a metric's samples whose labels match
	exec 3<>/dev/tcp/127.0.0.1/29090
	printf 'GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n' >&3
	awk -v name="$1" -v filter="$2" '$1 ~ "^"name"({|$)" && index($1, filter) { sum += $2 } END { print sum + 0 }' <&3
	exec 3<&-
}

# --- SBC -----------------------------------------------------------------------------------
step "run directory $RUN"
"$SBC_BIN" dev-certs --out "$RUN/certs" --base-fqdn sbc.example.test >/dev/null
cat >"$RUN/sbc.toml" <<EOF
[sbc]
base_fqdn = "sbc.example.test"
sip_signaling_port = 25061
vendor = "teams-sbc"
model = "interop"

[tls]
cert_chain = "certs/sbc.pem"
private_key = "certs/sbc.key"
roots = "certs/ca.pem"
teams_peer_san = "sip.pstnhub.microsoft.com"

[[listen]]
transport = "udp"
address = "127.0.0.1:25060"

[[listen]]
transport = "tls"
address = "127.0.0.1:25061"

[teams]
proxies = [{ address = "127.0.0.3:25061", tls_name = "sip.pstnhub.microsoft.com" }]
options_interval_seconds = 60
allowed_source_cidrs = ["127.0.0.3/32"]
# A bypass trunk: ICE-lite on the Teams leg, and the escalation's ICE credentials matter.
media_bypass = true

[[carrier_trunk]]
name = "pstn"
address = "127.0.0.2:25070"
transport = "udp"
codecs = ["PCMU"]
options_ping = false

[[tenant]]
name = "acme"
fqdn = "acme.sbc.example.test"
numbers = ["+4930123400-+4930123499"]
carrier_trunk = "pstn"

[media.carrier]
bind = "127.0.0.1"
port_min = 26200
port_max = 26399

[media.teams]
bind = "127.0.0.1"
port_min = 26400
port_max = 26599

[ops]
metrics_listen = "127.0.0.1:29090"
log_level = "${INTEROP_SBC_LOG_LEVEL:-info}"
EOF
"$SBC_BIN" check-config "$RUN/sbc.toml" >"$RUN/check-config.log" 2>&1 ||
	{ cat "$RUN/check-config.log" >&2; fail "the generated SBC config does not load"; }

# --- Kamailio, the "Microsoft" proxy ---------------------------------------------------------
C=$RUN/certs
cat >"$RUN/kamailio-tls.cfg" <<EOF
[server:default]
method = TLSv1.2+
certificate = $C/teams.pem
private_key = $C/teams.key
verify_certificate = no
require_certificate = no

[server:127.0.0.3:25061]
method = TLSv1.2+
certificate = $C/teams.pem
private_key = $C/teams.key
ca_list = $C/ca.pem
verify_certificate = yes
require_certificate = yes

[server:127.0.0.3:25062]
method = TLSv1.2+
certificate = $C/teams.pem
private_key = $C/teams.key
verify_certificate = no
require_certificate = no

[client:default]
method = TLSv1.2+
certificate = $C/teams.pem
private_key = $C/teams.key
ca_list = $C/ca.pem
verify_certificate = yes
require_certificate = yes
server_name = sbc.example.test
EOF
step "starting Kamailio (Microsoft proxy stand-in)"
mkdir -p "$RUN/kamailio-run"
kamailio -f "$HERE/kamailio.cfg" -A "TLS_CFG=\"$RUN/kamailio-tls.cfg\"" -c >"$RUN/kamailio-check.log" 2>&1 ||
	{ cat "$RUN/kamailio-check.log" >&2; fail "kamailio.cfg does not load"; }
kamailio -f "$HERE/kamailio.cfg" -A "TLS_CFG=\"$RUN/kamailio-tls.cfg\"" -DD -E -m 64 -M 8 \
	-Y "$RUN/kamailio-run" -P "$RUN/kamailio-run/kamailio.pid" >"$RUN/kamailio.log" 2>&1 &
started $!
KAMAILIO_PID=$!
kamailio_listening() {
	alive "$KAMAILIO_PID" || fail "Kamailio exited (see kamailio.log)"
	listening tcp 127.0.0.3 25061 && listening tcp 127.0.0.3 25062 && listening udp 127.0.0.3 25070
}
wait_for 20 "Kamailio to listen" kamailio_listening

step "starting the SBC"
(cd "$RUN" && exec "$SBC_BIN" run --config "$RUN/sbc.toml") >"$RUN/sbc.log" 2>&1 &
started $!
SBC_PID=$!
wait_for 30 "the SBC to be ready (/readyz: listening, Kamailio answering its OPTIONS over mutual TLS)" ready
alive "$KAMAILIO_PID" || fail "Kamailio exited"
ok "SBC ready: its OPTIONS reach Kamailio over mutual TLS and are answered"

# --- baresip: the Teams clients and the media processor ---------------------------------------
cat "$C/teams.pem" "$C/teams.key" >"$RUN/teams-client.pem"
for tone in 700 900 1100; do "${LAB[@]}" tone-wav "$RUN/tone-$tone.wav" "$tone" 120; done
# start_baresip NAME IP TONE ACCOUNT
start_baresip() {
	local name=$1 ip=$2 tone=$3 account=$4 dir=$RUN/$1
	mkdir -p "$dir"
	cat >"$dir/config" <<EOF
poll_method		epoll
sip_listen		$ip:25060
sip_certificate		$RUN/teams-client.pem
sip_cafile		$C/ca.pem
audio_player		aubridge,$name-speaker
audio_source		aufile,$RUN/tone-$tone.wav
audio_alert		aubridge,$name-alert
rtp_ports		27000-27099
net_interface		$ip
ctrl_tcp_listen		$ip:25090
snd_path		$dir
module_path		/usr/lib/baresip/modules
module			g711.so
module			aubridge.so
module			aufile.so
module			srtp.so
module			sndfile.so
module			menu.so
module			ctrl_tcp.so
module_app		account.so
EOF
	echo "$account" >"$dir/accounts"
	(cd "$dir" && exec baresip -f "$dir") </dev/null >"$dir/baresip.log" 2>&1 &
	started $!
	mkfifo "$dir/commands"
	"${LAB[@]}" baresip-agent "$ip:25090" "$dir/events.log" "$dir/commands" &
	started $!
}
TEAMS_ACCOUNT=";outbound=\"sip:127.0.0.3:25062;transport=tls\";regint=600;answermode=auto;mediaenc=srtp-mand;audio_codecs=PCMU"
step "starting baresip: alice and bob (Teams clients), the media processor"
start_baresip alice 127.0.0.5 700 "<sip:+4930123450@sip.pstnhub.microsoft.com;transport=tls>$TEAMS_ACCOUNT"
start_baresip bob 127.0.0.6 900 "<sip:+4930123451@sip.pstnhub.microsoft.com;transport=tls>$TEAMS_ACCOUNT"
start_baresip mp 127.0.0.7 1100 "<sip:mp@127.0.0.7;transport=udp>;regint=0;answermode=manual;mediaenc=srtp-mand;audio_codecs=PCMU"
# (before their control connections may be up: read their logs)
wait_for 20 "alice to register with Kamailio over TLS" grep -q 'TLS/v4} 200 OK' "$RUN/alice/baresip.log"
wait_for 20 "bob to register with Kamailio over TLS" grep -q 'TLS/v4} 200 OK' "$RUN/bob/baresip.log"
ok "alice and bob registered with Kamailio over TLS"

step "capturing the SBC's RTP towards the carrier"
tcpdump -i lo -n -U -s 0 -w "$RUN/carrier.pcap" 'udp and dst host 127.0.0.2 and dst portrange 26000-26199' \
	>"$RUN/tcpdump.log" 2>&1 &
started $!
TCPDUMP_PID=$!
wait_for 10 "tcpdump to start" grep -q 'listening on' "$RUN/tcpdump.log"

"${LAB[@]}" tone-pcap "$RUN/carrier-call1.pcap" 1400 60
"${LAB[@]}" tone-pcap "$RUN/carrier-call2.pcap" 1600 60
# sipp_bg NAME ARGS...: one SIPp call in the background (LAST_PID), its messages and errors logged.
sipp_bg() {
	local name=$1
	shift
	(cd "$RUN" && exec sipp "$@" -m 1 -timeout 150s -timeout_error -nostdin \
		-trace_msg -message_file "$RUN/$name-messages.log" \
		-trace_err -error_file "$RUN/$name-errors.log") >"$RUN/$name.log" 2>&1 &
	started $!
	LAST_PID=$!
}
# baresip_do NAME COMMAND [PARAMS]: a command through NAME's control agent; fails unless
# baresip answers it with ok.
COMMANDS=0
baresip_do() {
	local name=$1 token
	COMMANDS=$((COMMANDS + 1))
	token="cmd$COMMANDS"
	timeout 10 tee "$RUN/$name/commands" <<<"$token ${*:2}" >/dev/null ||
		fail "baresip $name's control agent took no command"
	wait_for 10 "baresip $name to answer \`${*:2}\`" grep -q "\"token\": \"$token\"" "$RUN/$name/events.log"
	grep "\"token\": \"$token\"" "$RUN/$name/events.log" | grep -q '"ok": true' ||
		fail "baresip $name refused \`${*:2}\`: $(grep "\"token\": \"$token\"" "$RUN/$name/events.log")"
}
talk() { sleep "$TALK"; }
random_hex() { od -An -N "$1" -tx1 /dev/urandom | tr -d ' \n'; }

# --- call 1: PSTN -> Teams, then a transfer from Teams -----------------------------------------
step "call 1: PSTN -> Teams (carrier calls alice +4930123450)"
sipp_bg carrier-call1 -sf "$HERE/sipp/carrier_uac.xml" -i 127.0.0.2 -p 25070 -mi 127.0.0.2 -mp 26000 \
	-key caller +4969111222 -s +4930123450 127.0.0.1:25060
CARRIER1_PID=$LAST_PID
wait_for 20 "alice to answer the carrier's call (through SBC and Kamailio)" has_events alice CALL_ESTABLISHED 1
ok "PSTN -> Teams call established: carrier (SIPp/UDP) -> SBC -> Kamailio (TLS) -> alice (TLS, SRTP)"
talk
step "call 1: alice transfers to bob (REFER)"
baresip_do alice transfer "sip:+4930123451@sip.pstnhub.microsoft.com"
wait_for 20 "bob to answer the transfer's new call" has_events bob CALL_ESTABLISHED 1
wait_for 20 "alice's call to close after the transfer (NOTIFY 200, then her BYE)" has_events alice CALL_CLOSED 1
ok "transfer: SBC answered REFER, its INVITE reached bob through Kamailio, alice left"
talk
step "call 1: bob hangs up"
baresip_do bob hangup
wait_exit 20 "the carrier's SIPp of call 1 (BYE from the SBC)" "$CARRIER1_PID"
ok "call 1 ended: bob's BYE reached the carrier"

# --- call 2: Teams -> PSTN, then the group-call escalation -------------------------------------
step "call 2: Teams -> PSTN (alice calls the carrier +4969111222)"
sipp_bg carrier-call2 -sf "$HERE/sipp/carrier_uas.xml" -i 127.0.0.2 -p 25070 -mi 127.0.0.2 -mp 26100
CARRIER2_PID=$LAST_PID
wait_for 10 "the carrier's SIPp to listen" listening udp 127.0.0.2 25070
baresip_do alice dial "sip:+4969111222@sip.pstnhub.microsoft.com"
wait_for 20 "the carrier to answer alice's call" has_events alice CALL_ESTABLISHED 2
ok "Teams -> PSTN call established: alice (TLS, SRTP) -> Kamailio -> SBC (mutual TLS) -> carrier (UDP)"
talk

step "call 2: Microsoft escalates to a group call (re-INVITE towards the media processor)"
# The dialog as Kamailio saw it: alice's INVITE (from the client side) and the SBC's 200.
invite_line=$(grep 'dialog request: method=INVITE from_port=25062' "$RUN/kamailio.log" | tail -n 1)
[ -n "$invite_line" ] || fail "no INVITE from alice in Kamailio's log"
field() { sed -n "s/.* $2=\\(.*\\) $3=.*/\\1/p" <<<"$1"; }
call_id=$(field "$invite_line" call_id from)
answer_line=$(grep "dialog answer: call_id=$call_id " "$RUN/kamailio.log" | tail -n 1)
[ -n "$answer_line" ] || fail "no 200 from the SBC for call $call_id in Kamailio's log"
alice_cseq=$(field "$invite_line" cseq contact)
alice_contact=$(field "$invite_line" contact ruri)
teams_from=$(field "$answer_line" from to)
sbc_to=$(field "$answer_line" to cseq)
sbc_contact=$(sed -n 's/.* contact=//p' <<<"$answer_line")
sbc_target=$(sed -n 's/^[^<]*<\([^>]*\)>.*/\1/p' <<<"$sbc_contact")
[ -n "$sbc_target" ] && [ -n "$teams_from" ] && [ -n "$sbc_to" ] || fail "could not read the dialog from: $answer_line"
sipp_bg mp-reinvite -sf "$HERE/sipp/mp_reinvite.xml" -3pcc 127.0.0.8:25099 -i 127.0.0.8 -p 25071 \
	-key sbc_target "$sbc_target" -key teams_from "$teams_from" -key sbc_to "$sbc_to" \
	-key teams_contact "$alice_contact" -key reinvite_cseq $((alice_cseq + 1)) -key bye_cseq $((alice_cseq + 2)) \
	-key proxy 127.0.0.3:25070 -key ice_ufrag "$(random_hex 4)" -key ice_pwd "$(random_hex 12)" \
	-trace_logs -log_file "$RUN/mp-reinvite-actions.log" 127.0.0.3:25070
MP_REINVITE_PID=$LAST_PID
# (SIPp binds its 3PCC listener to every address)
wait_for 10 "the re-INVITE twin to listen for its 3PCC peer" listening tcp 0.0.0.0 25099
sipp_bg mp-leg -sf "$HERE/sipp/mp_leg.xml" -3pcc 127.0.0.8:25099 -i 127.0.0.8 -p 25080 \
	-key sbc_call_id "$call_id"
MP_LEG_PID=$LAST_PID
wait_for 10 "the media processor's SIPp to listen" listening udp 127.0.0.8 25080
baresip_do mp dial "sip:escalate@127.0.0.8:25080"
wait_for 20 "the SBC to accept the escalation re-INVITE (media processor's call established)" \
	has_events mp CALL_ESTABLISHED 1
# The SBC's two answers in this dialog (Kamailio logs each 200's SDP): a fresh SDES key in
# the second (a re-keying Teams gets a new key of ours), on the same address and port.
sbc_answers() { # sbc_answers PATTERN: the lines of the SBC's 200 SDPs of call 2 matching it
	awk -v start="sdp of 200 $call_id:" -v pattern="$1" '
		index($0, start) { inside = 1; next }
		inside && /^$/ { inside = 0 }
		inside && $0 ~ pattern { print }' "$RUN/kamailio.log"
}
keys=$(sbc_answers '^a=crypto:' | sort -u | wc -l)
media_lines=$(sbc_answers '^(c=|m=audio )' | sort -u | wc -l)
[ "$keys" -eq 2 ] || fail "the SBC's answers to alice and to the escalation: expected 2 different SDES keys, got $keys"
[ "$media_lines" -eq 2 ] || fail "the SBC's c=/m= changed across the escalation: $(sbc_answers '^(c=|m=audio )')"
ok "escalation: the SBC answered Microsoft's re-INVITE (the media processor's address, key and ICE credentials) with a fresh key of its own on the same address and port"
talk
step "call 2: the media processor leaves; Microsoft ends the call"
baresip_do mp hangup
wait_exit 20 "the media processor's SIPp" "$MP_LEG_PID"
wait_exit 20 "Microsoft's re-INVITE/BYE SIPp" "$MP_REINVITE_PID"
wait_exit 20 "the carrier's SIPp of call 2 (BYE from the SBC)" "$CARRIER2_PID"
ok "call 2 ended: Microsoft's BYE reached the carrier"
# alice's client still holds the dialog Microsoft moved to the media processor and ended;
# her hang-up closes her recording (the SBC answers her BYE for a dialog it has ended).
baresip_do alice hangup
wait_for 10 "alice's second call to close" has_events alice CALL_CLOSED 2

kill -TERM "$TCPDUMP_PID" 2>/dev/null || true
wait "$TCPDUMP_PID" 2>/dev/null || true

# --- tones ---------------------------------------------------------------------------------
step "tones (Goertzel, at least $MIN_TONE_SECONDS s each)"
check() { "$@" || fail "tone check: ${*:2}"; }
mapfile -t alice_rec < <(ls "$RUN"/alice/dump-*-dec.wav 2>/dev/null | sort)
bob_rec=$(ls "$RUN"/bob/dump-*-dec.wav 2>/dev/null | head -n 1)
mp_rec=$(ls "$RUN"/mp/dump-*-dec.wav 2>/dev/null | head -n 1)
((${#alice_rec[@]} == 2)) || fail "expected 2 recordings of alice's calls, found ${#alice_rec[@]}"
[ -n "$bob_rec" ] && [ -n "$mp_rec" ] || fail "missing a recording of bob or the media processor"
check "${LAB[@]}" check-pcap "$RUN/carrier.pcap" 26000 700,900 "$MIN_TONE_SECONDS"
ok "call 1, Teams -> carrier: alice's 700 Hz, then bob's 900 Hz after the transfer"
check "${LAB[@]}" check-wav "${alice_rec[0]}" 1400 "$MIN_TONE_SECONDS"
check "${LAB[@]}" check-wav "$bob_rec" 1400 "$MIN_TONE_SECONDS"
ok "call 1, carrier -> Teams: the carrier's 1400 Hz at alice, then at bob"
check "${LAB[@]}" check-pcap "$RUN/carrier.pcap" 26100 700,1100 "$MIN_TONE_SECONDS"
ok "call 2, Teams -> carrier: alice's 700 Hz, then the media processor's 1100 Hz after the escalation"
check "${LAB[@]}" check-wav "${alice_rec[1]}" 1600 "$MIN_TONE_SECONDS"
check "${LAB[@]}" check-wav "$mp_rec" 1600 "$MIN_TONE_SECONDS"
ok "call 2, carrier -> Teams: the carrier's 1600 Hz at alice, then at the media processor"

echo "SBC media counters: $(metric media_packets_total 'direction="carrier_to_teams"') carrier->Teams," \
	"$(metric media_packets_total 'direction="teams_to_carrier"') Teams->carrier," \
	"dropped: $(metric media_packets_dropped_total '') (srtp_auth $(metric media_packets_dropped_total 'reason="srtp_auth"'))"
alive "$SBC_PID" || fail "the SBC exited"
echo "interop: $PASSED passed, 0 failed"
