#!/usr/bin/env bash
# bench-media.sh - loopback media load benchmark, ours against rtpengine, in ONE invocation.
#
# Runs (all on 127.0.0.1, same box, same generator `bench-media` for every path):
#   1. direct      generator sockets talk to each other, no relay: the floor
#   2. ours        teams_sbc::media engine in the generator's process, RTP->SRTP (its Teams leg
#                  passes nothing but SRTP)
#   3. rtpengine   userspace rtpengine (peer harness run-peer.sh -p media), sessions set up over
#                  its ng protocol (the peer's ngctl.py), RTP->RTP and RTP->SRTP (SDES
#                  AES_CM_128_HMAC_SHA1_80 towards the "Teams" side)
#   4. the peer harness itself (rtplat, REPS=1: direct rtp srtp) for the published baseline
# Tests:
#   light       LIGHT_SESSIONS (100) sessions carrier->Teams only at 50 pps = 5000 pps: the peer
#               harness's latency load (100 streams one-way), every path incl. rtpengine
#   latency     SESSIONS ("1000 5000") sessions x 50 pps each way (20 ms G.711, 172-byte RTP),
#               SECS (8) s, first WARMUP (1) s excluded from latency. In SRTP mode the Teams
#               end decrypts every packet (webrtc-srtp) and encrypts what it sends.
#               rtpengine gets RTPE_SESSIONS ("1000"): it needs 4 fds per session and the
#               open-files hard limit here is 20000.
#   scale       SCALE ("5000:10"): SESSIONS:PPS pairs, each way - 5000 sessions at the packet
#               rate of 1000 x 50 pps, to separate the session count from the packet rate
#   throughput  TP_SESSIONS (500) sessions, carrier->Teams only (RTP in, RTP or SRTP out, as
#               the peer harness), total rate doubling from TP_START (25000) pps while it
#               passes, then BISECT (2) halvings, TP_SECS (3) s per step, capped at TP_MAX
#               (800000). pass = loss <= LOSS_OK (0.1 %) and p99 <= P99_OK_US (10000 us).
#               Every step runs against a fresh relay (new process / fresh rtpengine).
# Scheduling: this box is shared (other builds run on the same 2 cores), so by default the
#        measurement runs under SCHED_FIFO priority 10 (`chrt -f 10`, root only; RT=0 to
#        disable): generator, our engine, rtpengine and the peer harness all inherit it, so
#        every path gets the same treatment and co-tenants cannot preempt them. The kernel's
#        RT throttling (sched_rt_runtime_us) still leaves 5 % of each core to others.
# Knobs: the variables above, PEER=0 to skip step 4, RTPE=0 to skip rtpengine entirely,
#        QUICK=1 (100 sessions, 3 s, small throughput ladder: a functional check, ~1 min).
# Output: a markdown table on stdout, saved with the raw RESULT lines under docs/bench/
#         (OUT_DIR) as media-<UTC timestamp>.md and .tsv.
# CPU: % of one core (200 % = the whole box). Ours: process CPU minus the generator's own
#      threads; rtpengine: its process. The loopback receive path of a packet is charged to
#      whoever sends it, so each side carries part of the other's kernel cost.
set -uo pipefail

HERE=$(cd "$(dirname "$0")/.." && pwd)
# PEERS: a checkout of the peer harness (Kamailio + rtpengine scripts and the rtplat media
# tool; not part of this repository). Required: its ng client drives rtpengine.
PEERS=${PEERS:-}
OUT_DIR=${OUT_DIR:-$HERE/docs/bench}
LIGHT_SESSIONS=${LIGHT_SESSIONS:-100}
SESSIONS=${SESSIONS:-1000 5000}
SCALE=${SCALE:-5000:10}
RTPE_SESSIONS=${RTPE_SESSIONS:-1000}
SECS=${SECS:-8}
WARMUP=${WARMUP:-1}
TP_SESSIONS=${TP_SESSIONS:-500}
TP_SECS=${TP_SECS:-3}
TP_START=${TP_START:-25000}
TP_MAX=${TP_MAX:-800000}
BISECT=${BISECT:-2}
LOSS_OK=${LOSS_OK:-0.1}
P99_OK_US=${P99_OK_US:-10000}
PEER=${PEER:-1}
RTPE=${RTPE:-1}
POOL_BASE=61000 # generator ports for rtpengine sessions (rtpengine itself uses 10000-29999)
if [ "${QUICK:-0}" = 1 ]; then
	LIGHT_SESSIONS=20; SESSIONS="100"; SCALE="200:10"; RTPE_SESSIONS=100; SECS=3; TP_SESSIONS=100; TP_SECS=2; TP_MAX=100000; BISECT=0; PEER=0
fi
BIN=${BENCH_BIN:-$HERE/target/release/bench-media} # BENCH_BIN: use a prebuilt binary, skip cargo

# ng_alloc N MODE(rtp|srtp) MAPFILE: N sessions in rtpengine over ng; generator endpoints are a
# pool of 8 ports per side. Map line: a_port relay_for_a b_port relay_for_b key_to_b key_from_b
ng_alloc() {
	python3 - "$PEERS/media" "$@" "$POOL_BASE" <<'PY'
import base64, os, re, sys
sys.path.insert(0, sys.argv[1])
import ngctl
n, mode, path, base = int(sys.argv[2]), sys.argv[3], sys.argv[4], int(sys.argv[5])
pool = 8
ng = ngctl.NG()
tag = "%d" % os.getpid()
out = []
for i in range(n):
    a_port, b_port = base + i % pool, base + pool + i % pool
    cid = "bm-%s-%d" % (tag, i)
    offer = {"command": "offer", "call-id": cid, "from-tag": "a%d" % i,
             "sdp": ngctl.sdp(a_port, sess="a%d" % i), "replace": ["origin", "session-connection"],
             "ICE": "remove", "DTLS": "off"}
    if mode == "srtp":
        offer["transport-protocol"] = "RTP/SAVP"
        offer["SDES"] = ["no-" + s for s in ngctl.OTHER_SUITES]
    r = ng.cmd(offer)
    ngctl.check(r, "offer")
    relay_for_b = ngctl.media_port(r["sdp"])
    key_to_b = key_from_b = "-"
    if mode == "srtp":
        m = re.search(rb"a=crypto:(\d+) AES_CM_128_HMAC_SHA1_80 inline:([A-Za-z0-9+/=]+)", r["sdp"])
        if not m:
            sys.exit("no AES_CM_128_HMAC_SHA1_80 crypto in rtpengine's offer")
        key_to_b = m.group(2).decode()
        key_from_b = base64.b64encode(os.urandom(30)).decode()
        ans = ngctl.sdp(b_port, srtp_key=key_from_b, sess="b%d" % i).replace(
            "a=crypto:1 ", "a=crypto:%s " % m.group(1).decode())
    else:
        ans = ngctl.sdp(b_port, sess="b%d" % i)
    r = ng.cmd({"command": "answer", "call-id": cid, "from-tag": "a%d" % i, "to-tag": "b%d" % i,
                "sdp": ans, "replace": ["origin", "session-connection"], "ICE": "remove"})
    ngctl.check(r, "answer")
    out.append("%d %d %d %d %s %s" % (a_port, ngctl.media_port(r["sdp"]), b_port, relay_for_b, key_to_b, key_from_b))
open(path, "w").write("\n".join(out) + "\n")
PY
}

# gen ARGS...: one generator run; prints its RESULT line (the human summary goes to the log)
gen() {
	"$BIN" "$@" 2>>"$LOG" | grep '^RESULT'
}

case "${1:-}" in
__rtpe) # inside run-peer.sh: __rtpe MODE SESSIONS GEN_ARGS...
	mode=$2 n=$3
	shift 3
	w=$(mktemp -d /tmp/bench-media-rtpe.XXXXXX)
	LOG=${LOG:-/dev/stderr}
	if ng_alloc "$n" "$mode" "$w/map" >&2; then
		srtp=()
		[ "$mode" = srtp ] && srtp=(--srtp)
		gen --relay map --map "$w/map" --sessions "$n" "${srtp[@]}" --sut-pid "$RTPE_PID" "$@"
	fi
	rm -rf "$w"
	exit 0
	;;
esac

# run_path PATH(direct|ours-srtp|rtpe-rtp|rtpe-srtp) LABEL SESSIONS GEN_ARGS...
run_path() {
	local path=$1 label=$2 n=$3
	shift 3
	case $path in
	direct) gen --relay direct --sessions "$n" --label "$label" "$@" ;;
	ours-srtp) gen --relay ours --srtp --sessions "$n" --label "$label" "$@" ;;
	rtpe-rtp | rtpe-srtp)
		LOG=$LOG "$PEER_COPY/run-peer.sh" -p media -t 300 -- "$0" __rtpe "${path#rtpe-}" "$n" --label "$label" "$@" 2>>"$LOG"
		;;
	esac
}

# A step also fails when the generator could not send 95 % of the offered rate (its own limit).
passes() { # RESULT line -> 0 if loss <= LOSS_OK and p99 <= P99_OK_US and the rate was offered
	python3 -c '
import sys
kv = dict(x.split("=", 1) for x in sys.argv[1].split()[1:] if "=" in x)
ok = float(kv.get("loss_pct", 100)) <= float(sys.argv[2]) and 0 <= float(kv.get("k_p99", -1)) <= float(sys.argv[3]) \
    and float(kv.get("send_pps", 0)) >= 0.95 * float(kv.get("offered_pps", 1))
sys.exit(0 if ok else 1)' "$1" "$LOSS_OK" "$P99_OK_US"
}

# tp_search PATH: throughput ladder; RESULT lines to the TSV, one TPMAX line at the end
tp_search() {
	local path=$1 rate=$TP_START lo=0 hi=0 line i=0
	while [ "$rate" -le "$TP_MAX" ]; do
		line=$(run_path "$path" "$path/tput" "$TP_SESSIONS" --direction fwd --rate "$rate" --seconds "$TP_SECS" --warmup 0.5)
		echo "$line" | tee -a "$TSV" | short
		if [ -n "$line" ] && passes "$line"; then lo=$rate; else hi=$rate; break; fi
		rate=$((rate * 2))
	done
	while [ "$hi" -gt 0 ] && [ $i -lt "$BISECT" ]; do
		rate=$(((lo + hi) / 2 / 1000 * 1000))
		{ [ "$rate" -gt "$lo" ] && [ "$rate" -lt "$hi" ]; } || break
		line=$(run_path "$path" "$path/tput" "$TP_SESSIONS" --direction fwd --rate "$rate" --seconds "$TP_SECS" --warmup 0.5)
		echo "$line" | tee -a "$TSV" | short
		if [ -n "$line" ] && passes "$line"; then lo=$rate; else hi=$rate; fi
		i=$((i + 1))
	done
	echo "TPMAX path=$path max_pps_ok=$lo first_fail=$hi" | tee -a "$TSV" >&2
}

short() { # one console line per RESULT
	awk '/^RESULT/ { for (i = 2; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
		printf "  %-16s n=%-5s off=%-7s fwd=%-7s loss=%-7s%% p50=%-5s p99=%-6s p999=%-6s relay=%s%% gen=%s%% auth_fail=%s invalid=%s\n",
		v["label"], v["sessions"], v["offered_pps"], v["fwd_pps"], v["loss_pct"], v["k_p50"], v["k_p99"], v["k_p999"], v["relay_cpu"], v["gen_cpu"], v["auth_fail"], v["invalid"] }' >&2
}

# ------------------------------------------------------------------ driver
cd "$HERE" || exit 1
if [ -z "${BENCH_BIN:-}" ]; then
	echo "building bench-media (release)..." >&2
	cargo build --release -p bench-media >&2 || exit 1
fi
if [ ! -x "$BIN" ]; then
	echo "no generator binary at $BIN" >&2
	exit 1
fi
if [ "${RT:-1}" = 1 ] && [ -z "${BENCH_RT_ACTIVE:-}" ] && [ "$(id -u)" = 0 ]; then
	exec chrt -f 10 env BENCH_RT_ACTIVE=1 BENCH_BIN="$BIN" "$0" "$@"
fi
if [ "$RTPE" = 1 ] && ! command -v rtpengine >/dev/null; then
	echo "rtpengine missing: apt-get install -y rtpengine-daemon (or RTPE=0)" >&2
	exit 1
fi
[ -n "$PEERS" ] && [ -d "$PEERS/media" ] || {
	echo "bench-media: set PEERS to a checkout of the peer harness (it has media/ and bench-media.sh)" >&2
	exit 1
}
# The shared peer folder stays untouched: the harness builds and writes results in a copy.
PEER_COPY=$(mktemp -d /tmp/bench-media-peers.XXXXXX)
cp -r "$PEERS/." "$PEER_COPY/" && chmod -R u+w "$PEER_COPY"
trap 'rm -rf "$PEER_COPY"' EXIT
mkdir -p "$OUT_DIR"
STAMP=$(date -u +%Y%m%d-%H%M%S)
TSV="$OUT_DIR/media-$STAMP.tsv"
MD="$OUT_DIR/media-$STAMP.md"
LOG=$(mktemp /tmp/bench-media-log.XXXXXX)
: >"$TSV"
T0=$(date +%s)
CMD="scripts/bench-media.sh  (RT=${RT:-1} SESSIONS=\"$SESSIONS\" RTPE_SESSIONS=$RTPE_SESSIONS SECS=$SECS TP_SESSIONS=$TP_SESSIONS TP_SECS=$TP_SECS PEER=$PEER RTPE=$RTPE${QUICK:+ QUICK=$QUICK})"
LOAD0="$(cut -d' ' -f1-3 /proc/loadavg), cpu pressure $(sed -n 's/^some avg10=\([0-9.]*\).*/\1/p' /proc/pressure/cpu 2>/dev/null)%"
echo "# $CMD, $(nproc) cores, $(date -u +%FT%TZ), load at start: $LOAD0" >&2

LAT=(--pps 50 --seconds "$SECS" --warmup "$WARMUP")
echo "light load (as the peer harness), $LIGHT_SESSIONS sessions x 50 pps carrier->Teams:" >&2
LIGHT_PATHS=(direct ours-srtp)
[ "$RTPE" = 1 ] && LIGHT_PATHS+=(rtpe-rtp rtpe-srtp)
for path in "${LIGHT_PATHS[@]}"; do
	run_path "$path" "$path/light" "$LIGHT_SESSIONS" "${LAT[@]}" --direction fwd | tee -a "$TSV" | short
done
for n in $SESSIONS; do
	echo "latency, $n sessions x 50 pps each way:" >&2
	for path in direct ours-srtp; do
		run_path "$path" "$path/lat" "$n" "${LAT[@]}" | tee -a "$TSV" | short
	done
done
for sp in $SCALE; do
	echo "scale, ${sp%%:*} sessions x ${sp##*:} pps each way:" >&2
	for path in direct ours-srtp; do
		run_path "$path" "$path/scale" "${sp%%:*}" --pps "${sp##*:}" --seconds "$SECS" --warmup "$WARMUP" | tee -a "$TSV" | short
	done
done
if [ "$RTPE" = 1 ]; then
	for n in $RTPE_SESSIONS; do
		echo "latency, rtpengine, $n sessions x 50 pps each way:" >&2
		run_path direct "direct/lat" "$n" "${LAT[@]}" | tee -a "$TSV" | short
		for path in rtpe-rtp rtpe-srtp; do
			run_path "$path" "$path/lat" "$n" "${LAT[@]}" | tee -a "$TSV" | short
		done
	done
fi
echo "throughput search, $TP_SESSIONS sessions carrier->Teams:" >&2
TP_PATHS=(direct ours-srtp)
[ "$RTPE" = 1 ] && TP_PATHS+=(rtpe-rtp rtpe-srtp)
for path in "${TP_PATHS[@]}"; do tp_search "$path"; done

PEER_OUT=""
if [ "$PEER" = 1 ] && [ "$RTPE" = 1 ]; then
	echo "peer harness (rtplat): REPS=1 $PEERS/bench-media.sh direct rtp srtp" >&2
	PEER_OUT=$(REPS=1 RESULTS_DIR="$PEER_COPY/results" "$PEER_COPY/bench-media.sh" direct rtp srtp 2>>"$LOG")
	echo "$PEER_OUT" | sed -n '/^# medians/,$p' >&2
fi

python3 - "$TSV" "$CMD" "$(($(date +%s) - T0))" "$LOAD0" >"$MD" <<'PY'
import sys
tsv, cmd, secs, load = sys.argv[1:5]
rows, tpmax = [], {}
for line in open(tsv):
    kv = dict(x.split("=", 1) for x in line.split()[1:] if "=" in x)
    if line.startswith("RESULT "):
        rows.append(kv)
    elif line.startswith("TPMAX "):
        tpmax[kv["path"]] = kv
def f(r, k):
    try: return float(r[k])
    except (KeyError, ValueError): return None
names = {"direct": "direct loopback (no relay)", "ours-srtp": "ours RTP->SRTP",
         "rtpe-rtp": "rtpengine RTP->RTP", "rtpe-srtp": "rtpengine RTP->SRTP"}
print("| mode | sessions | offered pps | forwarded pps | loss % | p50/p99/p999 µs | added p50/p99/p999 µs vs direct | CPU% of relay | CPU% of generator | SRTP auth fail |")
print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
CAP = 999999  # the histogram tops out at 1 s
def us(x): return ">=1s" if x >= CAP else "%.0f" % x
def lat(r): return "/".join(us(f(r, k)) for k in ("k_p50", "k_p99", "k_p999"))
kinds = {"light": "light load, one-way", "lat": "50 pps each way", "scale": "%s pps each way"}
shown = set()
for test in ("light", "lat", "scale"):
    for r in rows:
        path, t = r["label"].split("/")
        if t != test:
            continue
        key = (path, test, r["sessions"])
        if key in shown:
            continue  # the same direct floor measured again before rtpengine: show the first
        shown.add(key)
        base = next((d for d in rows if d["label"] == "direct/" + test and d["sessions"] == r["sessions"]), None)
        if path == "direct" or base is None:
            added = "-"
        elif max(f(r, k) for k in ("k_p50", "k_p99", "k_p999")) >= CAP:
            added = "n/a (overload)"
        else:
            added = "/".join("%+.0f" % (f(r, k) - f(base, k)) for k in ("k_p50", "k_p99", "k_p999"))
        kind = kinds[test] % ("%.0f" % (f(r, "offered_pps") / f(r, "streams"))) if test == "scale" else kinds[test]
        limited = " (generator sent only %.0f pps)" % f(r, "send_pps") if f(r, "send_pps") < 0.95 * f(r, "offered_pps") else ""
        print("| %s, %s%s | %s | %.0f | %.0f | %.3f | %s | %s | %s | %s | %s |" % (
            names[path], kind, limited, r["sessions"], f(r, "offered_pps"), f(r, "fwd_pps"), f(r, "loss_pct"), lat(r),
            added, r.get("relay_cpu", "-"), r.get("gen_cpu", "-"), r.get("auth_fail", "-") if r.get("srtp") == "1" else "-"))
for path, t in tpmax.items():
    mx = float(t["max_pps_ok"])
    at = [r for r in rows if r["label"] == path + "/tput" and f(r, "offered_pps") == mx]
    fail = [r for r in rows if r["label"] == path + "/tput" and f(r, "offered_pps") == float(t["first_fail"])]
    r = at[-1] if at else None
    note = " (first fail %s: fwd %s, loss %.3f %%, p99 %s µs)" % (
        t["first_fail"], fail[-1]["fwd_pps"], f(fail[-1], "loss_pct"), us(f(fail[-1], "k_p99"))) if fail else ""
    if r:
        print("| %s, max throughput%s | %s | %.0f | %.0f | %.3f | %s | - | %s | %s | %s |" % (
            names[path], note, r["sessions"], mx, f(r, "fwd_pps"), f(r, "loss_pct"), lat(r), r.get("relay_cpu", "-"),
            r.get("gen_cpu", "-"), r.get("auth_fail", "-") if r.get("srtp") == "1" else "-"))
    else:
        print("| %s, max throughput%s | - | 0 | - | - | - | - | - | - | - |" % (names[path], note))
print()
print("Command: `%s`; total %s s. Latency: one-way, kernel receive timestamp (SO_TIMESTAMPNS) minus the send "
      "time carried in the payload (decrypted on the SRTP leg). Throughput: carrier->Teams only, max offered rate "
      "with loss <= 0.1 %% and p99 <= 10 ms. CPU: %% of one core over the sending window (200 %% = whole box). "
      "Load average at start (other tenants of the box): %s." % (cmd, secs, load))
PY
if [ -n "$PEER_OUT" ]; then
	{
		echo
		echo "Peer harness in the same invocation (\`REPS=1 $PEERS/bench-media.sh direct rtp srtp\`, rtplat, 100 streams one-way for latency, 500 for throughput):"
		echo
		echo '```'
		echo "$PEER_OUT" | sed -n '/^latency test/,/^# raw/p' | grep -v '^# raw'
		echo '```'
	} >>"$MD"
fi
echo "$PEER_OUT" | grep -E '^(RESULT|TPMAX)' | sed 's/^/PEER /' >>"$TSV"
cat "$MD"
echo "# saved: $MD $TSV (log: $LOG)" >&2
