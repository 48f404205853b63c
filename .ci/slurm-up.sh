#!/usr/bin/env bash
# Start a single-node SLURM cluster (Debian 12 packages: Slurm 22.05) with accounting (slurmdbd + MariaDB)
# and one fake GPU, for the pipeline's SLURM test.  Needs root.  Idempotent: exits 0 when the cluster
# already answers.  Stop it with .ci/slurm-down.sh.
#
# Writes /etc/slurm/{slurm.conf,slurmdbd.conf,gres.conf}; clients need SLURM_CONF=/etc/slurm/slurm.conf.
set -euo pipefail
export SLURM_CONF=/etc/slurm/slurm.conf

if command -v scontrol >/dev/null && scontrol ping 2>/dev/null | grep -q UP && sinfo -h -o %T 2>/dev/null | grep -qE 'idle|mixed|alloc'; then
    echo "slurm-up: cluster already running"; exit 0
fi
[ "$(id -u)" = 0 ] || { echo "slurm-up: needs root" >&2; exit 1; }

wait_for() {  # wait_for SECONDS DESCRIPTION COMMAND...
    local t=$1 what=$2; shift 2
    for _ in $(seq "$t"); do "$@" >/dev/null 2>&1 && return 0; sleep 1; done
    echo "slurm-up: timed out waiting for $what" >&2; return 1
}

# 1. packages, with no service started by dpkg
if ! command -v slurmctld >/dev/null || ! command -v slurmdbd >/dev/null || ! command -v mysqld_safe >/dev/null; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends slurmctld slurmd slurm-client slurmdbd munge mariadb-server >/dev/null
    rm -f /usr/sbin/policy-rc.d
fi

# 2. munge
mkdir -p /etc/munge /var/lib/munge /var/log/munge /run/munge
chown munge:munge /etc/munge /var/lib/munge /var/log/munge /run/munge
chmod 0700 /etc/munge /var/lib/munge /var/log/munge; chmod 0755 /run/munge
if [ ! -s /etc/munge/munge.key ]; then
    mungekey --create --keyfile /etc/munge/munge.key 2>/dev/null || mungekey --create
fi
chown munge:munge /etc/munge/munge.key; chmod 0400 /etc/munge/munge.key
if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    runuser -u munge -- /usr/sbin/munged --force
    wait_for 20 munged sh -c 'munge -n | unmunge'
fi

# 3. accounting: MariaDB + slurmdbd
mkdir -p /run/mysqld && chown mysql:mysql /run/mysqld
if ! mysqladmin ping >/dev/null 2>&1; then
    (mysqld_safe --user=mysql >/var/log/mysqld_safe.log 2>&1 &)
    wait_for 60 MariaDB mysqladmin ping
fi
mysql -e "CREATE DATABASE IF NOT EXISTS slurm_acct_db; CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY 'slurmpw'; GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost'; FLUSH PRIVILEGES;"
mkdir -p /etc/slurm /var/log/slurm /var/spool/slurmctld /var/spool/slurmd /run/slurm
cat > /etc/slurm/slurmdbd.conf <<'EOF'
AuthType=auth/munge
DbdHost=localhost
SlurmUser=root
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=slurm
StoragePass=slurmpw
StorageLoc=slurm_acct_db
PidFile=/run/slurmdbd.pid
LogFile=/var/log/slurm/slurmdbd.log
EOF
chmod 0600 /etc/slurm/slurmdbd.conf
if ! (exec 3<>/dev/tcp/127.0.0.1/6819) 2>/dev/null; then
    slurmdbd
    wait_for 60 "slurmdbd (port 6819)" bash -c 'exec 3<>/dev/tcp/127.0.0.1/6819'
fi

# 4. slurm.conf (before sacctmgr, which reads it), a fake GPU backed by an empty file
touch /etc/slurm/fake-gpu0 /etc/slurm/fake-gpu1
cat > /etc/slurm/gres.conf <<'EOF'
NodeName=localhost Name=gpu File=/etc/slurm/fake-gpu[0-1]
EOF
# declared bigger than this 2-core CI machine (config_overrides lets slurmd accept it) so that the
# profile's default job size (4 CPUs, 16 GB, 1 GPU) schedules; the smoke jobs are tiny
CPUS=8
cat > /etc/slurm/slurm.conf <<EOF
ClusterName=ci
SlurmctldHost=localhost
SlurmUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
ReturnToService=2
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=500
MinJobAge=3600
KillWait=5
SlurmdParameters=config_overrides
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
JobCompType=jobcomp/none
GresTypes=gpu
NodeName=localhost NodeAddr=127.0.0.1 CPUs=${CPUS} RealMemory=32000 Gres=gpu:2 State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
EOF
sacctmgr -i add cluster ci >/dev/null 2>&1 || true

# 5. controller and node daemon
if ! scontrol ping 2>/dev/null | grep -q UP; then
    slurmctld -c -f /etc/slurm/slurm.conf
    wait_for 60 slurmctld sh -c 'scontrol ping | grep -q UP'
fi
if [ ! -s /run/slurmd.pid ] || ! kill -0 "$(cat /run/slurmd.pid)" 2>/dev/null; then
    slurmd -f /etc/slurm/slurm.conf -N localhost
fi
for _ in $(seq 60); do
    state=$(sinfo -h -o %T 2>/dev/null | head -1)
    case "$state" in
        idle*|mixed*|alloc*) echo "slurm-up: cluster 'ci' up ($state, ${CPUS} CPUs, 2 fake GPUs)"; exit 0 ;;
        drain*|down*) scontrol update NodeName=localhost State=RESUME 2>/dev/null || true ;;
    esac
    sleep 1
done
echo "slurm-up: node never became idle" >&2; sinfo >&2; exit 1
