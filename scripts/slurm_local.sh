#!/usr/bin/env bash
# A one-node SLURM cluster on this machine, to try `launcher=slurm` (and to test it in CI).
#
#   scripts/slurm_local.sh start    install slurm + munge if missing (root, apt), start munged, slurmctld, slurmd
#   scripts/slurm_local.sh status   sinfo of the local cluster (exit 1 when it is not up)
#   scripts/slurm_local.sh stop     end exactly the daemons `start` started (their pid files), nothing else
#   scripts/slurm_local.sh env      the line to put SLURM's commands on this cluster: eval "$(... env)"
#
# Everything lives under one folder, ${SLURM_LOCAL_DIR:-/tmp/recipelab-slurm}: slurm.conf, the munge key and
# socket, spool and state, logs, pid files. SLURM's commands (sbatch, sinfo, ...) find the cluster through
# SLURM_CONF=<folder>/slurm.conf. One node (this host, all its CPUs, its memory), one partition `debug`.
# No accounting database: `sacct` is off (recipelab's launcher asks squeue instead, see run/slurm.py).
# Ports: SLURM_LOCAL_PORT (slurmctld, default 6817) and the next one (slurmd).
set -euo pipefail

DIR=${SLURM_LOCAL_DIR:-/tmp/recipelab-slurm}
PORT=${SLURM_LOCAL_PORT:-6817}
CONF=$DIR/slurm.conf
MUNGE_SOCKET=$DIR/munge/munge.socket.2
HOST=$(hostname -s)
export SLURM_CONF=$CONF

say() { echo "slurm_local: $*" >&2; }
alive() { [[ -s $1 ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

install() {
    local missing=()
    for cmd in slurmctld slurmd sbatch munged; do command -v "$cmd" >/dev/null || missing+=("$cmd"); done
    [[ ${#missing[@]} -eq 0 ]] && return 0
    if [[ $(id -u) != 0 ]] || ! command -v apt-get >/dev/null; then
        say "missing ${missing[*]}: run as root on Debian/Ubuntu (apt-get install slurmctld slurmd slurm-client munge)"
        exit 3
    fi
    say "installing slurmctld slurmd slurm-client munge (apt)"
    # the packages' own services stay off (no init here, or policy-rc.d): this script starts its own daemons
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurmctld slurmd slurm-client munge >/dev/null \
        || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurmctld slurmd \
            slurm-client munge >/dev/null; }
}

write_conf() {
    local cpus mem
    cpus=$(nproc --all)
    mem=$(( $(awk '/^MemTotal:/ {print $2}' /proc/meminfo) / 1024 ))  # MB, as slurmd measures it
    mkdir -p "$DIR"/{munge,spool/ctld,spool/d,log,run}
    chmod 755 "$DIR" "$DIR/munge"  # munged wants its socket folder open to every user (the key file is 0400)
    cat >"$CONF.tmp" <<EOF
# written by scripts/slurm_local.sh: a one-node cluster for trying and testing recipelab's launcher=slurm
ClusterName=recipelab
SlurmctldHost=$HOST(127.0.0.1)
SlurmctldPort=$PORT
SlurmdPort=$((PORT + 1))
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
# cred_expire: a requeued job waits cred_expire + 1 s before it starts again (SLURM's default: 120 s)
AuthInfo=socket=$MUNGE_SOCKET,cred_expire=15
StateSaveLocation=$DIR/spool/ctld
SlurmdSpoolDir=$DIR/spool/d
SlurmctldPidFile=$DIR/run/slurmctld.pid
SlurmdPidFile=$DIR/run/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
# no cgroups here: processes tracked by their parent ids, tasks not bound to cores
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=$((mem / cpus))
# no accounting database (slurmdbd needs MySQL): sacct answers "accounting storage is disabled"
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
ReturnToService=2
SchedulerType=sched/backfill
# a finished job stays visible to squeue/scontrol for 5 minutes
MinJobAge=300
# seconds between the SIGTERM and the SIGKILL that end a job (time limit, scancel, requeue)
KillWait=30
NodeName=$HOST NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
EOF
    mv "$CONF.tmp" "$CONF"
}

start_munge() {
    alive "$DIR/munge/munged.pid" && return 0
    if [[ ! -s $DIR/munge/munge.key ]]; then
        dd if=/dev/urandom of="$DIR/munge/munge.key" bs=1024 count=1 status=none
    fi
    chmod 400 "$DIR/munge/munge.key"
    munged --socket="$MUNGE_SOCKET" --key-file="$DIR/munge/munge.key" --pid-file="$DIR/munge/munged.pid" \
        --log-file="$DIR/munge/munged.log" --seed-file="$DIR/munge/munged.seed"
}

wait_idle() {
    local i
    for i in $(seq 60); do
        if sinfo -h -n "$HOST" -o %t 2>/dev/null | grep -qE '^(idle|mix|alloc)'; then return 0; fi
        sleep 1
    done
    say "the node did not come up in 60 s; logs: $DIR/log/"
    tail -5 "$DIR/log/slurmctld.log" "$DIR/log/slurmd.log" >&2 || true
    return 1
}

start() {
    install
    if alive "$DIR/run/slurmctld.pid" && alive "$DIR/run/slurmd.pid" && alive "$DIR/munge/munged.pid"; then
        say "already running ($DIR)"
    else
        write_conf
        start_munge
        alive "$DIR/run/slurmctld.pid" || slurmctld -f "$CONF"
        alive "$DIR/run/slurmd.pid" || slurmd -f "$CONF"
    fi
    wait_idle
    sinfo
    echo "export SLURM_CONF=$CONF"
}

stop() {
    local pidfile pid i
    for pidfile in "$DIR/run/slurmd.pid" "$DIR/run/slurmctld.pid" "$DIR/munge/munged.pid"; do
        alive "$pidfile" || continue
        pid=$(cat "$pidfile")
        kill "$pid"
        for i in $(seq 30); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
        kill -0 "$pid" 2>/dev/null && { say "pid $pid ($pidfile) did not stop on SIGTERM"; exit 1; }
        rm -f "$pidfile"
    done
    say "stopped ($DIR kept; remove it to start afresh)"
}

status() {
    if ! alive "$DIR/run/slurmctld.pid" || ! alive "$DIR/run/slurmd.pid"; then
        say "not running ($DIR)"
        exit 1
    fi
    sinfo
}

case ${1:-} in
    start) start ;;
    stop) stop ;;
    status) status ;;
    env) echo "export SLURM_CONF=$CONF" ;;
    *) echo "usage: $0 start|stop|status|env   (state in \${SLURM_LOCAL_DIR:-/tmp/recipelab-slurm})" >&2; exit 2 ;;
esac
