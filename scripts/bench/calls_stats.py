#!/usr/bin/env python3
"""Statistics of scripts/bench-calls.sh (standard library only).

  calls_stats.py step DIR               totals of one load run: SIPp statistics (-trace_stat)
                                        and message counts (-trace_counts) of every UAC and
                                        the UAS under DIR, as KEY=VALUE lines
  calls_stats.py established DIR        calls answered and not yet hung up, and failed calls,
                                        summed over the UACs
  calls_stats.py table TSV [CMD]        the result table (Markdown) of one run
"""
import csv
import glob
import os
import sys


def last_rows(pattern):
    """Header and last data row of every ';'-separated SIPp file matching pattern."""
    for path in sorted(glob.glob(pattern)):
        with open(path, newline="") as fh:
            rows = [r for r in csv.reader(fh, delimiter=";") if r]
        if len(rows) >= 2:
            yield path, rows[0], rows[1:]


def epoch(field):
    # "2026-11-22\t02:46:18.646582\t1795315578.646582"
    return float(field.split("\t")[-1])


def ms(field):
    # ResponseTime: "HH:MM:SS:microseconds"
    h, m, s, us = (int(x) for x in field.split(":"))
    return ((h * 60 + m) * 60 + s) * 1000 + us / 1000


def stats_totals(pattern, want_rate):
    """Sums over SIPp -trace_stat files; achieved = sum over files of calls / creation time."""
    tot = dict(created=0, ok=0, failed=0, retrans_sent=0, dead=0, achieved=0.0, rt_ms=0.0, files=0)
    rt_weight = 0
    for _path, head, rows in last_rows(pattern):
        col = {name: i for i, name in enumerate(head)}
        last = rows[-1]
        created = int(last[col["TotalCallCreated"]])
        tot["created"] += created
        tot["ok"] += int(last[col["SuccessfulCall(C)"]])
        tot["failed"] += int(last[col["FailedCall(C)"]])
        tot["retrans_sent"] += int(last[col["Retransmissions(C)"]])
        tot["dead"] += int(last[col["DeadCallMsgs(C)"]])
        tot["files"] += 1
        if "ResponseTime1(C)" in col and created:
            tot["rt_ms"] += ms(last[col["ResponseTime1(C)"]]) * created
            rt_weight += created
        if want_rate:
            # time at which this UAC had created all its calls (interpolated between samples)
            start = epoch(rows[0][col["StartTime"]])
            prev_t = prev_c = None
            for r in rows:
                t, c = epoch(r[col["CurrentTime"]]), int(r[col["TotalCallCreated"]])
                if c >= created and created > 0:
                    if prev_t is not None and c > prev_c:
                        t = prev_t + (created - prev_c) / (c - prev_c) * (t - prev_t)
                    if t > start:
                        tot["achieved"] += created / (t - start)
                    break
                prev_t, prev_c = t, c
    tot["rt_ms"] = tot["rt_ms"] / rt_weight if rt_weight else 0.0
    return tot


def counts_totals(pattern):
    """Sums over SIPp -trace_counts files: every *_Retrans (sent retransmissions of our sends and
    received duplicates of our receives), *_Unexp, *_Timeout, plus ACK/BYE sent."""
    tot = dict(retrans=0, unexp=0, timeout=0, ack_sent=0, bye_sent=0)
    for _path, head, rows in last_rows(pattern):
        last = rows[-1]
        for name, value in zip(head, last):
            if not value.strip().lstrip("-").isdigit():
                continue
            v = int(value)
            if name.endswith("_Retrans"):
                tot["retrans"] += v
            elif name.endswith("_Unexp"):
                tot["unexp"] += v
            elif name.endswith("_Timeout"):
                tot["timeout"] += v
            elif name.endswith("_ACK_Sent"):
                tot["ack_sent"] += v
            elif name.endswith("_BYE_Sent"):
                tot["bye_sent"] += v
    return tot


def cmd_step(d):
    uac = stats_totals(os.path.join(d, "uac*", "uac.csv"), True)
    uas = stats_totals(os.path.join(d, "uas", "uas.csv"), False)
    uac_c = counts_totals(os.path.join(d, "uac*", "*_counts.csv"))
    uas_c = counts_totals(os.path.join(d, "uas", "*_counts.csv"))
    out = dict(
        uac_files=uac["files"],
        created=uac["created"],
        ok=uac["ok"],
        failed=uac["failed"] + uas["failed"],
        # every retransmission either side saw: sent by SIPp, or received twice from the SUT
        retrans=uac_c["retrans"] + uas_c["retrans"],
        retrans_sent=uac["retrans_sent"] + uas["retrans_sent"],
        unexpected=uac_c["unexp"] + uas_c["unexp"],
        dead=uac["dead"] + uas["dead"],
        achieved="%.0f" % uac["achieved"],
        rt_ms="%.1f" % uac["rt_ms"],
    )
    for k, v in out.items():
        print("%s=%s" % (k, v))


def cmd_established(d):
    """Calls answered and not hung up, and calls failed so far (UAC side)."""
    c = counts_totals(os.path.join(d, "uac*", "*_counts.csv"))
    s = stats_totals(os.path.join(d, "uac*", "uac.csv"), False)
    print(c["ack_sent"] - c["bye_sent"], s["failed"])


def fnum(v):
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def cmd_table(tsv, command):
    with open(tsv) as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    paths = []
    for r in rows:
        if r["path"] not in paths:
            paths.append(r["path"])
    names = {
        "sbc": "carrier UDP -> teams-sbc -> Teams TCP (RTP <-> SRTP anchored in teams-sbc)",
        "sbc-nocdr": "as sbc, without call detail records ([cdr] enabled = false)",
        "kamailio": "carrier UDP -> Kamailio + rtpengine -> Teams UDP (RTP <-> SRTP anchored in rtpengine)",
    }
    print("| path | max cps, 0 failed and 0 retrans | first failing step | SUT CPU% at 1000 cps | "
          "SUT CPU% at max | SUT RSS at max | memory per established call | INVITE->200 at max |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for p in paths:
        steps = [r for r in rows if r["path"] == p and r["kind"] == "step"]
        passed = [r for r in steps if r["verdict"] == "PASS"]
        top = max(passed, key=lambda r: int(r["rate"])) if passed else None
        fails = [r for r in steps if r["verdict"] != "PASS" and (not top or int(r["rate"]) > int(top["rate"]))]
        first_fail = min(fails, key=lambda r: int(r["rate"])) if fails else None
        at1k = [r for r in steps if r["rate"] == "1000"]
        mem = [r for r in rows if r["path"] == p and r["kind"] == "mem"]

        def cpu(r):
            if not r:
                return "-"
            s = "%s" % r["sut_cpu%"]
            if r["rtpe_cpu%"] not in ("", "-"):
                s += " (rtpengine %s)" % r["rtpe_cpu%"]
            if r["verdict"] != "PASS":
                s += " [step failed]"
            return s

        if first_fail:
            why = "%s: %s ok, %s failed, %s retrans, %s cps achieved" % (
                first_fail["rate"], first_fail["ok"], first_fail["failed"], first_fail["retrans"],
                first_fail["achieved_cps"])
        else:
            why = "none (search capped)"
        rss = "-"
        if top and fnum(top["mem_peak_kb"]):
            rss = "%.0f MiB (idle %.0f MiB)" % (fnum(top["mem_peak_kb"]) / 1024, fnum(top["mem0_kb"]) / 1024)
        percall = "-"
        if mem:
            m = mem[-1]
            est = fnum(m["established"])
            m0, m1, m2 = fnum(m["mem0_kb"]), fnum(m["mem1_kb"]), fnum(m["mem2_kb"])
            if est and m0 is not None and m2 is not None:
                percall = "%.1f kB settled, %.1f kB at once (%d calls; %.0f -> %.0f MiB)" % (
                    (m2 - m0) / est, (m1 - m0) / est, est, m0 / 1024, m2 / 1024)
                if m["verdict"] != "PASS":
                    percall += " [%s]" % m["verdict"]
        print("| %s | **%s** | %s | %s | %s | %s | %s | %s |" % (
            names.get(p, p), top["rate"] if top else "0", why, cpu(at1k[0] if at1k else None),
            cpu(top), rss, percall, ("%s ms" % top["inv_rt_ms"]) if top else "-"))
    if command:
        print()
        print("Command: `%s`" % command)


def main(argv):
    if len(argv) >= 3 and argv[1] == "step":
        cmd_step(argv[2])
    elif len(argv) >= 3 and argv[1] == "established":
        cmd_established(argv[2])
    elif len(argv) >= 3 and argv[1] == "table":
        cmd_table(argv[2], argv[3] if len(argv) > 3 else "")
    else:
        sys.stderr.write(__doc__)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
