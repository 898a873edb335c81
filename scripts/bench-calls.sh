#!/usr/bin/env bash
# bench-calls.sh - call load through the SBC with media anchored, and the same load through
# the peer (Kamailio + rtpengine), in one invocation.
#
#   carrier SIPp UACs (UDP; 127.0.0.2, 127.0.0.3, ... one per UAC_MAX_CPS of load)
#     -> SUT -> "Teams" SIPp UAS (answers the SUT's RTP/SAVP offer with an SDES crypto line)
#   sbc:       teams-sbc on UDP $SBC_SIP (127.0.0.1:5062), Teams stand-in over TCP on
#              $TEAMS_ADDR (127.0.1.1:5080); RTP on the carrier leg, SRTP on the Teams leg,
#              anchored in the SBC's relay; the called number picks one of $TENANTS tenants.
#   sbc-nocdr: the same SBC with [cdr] enabled = false (no call detail records): run it with
#              `sbc` in one invocation to read what the CDR file sink costs (issue 11: < 5 % of
#              the call-rate ceiling). `sbc` writes every call's record to a JSON-lines file in
#              the work dir (fsync "interval", rotated at 64 MiB, one old file kept).
#   sbc-reload: the `sbc` SBC with RELOAD_TENANTS tenants holding RELOAD_RANGES DID ranges in
#              all (the load's tenants are among them) and a SIGHUP every RELOAD_EVERY_S during
#              each step: a full reload (read, validate, routing table, swap) under load. Run it
#              with `sbc` in one invocation (issue 11: no step that passes on `sbc` may fail
#              here; a reload under 200 ms): its reload count, mean and slowest bucket
#              (config_reload_duration_seconds) are printed per step and in the saved notes.
#   kamailio:  the peer harness ($PEERS_DIR/run-peer.sh -p srtp): Kamailio on UDP 127.0.0.1:5060,
#              rtpengine anchoring RTP <-> RTP/SAVP+SDES, UAS on UDP 127.0.0.1:5080
#              (Kamailio has TCP disabled).
#   Call: INVITE (SDP) / 180 / 200 (SDP) / ACK / hold / BYE / 200, full call per SIPp call.
#
# Usage: scripts/bench-calls.sh [PATH...]      PATHs: sbc sbc-nocdr sbc-reload kamailio
#                                              (default: sbc kamailio)
#
# Rate search per path (the peer harness's method): every step is a fresh SUT and a fresh UAS,
# STEP_SECS seconds of calls at RATE (split over ceil(RATE/UAC_MAX_CPS) UACs), HOLD_MS hold.
# A step passes when every SIPp exits 0, every call succeeds, none fails, NO retransmission is
# sent or received by any SIPp (so the SUT retransmitted nothing either), and the achieved
# call-creation rate is >= 93 % of RATE. RATE doubles from START_CPS while steps pass, then
# BISECT bisections.
# Memory test per path: fresh SUT, MEM_CALLS calls (PEER_MEM_CALLS for the peer: rtpengine
# needs 4 fds per session, the hard limit here is 20,000) at MEM_CPS, held MEM_HOLD_S; the SUT's
# memory is read idle, when all calls are established, and MEM_SETTLE_S later (after the
# 32 s transaction timers); per call = growth / established calls. Memory is VmRSS
# (/proc/PID/status) for one process, the sum of PSS over the processes for Kamailio's
# workers + rtpengine (a VmRSS sum would count Kamailio's shared memory once per worker).
# CPU: utime+stime of the SUT's processes (threads included) over the step, % of one core.
#
# Env (defaults): START_CPS=500 MAX_CPS=32000 STEP_SECS=5 HOLD_MS=1000 BISECT=3
#   UAC_MAX_CPS=800 (each UAC stays below 1000 cps) TENANTS=100 MEM_CALLS=5000
#   PEER_MEM_CALLS=4500 MEM_CPS=500 MEM_HOLD_S=120 MEM_SETTLE_S=35
#   BUDGET_S=1080 (whole run; the searches stop stepping when their share is used)
#   BUILD=1 (cargo build --release first)  SBC_BIN=target/release/teams-sbc
#   SBC_SIP=127.0.0.1:5062 TEAMS_ADDR=127.0.1.1:5080 METRICS_ADDR=127.0.0.1:9095
#   CARRIER_PORTS=10000-19999 TEAMS_PORTS=20000-29999 (SBC media ranges; they cap the rate)
#   RELOAD_TENANTS=1000 RELOAD_RANGES=100000 RELOAD_EVERY_S=1 (sbc-reload)
#   PEERS_DIR (kamailio path only: a checkout of the peer harness, not part of this repository)  SAVE=1 (write docs/bench/calls-<UTC>.md and .tsv)
#   OUT_DIR=docs/bench  KEEP=0 (1: keep every step's SIPp/SBC files, not only failures)
#   RT=1 (root: run everything under SCHED_RR 10, see below; RT=0 = normal priority;
#   RT_POLICY=-f for SCHED_FIFO)
# Needs: sipp (sip-tester), kamailio, rtpengine-daemon, sipsak, curl, python3; root is not
# required. Ports: 5060 5062 5070 5080 2223 7000 8000 9095, media 10000-29999 (one SUT at a time).
set -uo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
BENCH="$HERE/bench"
. "$BENCH/lib.sh"

# knobs given on the command line go into the reported command
KNOBS_SET=${BENCH_CALLS_KNOBS:-}
[ -n "${BENCH_CALLS_RT:-}" ] || for knob in START_CPS MAX_CPS STEP_SECS HOLD_MS BISECT UAC_MAX_CPS TENANTS MEM_CALLS PEER_MEM_CALLS \
	MEM_CPS MEM_HOLD_S MEM_SETTLE_S BUDGET_S BUILD SAVE KEEP RT RT_POLICY RELOAD_TENANTS RELOAD_RANGES RELOAD_EVERY_S CARRIER_PORTS TEAMS_PORTS SBC_SIP TEAMS_ADDR METRICS_ADDR PEERS_DIR; do
	[ -n "${!knob:-}" ] && KNOBS_SET+="$knob=${!knob} "
done
export START_CPS=${START_CPS:-500} MAX_CPS=${MAX_CPS:-32000} STEP_SECS=${STEP_SECS:-5}
export HOLD_MS=${HOLD_MS:-1000} BISECT=${BISECT:-3} UAC_MAX_CPS=${UAC_MAX_CPS:-800}
export TENANTS=${TENANTS:-100} MEM_CALLS=${MEM_CALLS:-5000} PEER_MEM_CALLS=${PEER_MEM_CALLS:-4500}
export RELOAD_TENANTS=${RELOAD_TENANTS:-1000} RELOAD_RANGES=${RELOAD_RANGES:-100000} RELOAD_EVERY_S=${RELOAD_EVERY_S:-1}
export MEM_CPS=${MEM_CPS:-500} MEM_HOLD_S=${MEM_HOLD_S:-120} MEM_SETTLE_S=${MEM_SETTLE_S:-35}
export BUDGET_S=${BUDGET_S:-1080} BUILD=${BUILD:-1} SAVE=${SAVE:-1} KEEP=${KEEP:-0}
export SBC_BIN=${SBC_BIN:-$ROOT/target/release/teams-sbc}
export SBC_SIP=${SBC_SIP:-127.0.0.1:5062} TEAMS_ADDR=${TEAMS_ADDR:-127.0.1.1:5080}
export METRICS_ADDR=${METRICS_ADDR:-127.0.0.1:9095}
# SBC media port ranges. At 4,000 cps x 1 s hold the carrier range of 10,000 ports ran out
# (503 Retry-After: 1, "media port range ... exhausted"): it caps the search near 3,750 cps.
export CARRIER_PORTS=${CARRIER_PORTS:-10000-19999} TEAMS_PORTS=${TEAMS_PORTS:-20000-29999}
export PEERS_DIR=${PEERS_DIR:-} OUT_DIR=${OUT_DIR:-$ROOT/docs/bench}
SIPP_COMMON=(-nostdin -buff_size 4194304 -trace_stat -trace_counts -trace_err -fd 250ms)
TSV_HEADER="path	kind	rate	uacs	calls	created	ok	failed	retrans	retrans_sent	unexpected	dead	achieved_cps	inv_rt_ms	sipp_rc	sut_cpu%	rtpe_cpu%	uac_cpu%	uas_cpu%	mem0_kb	mem_peak_kb	mem1_kb	mem2_kb	established	sut_active	fds0	fds1	sbc_retrans	verdict"

# Background processes of this (sub)shell, stopped on any exit.
SBC_PID="" UAS_PID="" SAMPLER_PID="" RELOADER_PID=""
UAC_PIDS=()
cleanup_children() {
	local p
	for p in "${UAC_PIDS[@]}"; do stop_pid "$p" "sipp uac"; done
	stop_pid "$SAMPLER_PID" sampler
	stop_pid "$RELOADER_PID" reloader
	stop_pid "$UAS_PID" "sipp uas"
	stop_pid "$SBC_PID" teams-sbc
	UAC_PIDS=() SBC_PID="" UAS_PID="" SAMPLER_PID="" RELOADER_PID=""
}

# ------------------------------------------------------------------ the SBC under test
# render_sbc_config DIR [CDR [TENANTS_TOTAL RANGES]]: sbc.toml from scripts/bench/sbc-bench.toml,
# dev certificates, tenants; CDR=off disables call detail records (default: the file sink in
# DIR/cdr). TENANTS_TOTAL and RANGES: that many tenants in all (the load's TENANTS first) and
# that many DID ranges spread over them (+4940TTTRR000-+4940TTTRR999, never called).
render_sbc_config() {
	local dir=$1 cdr=${2:-on} tenants_total=${3:-$TENANTS} ranges=${4:-0} port_tls=5063 i
	mkdir -p "$dir"
	"$SBC_BIN" dev-certs --out "$dir/certs" --base-fqdn sbc.bench.test >"$dir/dev-certs.log" 2>&1 || {
		cat "$dir/dev-certs.log" >&2
		return 1
	}
	sed -e "s/@SIP_ADDR@/$SBC_SIP/" -e "s/@TLS_PORT@/$port_tls/g" -e "s/@TEAMS_ADDR@/$TEAMS_ADDR/" \
		-e "s/@METRICS_ADDR@/$METRICS_ADDR/" -e "s/@TENANTS@/$TENANTS/" \
		-e "s/@CARRIER_PORT_MIN@/${CARRIER_PORTS%-*}/" -e "s/@CARRIER_PORT_MAX@/${CARRIER_PORTS#*-}/" \
		-e "s/@TEAMS_PORT_MIN@/${TEAMS_PORTS%-*}/" -e "s/@TEAMS_PORT_MAX@/${TEAMS_PORTS#*-}/" \
		"$BENCH/sbc-bench.toml" >"$dir/sbc.toml"
	# One tenant per 3-digit block: DIDs +49301kkk*, called numbers +49301kkknnnn; the tenants
	# beyond the load's and the extra ranges only make the configuration big.
	awk -v load="$TENANTS" -v total="$tenants_total" -v ranges="$ranges" 'BEGIN {
		per = total > 0 ? int(ranges / total) : 0
		for (i = 0; i < total; i++) {
			printf "\n[[tenant]]\nname = \"t%03d\"\nfqdn = \"t%03d.sbc.bench.test\"\nnumbers = [", i, i
			sep = ""
			if (i < load) { printf "\"+49301%03d*\"", i; sep = ", " }
			for (r = 0; r < per; r++) { printf "%s\"+4940%03d%02d000-+4940%03d%02d999\"", sep, i, r, i, r; sep = ", " }
			printf "]\ncarrier_trunk = \"bench-pstn\"\n"
		}
	}' >>"$dir/sbc.toml"
	if [ "$cdr" = off ]; then
		printf '\n[cdr]\nenabled = false\n' >>"$dir/sbc.toml"
	else
		printf '\n[cdr.file]\npath = "cdr/calls.jsonl"\nrotate_bytes = 67108864\nkeep_files = 1\n' >>"$dir/sbc.toml"
	fi
	"$SBC_BIN" check-config "$dir/sbc.toml" >"$dir/check-config.log" 2>&1 || {
		cat "$dir/check-config.log" >&2
		return 1
	}
}

# reload_stats URL: "reloads=N refused=N mean_ms=X slowest<=Y s" from the SBC's metrics
# (config_reload_duration_seconds: the slowest reload is at most the smallest bucket holding all).
reload_stats() {
	curl -s --max-time 2 "$1" 2>/dev/null | awk '
		$1 == "config_reloads_total" { n = $2 }
		index($1, "config_reload_failures_total{") == 1 { refused += $2 }
		$1 == "config_reload_duration_seconds_sum" { sum = $2 }
		$1 == "config_reload_duration_seconds_count" { count = $2 }
		index($1, "config_reload_duration_seconds_bucket{") == 1 {
			le = $1; sub(/.*le="/, "", le); sub(/".*/, "", le)
			bucket[++b] = le; bcount[b] = $2
		}
		END {
			for (i = 1; i <= b; i++) if (bcount[i] == count) { slowest = bucket[i]; break }
			printf "reloads=%d refused=%d mean_ms=%.1f slowest<=%ss\n", n, refused, (count > 0 ? 1000 * sum / count : 0), slowest
		}'
}

# called_numbers FILE: SIPp injection file, calls rotate over every tenant.
called_numbers() {
	local i n
	echo SEQUENTIAL >"$1"
	for n in 0 1 2 3; do
		for ((i = 0; i < TENANTS; i++)); do printf '+49301%03d%04d;\n' "$i" $((n * 1111)); done
	done >>"$1"
}

# start_sbc DIR CONFIG_DIR: a fresh SBC; SBC_PID set; waits until it takes SIP and serves
# /metrics.
start_sbc() {
	local dir=$1 config_dir=$2 ip=${SBC_SIP%:*} port=${SBC_SIP##*:}
	if udp_bound "$ip" "$port"; then
		echo "bench: UDP $SBC_SIP already in use" >&2
		return 1
	fi
	# ~3 fds per media session: 5,000 calls need ~15,000 (hard limit here: 20,000).
	(ulimit -n "$(ulimit -Hn)" && exec env -u RUST_LOG "$SBC_BIN" run --config "$config_dir/sbc.toml") \
		>"$dir/sbc.log" 2>&1 &
	SBC_PID=$!
	for _ in $(seq 100); do
		if udp_bound "$ip" "$port" && curl -sf --max-time 1 "http://$METRICS_ADDR/metrics" >/dev/null; then
			return 0
		fi
		kill -0 "$SBC_PID" 2>/dev/null || break
		sleep 0.1
	done
	echo "bench: teams-sbc did not come up:" >&2
	tail -20 "$dir/sbc.log" >&2
	return 1
}

# ------------------------------------------------------------------ one load run
# load PATH KIND RATE: KIND=step (STEP_SECS of calls at RATE) or mem (MEM_CALLS held calls).
# For kamailio it runs inside run-peer.sh (KAM_PID, RTPE_PID exported). Prints one TSV line.
load() {
	local path=$1 kind=$2 rate=$3
	local w uas_ip uas_port uas_t ctransport target total hold is_sbc=0
	w=$(mktemp -d "$WORK/$path-$kind-$rate.XXXXXX")
	case $path in sbc | sbc-nocdr | sbc-reload) is_sbc=1 ;; esac
	case $path in
	sbc | sbc-nocdr | sbc-reload) uas_ip=${TEAMS_ADDR%:*} uas_port=${TEAMS_ADDR##*:} uas_t=t1 ctransport=tcp target=$SBC_SIP ;;
	kamailio) uas_ip=127.0.0.1 uas_port=5080 uas_t=u1 ctransport=udp target=127.0.0.1:5060 ;;
	*) echo "bench: unknown path $path" >&2; return 2 ;;
	esac
	if [ "$kind" = mem ]; then
		total=$MEM_CALLS
		[ "$path" = kamailio ] && [ "$PEER_MEM_CALLS" -lt "$total" ] && total=$PEER_MEM_CALLS
		rate=$MEM_CPS hold=$((MEM_HOLD_S * 1000))
	else
		total=$((rate * STEP_SECS)) hold=$HOLD_MS
	fi
	local n=$(((rate + UAC_MAX_CPS - 1) / UAC_MAX_CPS))
	[ "$n" -le 250 ] || { echo "bench: $rate cps needs more than 250 UACs" >&2; return 2; }
	local tmax=$((total / rate + hold / 1000 + 30))

	# the Teams stand-in; -aa answers the SBC's OPTIONS pings
	mkdir -p "$w/uas"
	(cd "$w/uas" && exec sipp -sf "$BENCH/uas-teams.xml" -t "$uas_t" -key ctransport "$ctransport" \
		-i "$uas_ip" -p "$uas_port" -mi "$uas_ip" -mp 8000 -aa "${SIPP_COMMON[@]}" -stf uas.csv \
		-timeout "$((tmax + 20))s" >uas.out 2>&1) &
	UAS_PID=$!
	local up=0
	for _ in $(seq 100); do
		if [ "$uas_t" = t1 ]; then tcp_listening "$uas_ip" "$uas_port" && up=1; else udp_bound "$uas_ip" "$uas_port" && up=1; fi
		[ $up = 1 ] && break
		sleep 0.05
	done
	[ $up = 1 ] || echo "bench: UAS did not bind $uas_ip:$uas_port" >&2

	local sut_pids=() rtpe_pids=()
	case $path in
	sbc | sbc-nocdr | sbc-reload)
		start_sbc "$w" "$WORK/$path" || { cleanup_children; echo "$path	$kind	$rate	$n	$total	0	0	0	0	0	0	0	0	-	1	-	-	-	-	-	-	-	-	-	-	-	-	-	FAIL-START"; return 0; }
		sut_pids=("$SBC_PID")
		;;
	kamailio)
		mapfile -t sut_pids < <(tree_pids "$KAM_PID")
		rtpe_pids=("$RTPE_PID")
		;;
	esac
	local mem_pids=("${sut_pids[@]}" "${rtpe_pids[@]}")
	sleep 1 # idle baseline after start-up
	local mem0 fds0 sbcr0=- s0 r0 u0
	mem0=$(mem_kb "${mem_pids[@]}")
	fds0=$(fd_count "${mem_pids[@]}")
	[ "$is_sbc" = 1 ] && sbcr0=$(metric_sum "http://$METRICS_ADDR/metrics" transactions_retransmissions_total)
	# peak memory during the run (0.5 s samples)
	(
		peak=0
		while :; do
			m=$(mem_kb "${mem_pids[@]}")
			[ "${m:-0}" -gt "$peak" ] && peak=$m && echo "$peak" >"$w/mem_peak"
			sleep 0.5
		done
	) &
	SAMPLER_PID=$!
	if [ "$path" = sbc-reload ] && [ "$kind" = step ]; then
		# a full reload of the (unchanged) file every RELOAD_EVERY_S while the calls run
		(while kill -HUP "$SBC_PID" 2>/dev/null; do sleep "$RELOAD_EVERY_S"; done) &
		RELOADER_PID=$!
	fi
	s0=$(cpu_ticks "${sut_pids[@]}")
	r0=$(cpu_ticks "${rtpe_pids[@]}")
	u0=$(cpu_ticks "$UAS_PID")
	[ "$is_sbc" = 1 ] && thread_ticks "$SBC_PID" >"$w/threads0"

	# split RATE and the call count over the UACs (the first takes the remainders)
	local t0 t1 k ip r_k m_k rates=() counts=() left_r=$rate left_m=$total
	for ((k = n - 1; k >= 0; k--)); do
		r_k=$((rate / n)) m_k=$((total / n))
		[ $k -eq 0 ] && r_k=$left_r m_k=$left_m
		rates[k]=$r_k counts[k]=$m_k
		left_r=$((left_r - r_k)) left_m=$((left_m - m_k))
	done
	t0=$(now)
	UAC_PIDS=()
	for ((k = 0; k < n; k++)); do
		r_k=${rates[k]} m_k=${counts[k]}
		ip="127.0.$(((k + 2) / 256)).$(((k + 2) % 256))"
		mkdir -p "$w/uac$k"
		(cd "$w/uac$k" && exec /usr/bin/time -f "%U %S" -o uac.time timeout "$((tmax + 15))" \
			sipp -sf "$BENCH/uac-carrier.xml" -inf "$WORK/called.csv" -i "$ip" -p 5070 -mi "$ip" -mp 7000 \
			"${SIPP_COMMON[@]}" -stf uac.csv -r "$r_k" -m "$m_k" -d "$hold" -l "$m_k" \
			-timeout "${tmax}s" -recv_timeout 5s "$target" >uac.out 2>&1) &
		UAC_PIDS+=($!)
	done

	local established=- mem1=- mem2=- active=-
	if [ "$kind" = mem ]; then
		# wait until every call is answered and ACKed (bounded), then read memory twice
		local deadline=$(($(date +%s) + total / rate + 30))
		local failed_so_far
		while [ "$(date +%s)" -lt "$deadline" ]; do
			read -r established failed_so_far < <(python3 "$BENCH/calls_stats.py" established "$w")
			[ $((established + failed_so_far)) -ge "$total" ] && break
			sleep 0.5
		done
		sleep 1
		mem1=$(mem_kb "${mem_pids[@]}")
		sleep "$MEM_SETTLE_S"
		read -r established failed_so_far < <(python3 "$BENCH/calls_stats.py" established "$w")
		mem2=$(mem_kb "${mem_pids[@]}")
		if [ "$is_sbc" = 1 ]; then
			active=$(metric_sum "http://$METRICS_ADDR/metrics" calls_active)/$(metric_sum "http://$METRICS_ADDR/metrics" media_sessions_active)
		else
			active=$(python3 "$PEERS_DIR/media/ngctl.py" stats 2>/dev/null | sed -n 's/.*sessionstotal=\([0-9]*\).*/\1/p')
		fi
	fi
	local fds1 s1 r1 u1 sbcr1=-
	fds1=$(fd_count "${mem_pids[@]}")
	if [ "$kind" = mem ]; then
		# the held calls are not needed any more (the SUT is thrown away): TERM to each
		# UAC's `timeout`, which passes it on to its SIPp
		for k in "${UAC_PIDS[@]}"; do
			for v in $(ps -o pid= --ppid "$k" 2>/dev/null); do kill -TERM "$v" 2>/dev/null; done
		done
	fi
	# /usr/bin/time exits with SIPp's status
	local rc=0 uac_rc
	for k in "${UAC_PIDS[@]}"; do
		wait "$k"
		uac_rc=$?
		[ "$uac_rc" = 0 ] || rc=$uac_rc
	done
	t1=$(now)
	UAC_PIDS=()
	s1=$(cpu_ticks "${sut_pids[@]}")
	r1=$(cpu_ticks "${rtpe_pids[@]}")
	u1=$(cpu_ticks "$UAS_PID")
	if [ -n "${RELOADER_PID:-}" ]; then
		stop_pid "$RELOADER_PID" reloader
		RELOADER_PID=""
		sleep 0.5 # the last reload in flight
		reload_stats "http://$METRICS_ADDR/metrics" >"$WORK/reloads-$kind-$rate.txt"
	fi
	if [ "$is_sbc" = 1 ]; then
		sbcr1=$(metric_sum "http://$METRICS_ADDR/metrics" transactions_retransmissions_total)
		# for the "what limits us" reading: the SBC's own counters and CPU per thread name
		curl -s --max-time 2 "http://$METRICS_ADDR/metrics" >"$WORK/$path-metrics-$kind-$rate.txt" 2>/dev/null
		thread_ticks "$SBC_PID" >"$w/threads1"
		thread_pct "$w/threads0" "$w/threads1" "$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')" \
			>"$WORK/$path-threads-$kind-$rate.txt"
	fi
	# No -m on the UAS (it would count the SBC's OPTIONS pings as calls): every UAC ended
	# after its last BYE was answered, so the UAS is idle; 0.5 s lets its 250 ms dumps catch up.
	sleep 0.5
	stop_pid "$SAMPLER_PID" sampler
	SAMPLER_PID=""
	local mem_peak
	mem_peak=$(cat "$w/mem_peak" 2>/dev/null || echo -)
	cleanup_children

	local wall uac_ticks=0 f
	wall=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')
	for ((k = 0; k < n; k++)); do
		f=$(awk -v h="$CLK_TCK" 'NF == 2 && $1 ~ /^[0-9.]+$/ { v = ($1 + $2) * h } END { printf "%d", v }' "$w/uac$k/uac.time" 2>/dev/null)
		uac_ticks=$((uac_ticks + ${f:-0}))
	done
	local created=0 ok=0 failed=0 retrans=0 retrans_sent=0 unexpected=0 dead=0 achieved=0 rt_ms=- uac_files=0
	eval "$(python3 "$BENCH/calls_stats.py" step "$w" | grep -E '^[a-z_]+=[0-9.]+$')"
	local sbc_retrans=-
	[ "$sbcr0" != - ] && [ "$sbcr1" != - ] && sbc_retrans=$((sbcr1 - sbcr0))

	local verdict=PASS
	if [ "$kind" = step ]; then
		if [ "$rc" != 0 ] || [ "$ok" != "$total" ] || [ "$failed" != 0 ] || [ "$retrans" != 0 ] ||
			[ "$retrans_sent" != 0 ] || { [ "$sbc_retrans" != - ] && [ "$sbc_retrans" != 0 ]; } ||
			awk -v a="$achieved" -v r="$rate" 'BEGIN { exit !(a < 0.93 * r) }'; then
			verdict=FAIL
		fi
	elif [ "$established" = - ] || [ "$established" -lt "$total" ] || [ "$failed" != 0 ]; then
		verdict=PARTIAL
	fi
	local sut_pct rtpe_pct=- uac_pct uas_pct
	sut_pct=$(pct $((s1 - s0 + r1 - r0)) "$wall")
	[ ${#rtpe_pids[@]} -gt 0 ] && rtpe_pct=$(pct $((r1 - r0)) "$wall")
	uac_pct=$(pct "$uac_ticks" "$wall")
	uas_pct=$(pct $((u1 - u0)) "$wall")
	printf "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n" \
		"$path" "$kind" "$rate" "$n" "$total" "$created" "$ok" "$failed" "$retrans" "$retrans_sent" \
		"$unexpected" "$dead" "$achieved" "$rt_ms" "$rc" "$sut_pct" "$rtpe_pct" "$uac_pct" "$uas_pct" \
		"$mem0" "$mem_peak" "$mem1" "$mem2" "$established" "$active" "$fds0" "$fds1" "$sbc_retrans" "$verdict"
	if [ "$verdict" != PASS ]; then
		# the first thing that went wrong, for the console (SIPp's -trace_err logs)
		grep -h -m1 -o -E "(received '[^']{0,90}|Call-Id '[^']*' (timed out|aborted)[^.]{0,60})" \
			"$w"/uac*/*errors.log "$w"/uas/*errors.log 2>/dev/null | head -1 | tr -d '\r' >"$WORK/reason"
	fi
	if [ "$verdict" = PASS ] && [ "$KEEP" != 1 ]; then rm -rf "$w"; fi
}

if [ "${1:-}" = __load ]; then
	trap 'cleanup_children' EXIT
	trap 'exit 130' INT TERM
	load "$2" "$3" "$4"
	exit $?
fi

# ------------------------------------------------------------------ driver
run_load() { # path kind rate -> TSV line
	local path=$1 kind=$2 rate=$3 line
	case $path in
	sbc | sbc-nocdr | sbc-reload) line=$("$0" __load "$path" "$kind" "$rate" | tail -1) ;;
	kamailio)
		line=$(KAM_CPUS='' RTPE_CPUS='' "$PEERS_DIR/run-peer.sh" -p srtp -t $((MEM_HOLD_S + 120)) -- \
			"$0" __load kamailio "$kind" "$rate" 2>"$WORK/run-peer-last.log" | tail -1)
		;;
	esac
	[ -n "$line" ] || line="$path	$kind	$rate	-	-	0	0	0	0	0	0	0	0	-	1	-	-	-	-	-	-	-	-	-	-	-	-	-	FAIL-EMPTY"
	echo "$line"
}

PATHS=("$@")
[ ${#PATHS[@]} -gt 0 ] || PATHS=(sbc kamailio)
for p in "${PATHS[@]}"; do
	case $p in sbc | sbc-nocdr | sbc-reload | kamailio) ;; *) echo "unknown path $p (sbc, sbc-nocdr, sbc-reload, kamailio)" >&2; exit 2 ;; esac
done
for tool in sipp curl python3 ss; do
	command -v "$tool" >/dev/null || { echo "bench: $tool missing (apt-get install -y sip-tester curl python3 iproute2)" >&2; exit 1; }
done
if printf '%s\n' "${PATHS[@]}" | grep -qx kamailio; then
	for tool in kamailio rtpengine sipsak; do
		command -v "$tool" >/dev/null || { echo "bench: $tool missing (apt-get install -y kamailio rtpengine-daemon sipsak)" >&2; exit 1; }
	done
	[ -x "$PEERS_DIR/run-peer.sh" ] || { echo "bench: the kamailio path needs PEERS_DIR set to a checkout of the peer harness (it has run-peer.sh); found none in '$PEERS_DIR'" >&2; exit 1; }
fi
ulimit -n "$(ulimit -Hn)" 2>/dev/null
if [ "$BUILD" = 1 ] && [ -z "${BENCH_CALLS_RT:-}" ] && printf '%s\n' "${PATHS[@]}" | grep -qE '^sbc(-nocdr|-reload)?$'; then
	(cd "$ROOT" && cargo build --release --bin teams-sbc) || { echo "bench: build failed" >&2; exit 1; }
fi
# The box is shared with other builds (CPU pressure near 100 %): at normal priority the
# result is mostly the co-tenants' load. RT=1 (default, root) re-runs this script under
# real-time priority 10 (SCHED_RR: round robin among the SUT and SIPp processes; RT_POLICY=-f
# for SCHED_FIFO), inherited by every SUT and SIPp, so all paths get the same treatment; the
# kernel's RT throttling still leaves 5 % of each second to everything else.
if [ "${RT:-1}" = 1 ] && [ -z "${BENCH_CALLS_RT:-}" ] && [ "$(id -u)" = 0 ]; then
	exec chrt "${RT_POLICY:--r}" 10 env BENCH_CALLS_RT=1 BENCH_CALLS_KNOBS="$KNOBS_SET" "$0" "$@"
fi

COMMAND="${KNOBS_SET}scripts/bench-calls.sh ${PATHS[*]}"
for port in 5060 5062 5070 5080; do
	if ss -Hlun "sport = :$port" | grep -q . || ss -Hltn "sport = :$port" | grep -q .; then
		echo "bench: port $port is in use (a SUT or SIPp left running?):" >&2
		ss -Hlunp "sport = :$port" >&2
		ss -Hltnp "sport = :$port" >&2
		exit 1
	fi
done

export WORK
WORK=$(mktemp -d /tmp/bench-calls.XXXXXX)
called_numbers "$WORK/called.csv"
if printf '%s\n' "${PATHS[@]}" | grep -qx sbc; then
	render_sbc_config "$WORK/sbc" || { echo "bench: SBC config did not validate" >&2; exit 1; }
fi
if printf '%s\n' "${PATHS[@]}" | grep -qx sbc-nocdr; then
	render_sbc_config "$WORK/sbc-nocdr" off || { echo "bench: SBC config did not validate" >&2; exit 1; }
fi
if printf '%s\n' "${PATHS[@]}" | grep -qx sbc-reload; then
	[ "$RELOAD_TENANTS" -ge "$TENANTS" ] || { echo "bench: RELOAD_TENANTS must be >= TENANTS" >&2; exit 2; }
	render_sbc_config "$WORK/sbc-reload" on "$RELOAD_TENANTS" "$RELOAD_RANGES" ||
		{ echo "bench: SBC config did not validate" >&2; exit 1; }
fi

STAMP=$(date -u +%Y%m%d-%H%M%S)
TSV="$WORK/calls-$STAMP.tsv"
echo "$TSV_HEADER" >"$TSV"
T_START=$(date +%s)
MEM_RESERVE=$((MEM_CALLS / MEM_CPS + MEM_SETTLE_S + 25))
SEARCH_S=$(((BUDGET_S - MEM_RESERVE * ${#PATHS[@]}) / ${#PATHS[@]}))
[ "$SEARCH_S" -ge 30 ] || SEARCH_S=30
echo "# bench-calls: paths=${PATHS[*]} step=${STEP_SECS}s hold=${HOLD_MS}ms start=${START_CPS} max=${MAX_CPS} tenants=${TENANTS} budget=${BUDGET_S}s ($(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg))"
echo "# work dir (failed steps keep their SIPp/SBC files): $WORK"
printf "%-9s %-4s %6s %4s %6s %6s %6s %6s %6s %8s %7s %5s %5s %5s %5s %8s %8s %s\n" \
	path kind rate uacs calls ok failed retr unexp achieved rt_ms sut% rtpe% uac% uas% mem0_MB peak_MB verdict
show() {
	echo "$1" >>"$TSV"
	echo "$1" | awk -F'\t' '{ printf "%-9s %-4s %6s %4s %6s %6s %6s %6s %6s %8s %7s %5s %5s %5s %5s %8.1f %8.1f %s", $1,$2,$3,$4,$5,$7,$8,$9,$11,$13,$14,$16,$17,$18,$19,$20/1024,$21/1024,$29
		if ($2 == "mem") printf "  established=%s mem1=%.1fMB settled=%.1fMB active=%s fds=%s", $24, $22/1024, $23/1024, $25, $27
		printf "\n" }'
	if [ "${1##*	}" != PASS ] && [ -s "$WORK/reason" ]; then
		echo "    first error: $(cat "$WORK/reason")"
	fi
	rm -f "$WORK/reason"
}
verdict_of() { echo "${1##*	}"; }
show_reloads() { # path rate: the reloads of an sbc-reload step
	local f="$WORK/reloads-step-$2.txt"
	if [ "$1" = sbc-reload ] && [ -s "$f" ]; then
		echo "    $(cat "$f")"
		echo "sbc-reload $2 cps: $(cat "$f")" >>"$WORK/reloads.txt"
	fi
	rm -f "$f"
}

for path in "${PATHS[@]}"; do
	p_start=$(date +%s)
	lo=0 hi=0 rate=$START_CPS
	while [ "$rate" -le "$MAX_CPS" ]; do
		line=$(run_load "$path" step "$rate")
		show "$line"
		show_reloads "$path" "$rate"
		if [ "$(verdict_of "$line")" = PASS ]; then lo=$rate; else hi=$rate; break; fi
		[ $(($(date +%s) - p_start)) -lt "$SEARCH_S" ] || break
		rate=$((rate * 2))
		sleep 1
	done
	i=0
	while [ "$hi" -gt 0 ] && [ $i -lt "$BISECT" ] && [ $(($(date +%s) - p_start)) -lt "$SEARCH_S" ]; do
		mid=$(((lo + hi) / 2 / 25 * 25))
		[ "$mid" -gt "$lo" ] && [ "$mid" -lt "$hi" ] || break
		sleep 1
		line=$(run_load "$path" step "$mid")
		show "$line"
		show_reloads "$path" "$mid"
		if [ "$(verdict_of "$line")" = PASS ]; then lo=$mid; else hi=$mid; fi
		i=$((i + 1))
	done
	sleep 1
	show "$(run_load "$path" mem 0)"
	sleep 1
done

echo
TABLE=$(python3 "$BENCH/calls_stats.py" table "$TSV" "$COMMAND")
echo "$TABLE"
echo "# steps: $TSV  (total $(($(date +%s) - T_START)) s)"
# The records written during the run are not needed (they can be large).
rm -rf "$WORK/sbc/cdr" "$WORK/sbc-reload/cdr"
if [ "$SAVE" = 1 ]; then
	mkdir -p "$OUT_DIR"
	cp "$TSV" "$OUT_DIR/calls-$STAMP.tsv"
	{
		echo "# Call load: teams-sbc vs Kamailio + rtpengine ($STAMP UTC)"
		echo
		echo "Scheduling: $(if [ -n "${BENCH_CALLS_RT:-}" ]; then echo "real-time priority 10 (chrt ${RT_POLICY:--r}) for the SUTs and SIPp (RT=1)"; else echo "normal (RT=0)"; fi)."
		echo "$(nproc) cores, load average at start: $(cut -d' ' -f1-3 /proc/loadavg). Knobs: START_CPS=$START_CPS MAX_CPS=$MAX_CPS STEP_SECS=$STEP_SECS HOLD_MS=$HOLD_MS BISECT=$BISECT UAC_MAX_CPS=$UAC_MAX_CPS TENANTS=$TENANTS MEM_CALLS=$MEM_CALLS PEER_MEM_CALLS=$PEER_MEM_CALLS MEM_CPS=$MEM_CPS MEM_SETTLE_S=$MEM_SETTLE_S BUDGET_S=$BUDGET_S."
		echo "teams-sbc $(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null) (working tree may differ), $(sipp -v 2>&1 | grep -o 'SIPp v[^ ]*' | head -1), $(kamailio -v 2>/dev/null | head -1 | cut -d' ' -f1-3)."
		echo
		echo "$TABLE"
		echo
		cat <<-'NOTES'
		How to read it (method: docs/bench/calls-method.md):
		- max cps: highest step rate where every SIPp exited 0, every call completed, no call failed,
		  no SIPp sent or received a retransmission (so the SUT retransmitted nothing either), and
		  the achieved rate was >= 93 % of the target. Steps are 5 s of calls, 1 s hold, fresh SUT.
		- CPU: utime+stime of the SUT's processes (all threads) over the step, % of one core
		  (200 % = the whole box); for the peer it is Kamailio (main + workers) plus rtpengine.
		  The SIPp load generators share the same 2 cores (uac%/uas% columns below).
		- RSS: teams-sbc: VmRSS (/proc/PID/status), peak of 0.5 s samples during the max step. Peer: sum
		  of PSS (/proc/PID/smaps_rollup) over Kamailio's processes and rtpengine (a VmRSS sum counts
		  Kamailio's shared memory once per worker).
		- memory per call: (memory with N calls established - memory idle after start) / N, read once
		  all N are answered ("at once", transactions still alive) and 35 s later ("settled", after the
		  32 s INVITE transaction timers). The peer is run at 4,500 calls: rtpengine needs 4 fds per
		  session and the open-files hard limit here is 20,000.
		NOTES
		echo
		if [ -s "$WORK/reloads.txt" ]; then
			echo "Reloads during the sbc-reload steps ($RELOAD_TENANTS tenants, $RELOAD_RANGES DID ranges, a SIGHUP every $RELOAD_EVERY_S s; config_reload_duration_seconds):"
			echo
			echo '```'
			cat "$WORK/reloads.txt"
			echo '```'
			echo
		fi
		echo "Steps (raw, all columns in calls-$STAMP.tsv):"
		echo
		echo '```'
		column -t -s "$(printf '\t')" "$TSV"
		echo '```'
	} >"$OUT_DIR/calls-$STAMP.md"
	echo "# saved: $OUT_DIR/calls-$STAMP.md and .tsv"
fi
