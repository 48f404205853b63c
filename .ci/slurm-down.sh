#!/usr/bin/env bash
# Stop the cluster that .ci/slurm-up.sh started (by pid file, never by process name).
export SLURM_CONF=/etc/slurm/slurm.conf
scontrol shutdown >/dev/null 2>&1 || true
sleep 2
for pidfile in /run/slurmd.pid /run/slurmctld.pid /run/slurmdbd.pid /run/munge/munged.pid; do
    [ -s "$pidfile" ] && kill "$(cat "$pidfile")" 2>/dev/null || true
done
mysqladmin shutdown >/dev/null 2>&1 || true
exit 0
