#!/usr/bin/env python3
"""Companion to the kit's proc_sampler.py: proportional set size (PSS) of a process group.

RSS summed over a multi-process server (MLServer: a main process plus inference worker
processes) counts shared pages (libpython, numpy, onnxruntime text...) once per process; PSS
splits them, so the sum is what the group really occupies. Samples /proc/PID/smaps_rollup.
usage: pss_sampler.py PGID OUT.tsv MAX_SECONDS [INTERVAL=1.0]
Writes: t_s  n_procs  total_rss_kB  total_pss_kB ; final line '# peak_total_pss_kB=.. peak_total_rss_kB=..'"""
import os, sys, time

pgid, out, max_s = int(sys.argv[1]), sys.argv[2], float(sys.argv[3])
iv = float(sys.argv[4]) if len(sys.argv) > 4 else 1.0


def members():
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                st = open(f"/proc/{p}/stat").read()
                if int(st[st.rindex(")") + 2:].split()[2]) == pgid:
                    yield int(p)
            except (OSError, ValueError):
                pass


def rollup(pid):
    rss = pss = 0
    try:
        for line in open(f"/proc/{pid}/smaps_rollup"):
            if line.startswith("Rss:"):
                rss = int(line.split()[1])
            elif line.startswith("Pss:"):
                pss = int(line.split()[1])
    except OSError:
        pass
    return rss, pss


peak_pss = peak_rss = 0
t0 = time.time()
with open(out, "w") as fo:
    fo.write(f"# t0_epoch={t0:.3f}\nt_s\tn_procs\ttotal_rss_kB\ttotal_pss_kB\n")
    while time.time() - t0 < max_s:
        ms = list(members())
        if not ms:
            break
        vals = [rollup(p) for p in ms]
        rss, pss = sum(v[0] for v in vals), sum(v[1] for v in vals)
        peak_pss, peak_rss = max(peak_pss, pss), max(peak_rss, rss)
        fo.write(f"{time.time() - t0:.2f}\t{len(ms)}\t{rss}\t{pss}\n")
        fo.flush()
        time.sleep(iv)
    fo.write(f"# peak_total_pss_kB={peak_pss} peak_total_rss_kB={peak_rss}\n")
