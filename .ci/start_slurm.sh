#!/usr/bin/env bash
# Start a single-node SLURM cluster on this machine (CI only; needs root).
#
# Installs Debian's slurm-wlm and munge when missing, writes a minimal
# slurm.conf for the local host (all its CPUs, no accounting database, no
# cgroups), starts munged, slurmctld and slurmd, and waits until `sinfo` shows
# the node idle.  tests/test_slurm.py runs the mini night through
# `snakemake --profile profiles/slurm` against this cluster and skips itself
# when no controller answers.  Exits 0 with a message (never fails CI) when the
# cluster cannot be started, so the rest of the test suite still runs.
set -uo pipefail

log() { echo "[start_slurm] $*"; }

if [ "$(id -u)" != 0 ]; then
    log "not root: skipping the SLURM cluster (tests marked slurm will skip)"
    exit 0
fi

if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null || ! command -v mpirun >/dev/null; then
    # Open MPI brings libpmix, which srun's pmix plugin needs to start mpi4py ranks
    log "installing slurm-wlm, munge and Open MPI"
    export DEBIAN_FRONTEND=noninteractive
    if ! { apt-get update -q && apt-get install -y -q slurm-wlm munge libopenmpi-dev openmpi-bin; } >/tmp/start_slurm_apt.log 2>&1; then
        log "apt-get failed (see /tmp/start_slurm_apt.log): no SLURM cluster"
        exit 0
    fi
fi

if sinfo -h -o %T 2>/dev/null | grep -q idle; then
    log "a SLURM controller is already running"
    exit 0
fi

host=$(hostname -s)
# CPUs, sockets, cores and memory exactly as slurmd sees them (a mismatch drains the node)
hw=$(slurmd -C | head -1 | sed -e 's/^NodeName=[^ ]* //' -e 's/ UpTime.*//')
mem=$(echo "$hw" | sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p')
hw=$(echo "$hw" | sed "s/RealMemory=[0-9]*/RealMemory=$((mem * 9 / 10))/")

mkdir -p /etc/slurm /var/spool/slurmctld /var/spool/slurmd /var/log/slurm /run/munge /var/run/slurm
cat > /etc/slurm/slurm.conf <<EOF
# single-node test cluster written by .ci/start_slurm.sh
ClusterName=desired-ci
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/var/run/slurm/slurmctld.pid
SlurmdPidFile=/var/run/slurm/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SwitchType=switch/none
# srun starts MPI ranks through PMIx (Open MPI's mpi4py ranks find each other)
MpiDefault=pmix
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ReturnToService=2
# no accounting: the workflow queries job states with squeue
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
# keep finished jobs visible to squeue for a while (the executor polls every few seconds)
MinJobAge=600
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
KillWait=5
Waittime=0
NodeName=$host $hw State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
EOF
: > /etc/slurm/cgroup.conf

# munge: a key readable only by the munge user
if [ ! -s /etc/munge/munge.key ]; then
    dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key 2>/dev/null
fi
chown -R munge:munge /etc/munge /run/munge /var/lib/munge /var/log/munge 2>/dev/null
chmod 0400 /etc/munge/munge.key
if ! pgrep -x munged >/dev/null; then
    log "starting munged"
    su -s /bin/sh munge -c "/usr/sbin/munged --force" || runuser -u munge -- /usr/sbin/munged --force || true
fi

log "starting slurmctld and slurmd"
pgrep -x slurmctld >/dev/null || /usr/sbin/slurmctld -c
pgrep -x slurmd >/dev/null || /usr/sbin/slurmd -c

for _ in $(seq 1 30); do
    state=$(sinfo -h -o %T 2>/dev/null | head -1)
    if [ "$state" = idle ]; then
        log "node $host is idle: cluster ready"
        sinfo
        exit 0
    fi
    if [ "$state" = "drained" ] || [ "$state" = "down" ]; then
        scontrol update NodeName="$host" State=RESUME 2>/dev/null || true
    fi
    sleep 1
done
log "the node did not become idle (state '${state:-none}'); see /var/log/slurm/*.log"
tail -5 /var/log/slurm/slurmctld.log /var/log/slurm/slurmd.log 2>/dev/null
exit 0
