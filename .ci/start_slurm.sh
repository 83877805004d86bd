#!/usr/bin/env bash
# Start a SLURM test cluster on this machine (CI only; needs root).
#
# Installs Debian's slurm-wlm, munge and Open MPI when missing and brings up a
# cluster of TWO compute nodes, cn1 and cn2, on the one machine: each slurmd
# runs in its own network namespace (slurm-cn1, slurm-cn2; made here with
# `ip netns`, a veth pair each on a private bridge desbr0, addresses
# 10.253.77.11 and .12 that exist only inside this machine) and its own UTS
# namespace (hostname cn1 / cn2), so that the two nodes have their own
# addresses, ports and host names like two real nodes.  slurmctld runs in the
# host namespace at 10.253.77.1.  Both nodes declare all of the machine's CPUs
# (they share them: this is a functional test, not a performance one).
# No accounting database, no cgroups; MpiDefault=pmix (Open MPI's mpi4py ranks
# find each other through srun's PMIx plugin, across the two nodes over TCP).
#
# When network namespaces cannot be made (no CAP_NET_ADMIN, no `ip`), it falls
# back to one node on the local host (the multi-node test then skips itself).
# tests/test_slurm.py runs against this cluster and skips when no controller
# answers.  Exits 0 with a message (never fails CI) when the cluster cannot be
# started, so the rest of the test suite still runs.
#
#   SLURM_CI_NODES=1 .ci/start_slurm.sh   # force the single-node cluster
#   .ci/start_slurm.sh --stop             # stop the daemons, remove the namespaces
set -uo pipefail

log() { echo "[start_slurm] $*"; }

NET=10.253.77
BRIDGE=desbr0
NODES=(cn1 cn2)

stop_cluster() {
    local pids=""
    for pidfile in /var/run/slurm/slurmctld.pid /var/run/slurm/slurmd*.pid; do
        [ -s "$pidfile" ] && pids="$pids $(cat "$pidfile")"
    done
    [ -n "$pids" ] && kill $pids 2>/dev/null
    # wait until they are gone (slurmctld saves its state first)
    for _ in $(seq 1 30); do
        alive=0
        for p in $pids; do kill -0 "$p" 2>/dev/null && alive=1; done
        [ "$alive" = 0 ] && break
        sleep 1
    done
    # a slurmd still trying to register with a dead controller ignores SIGTERM
    [ -n "$pids" ] && kill -9 $pids 2>/dev/null
    for n in "${NODES[@]}"; do
        ip netns del "slurm-$n" 2>/dev/null
        ip link del "veth-$n" 2>/dev/null
    done
    ip link del "$BRIDGE" 2>/dev/null
    return 0
}

if [ "$(id -u)" != 0 ]; then
    log "not root: skipping the SLURM cluster (tests marked slurm will skip)"
    exit 0
fi
if [ "${1:-}" = "--stop" ]; then
    stop_cluster
    log "stopped"
    exit 0
fi

if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null || ! command -v mpirun >/dev/null \
        || ! command -v ip >/dev/null || ! command -v nsenter >/dev/null; then
    # Open MPI brings libpmix, which srun's pmix plugin needs to start mpi4py ranks;
    # iproute2 (ip) and util-linux (nsenter, unshare) make the two nodes' namespaces
    log "installing slurm-wlm, munge, Open MPI and iproute2"
    export DEBIAN_FRONTEND=noninteractive
    if ! { apt-get update -q && apt-get install -y -q slurm-wlm munge libopenmpi-dev openmpi-bin iproute2 util-linux; } >/tmp/start_slurm_apt.log 2>&1; then
        log "apt-get failed (see /tmp/start_slurm_apt.log): no SLURM cluster"
        exit 0
    fi
fi

if sinfo -h -o %T 2>/dev/null | grep -q idle; then
    log "a SLURM controller is already running"
    sinfo
    exit 0
fi

# ------------------------------------------------------------------ network
# One namespace per compute node, a veth pair each, the host ends on a bridge
# that carries the controller's address; every address is private to this machine.
make_network() {
    command -v ip >/dev/null || { log "no ip(8)"; return 1; }
    ip link show "$BRIDGE" >/dev/null 2>&1 || ip link add "$BRIDGE" type bridge || return 1
    ip addr replace "$NET.1/24" dev "$BRIDGE" || return 1
    ip link set "$BRIDGE" up || return 1
    local i=11
    for n in "${NODES[@]}"; do
        local ns="slurm-$n"
        ip netns list | grep -qw "$ns" || ip netns add "$ns" || return 1
        if ! ip link show "veth-$n" >/dev/null 2>&1; then
            ip link add "veth-$n" type veth peer name eth0 netns "$ns" || return 1
        fi
        ip link set "veth-$n" master "$BRIDGE" up || return 1
        ip -n "$ns" link set lo up || return 1
        ip -n "$ns" addr replace "$NET.$i/24" dev eth0 || return 1
        ip -n "$ns" link set eth0 up || return 1
        ip -n "$ns" route replace default via "$NET.1" || return 1
        i=$((i + 1))
    done
    return 0
}

multi=0
if [ "${SLURM_CI_NODES:-2}" != 1 ]; then
    if make_network; then
        multi=1
    else
        log "could not make the network namespaces: falling back to a single-node cluster"
        stop_cluster
    fi
fi

host=$(hostname -s)
# CPUs, sockets, cores and memory exactly as slurmd sees them (a mismatch drains the node)
hw=$(slurmd -C | head -1 | sed -e 's/^NodeName=[^ ]* //' -e 's/ UpTime.*//')
mem=$(echo "$hw" | sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p')
if [ "$multi" = 1 ]; then
    # two nodes share the memory
    hw=$(echo "$hw" | sed "s/RealMemory=[0-9]*/RealMemory=$((mem * 4 / 10))/")
    nodelines="NodeName=cn1 NodeHostname=cn1 NodeAddr=$NET.11 $hw State=UNKNOWN
NodeName=cn2 NodeHostname=cn2 NodeAddr=$NET.12 $hw State=UNKNOWN"
    nodelist=cn[1-2]
    ctlhost="$host($NET.1)"
else
    hw=$(echo "$hw" | sed "s/RealMemory=[0-9]*/RealMemory=$((mem * 9 / 10))/")
    nodelines="NodeName=$host $hw State=UNKNOWN"
    nodelist=$host
    ctlhost=$host
fi

mkdir -p /etc/slurm /var/spool/slurmctld /var/spool/slurmd /var/log/slurm /run/munge /var/run/slurm
cat > /etc/slurm/slurm.conf <<EOF
# test cluster written by .ci/start_slurm.sh ($([ "$multi" = 1 ] && echo "two nodes in network namespaces" || echo "single node"))
ClusterName=desired-ci
SlurmctldHost=$ctlhost
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=/var/spool/slurmctld
# %n: one spool directory, pid file and log per node (several slurmd on one machine)
SlurmdSpoolDir=/var/spool/slurmd/%n
SlurmctldPidFile=/var/run/slurm/slurmctld.pid
SlurmdPidFile=/var/run/slurm/slurmd-%n.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd-%n.log
# a node's own temporary directory: srun's PMIx plugin makes spmix_appdir_UID_JOB.STEP
# there, which would collide between two nodes sharing /tmp
TmpFS=/tmp/slurm-%n
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
$nodelines
PartitionName=debug Nodes=$nodelist Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
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

log "starting slurmctld"
pgrep -x slurmctld >/dev/null || /usr/sbin/slurmctld -c
if [ "$multi" = 1 ]; then
    for n in "${NODES[@]}"; do
        mkdir -p "/var/spool/slurmd/$n" "/tmp/slurm-$n"
        log "starting slurmd $n in network namespace slurm-$n"
        # nsenter, not `ip netns exec` (that remounts /sys without /sys/fs/cgroup, which
        # slurmd needs); its own UTS namespace: `hostname` in a job on cn1 prints cn1
        nsenter --net="/var/run/netns/slurm-$n" unshare --uts sh -c "hostname $n && exec /usr/sbin/slurmd -N $n" \
            || log "slurmd $n did not start"
    done
else
    mkdir -p "/var/spool/slurmd/$host" "/tmp/slurm-$host"
    log "starting slurmd"
    pgrep -x slurmd >/dev/null || /usr/sbin/slurmd -c
fi

want=$([ "$multi" = 1 ] && echo 2 || echo 1)
for _ in $(seq 1 40); do
    nidle=$(sinfo -h -N -o "%N %T" 2>/dev/null | grep -c idle)
    if [ "$nidle" -ge "$want" ]; then
        log "$nidle node(s) idle: cluster ready"
        sinfo -N -l
        exit 0
    fi
    for n in $(sinfo -h -N -o "%N %T" 2>/dev/null | awk '$2 ~ /drain|down/ {print $1}'); do
        scontrol update NodeName="$n" State=RESUME 2>/dev/null || true
    done
    sleep 1
done
log "only ${nidle:-0} of $want node(s) became idle; see /var/log/slurm/*.log"
sinfo -N -l 2>&1
tail -5 /var/log/slurm/*.log 2>/dev/null
exit 0
