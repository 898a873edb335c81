# lib.sh - helpers of scripts/bench-calls.sh (sourced). CPU is "% of one core" (2 cores here:
# 200 % = the whole box); memory in KiB, as /proc reports it.

CLK_TCK=$(getconf CLK_TCK)

# tree_pids PID...: the PIDs plus their direct children (Kamailio forks its workers).
tree_pids() {
	local p
	for p in "$@"; do
		[ -n "$p" ] || continue
		echo "$p"
		ps -o pid= --ppid "$p" 2>/dev/null | tr -d " "
	done
}

# cpu_ticks PID...: utime+stime of all threads, summed over the PIDs (/proc/PID/stat 14, 15).
cpu_ticks() {
	local p t=0 v
	for p in "$@"; do
		[ -r "/proc/$p/stat" ] || continue
		v=$(sed 's/^.*) //' "/proc/$p/stat" 2>/dev/null | awk '{print $12 + $13}')
		t=$((t + ${v:-0}))
	done
	echo "$t"
}

# pct TICKS SECONDS -> % of one core
pct() { awk -v t="$1" -v s="$2" -v h="$CLK_TCK" 'BEGIN { if (s > 0) printf "%.0f", 100 * t / h / s; else print "-" }'; }

# status_kb FIELD PID...: a /proc/PID/status field (VmRSS, VmHWM) summed over the PIDs.
status_kb() {
	local field=$1 p t=0 v
	shift
	for p in "$@"; do
		v=$(awk -v f="$field:" '$1 == f { print $2 }' "/proc/$p/status" 2>/dev/null)
		t=$((t + ${v:-0}))
	done
	echo "$t"
}

# pss_kb PID...: proportional set size summed over the PIDs. Several processes that share
# memory (Kamailio's shm pool is mapped by every worker) would be counted many times by a
# sum of VmRSS; PSS splits each shared page between its users, so the sum is the real total.
pss_kb() {
	local p t=0 v
	for p in "$@"; do
		v=$(awk '$1 == "Pss:" { print $2 }' "/proc/$p/smaps_rollup" 2>/dev/null)
		t=$((t + ${v:-0}))
	done
	echo "$t"
}

# mem_kb PID...: one process: its VmRSS; several: the sum of their PSS (see pss_kb).
mem_kb() {
	if [ $# -eq 1 ]; then status_kb VmRSS "$1"; else pss_kb "$@"; fi
}

# fd_count PID...: open file descriptors summed over the PIDs.
fd_count() {
	local p t=0 v
	for p in "$@"; do
		v=$(ls "/proc/$p/fd" 2>/dev/null | wc -l)
		t=$((t + v))
	done
	echo "$t"
}

now() { date +%s.%N; }

# udp_bound IP PORT / tcp_listening IP PORT
udp_bound() { ss -Hlun "src $1 and sport = :$2" 2>/dev/null | grep -q .; }
tcp_listening() { ss -Hltn "src $1 and sport = :$2" 2>/dev/null | grep -q .; }

# stop_pid PID NAME: TERM, up to 5 s, then KILL (only processes this script started).
stop_pid() {
	local pid=$1 name=$2
	[ -n "$pid" ] || return 0
	kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null; return 0; }
	kill -TERM "$pid" 2>/dev/null
	for _ in $(seq 50); do
		kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null; return 0; }
		sleep 0.1
	done
	echo "bench: $name ($pid) did not stop, sending KILL" >&2
	kill -KILL "$pid" 2>/dev/null
	wait "$pid" 2>/dev/null
}

# metric_sum URL NAME: the sum of all samples of one Prometheus metric (any labels).
metric_sum() {
	curl -s --max-time 2 "$1" 2>/dev/null |
		awk -v n="$2" '$1 == n || index($1, n "{") == 1 { s += $NF; found = 1 } END { if (found) printf "%.0f", s; else print "-" }'
}

# thread_ticks PID: "comm ticks" per thread name of one process (utime+stime, threads with the
# same name added), for a per-thread CPU breakdown of the SUT.
thread_ticks() {
	local t
	for t in /proc/"$1"/task/*; do
		[ -r "$t/stat" ] || continue
		# comm may contain spaces: it is between the first "(" and the last ")"
		sed -n 's/^[0-9]* (\(.*\)) [A-Za-z] \(.*\)$/\1\t\2/p' "$t/stat" 2>/dev/null |
			awk -F'\t' '{ split($2, f, " "); gsub(/ /, "_", $1); print $1, f[11] + f[12] }'
	done | awk '{ s[$1] += $2 } END { for (k in s) print k, s[k] }' | sort
}

# thread_pct BEFORE_FILE AFTER_FILE SECONDS: per thread name, % of one core between two snapshots.
thread_pct() {
	awk -v s="$3" -v h="$CLK_TCK" 'NR == FNR { b[$1] = $2; next }
		{ d = $2 - b[$1]; if (d > 0) printf "%-24s %6.1f %%\n", $1, 100 * d / h / s }' "$1" "$2" | sort -k2 -rn
}
