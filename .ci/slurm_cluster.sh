#!/usr/bin/env bash
# A real SLURM cluster on this machine for the tests: munged, slurmctld and two slurmd "nodes"
# (phf-node1, phf-node2), started without systemd. Needs root and Debian's packages.
#   bash .ci/slurm_cluster.sh up       # install if missing, configure, start, wait until idle
#   bash .ci/slurm_cluster.sh down     # stop the daemons this script started
#   bash .ci/slurm_cluster.sh status   # sinfo, or exit 1 when the controller does not answer
# Both `up` and `down` are idempotent. Jobs run as root on this machine and inherit the
# submitter's environment (PATH included), so the tests' Python and files are theirs too.
set -uo pipefail

NODES=(phf-node1 phf-node2)
PORTS=(6821 6822)
CTLD_PORT=6817
CONF_DIR=/etc/slurm
CONF=$CONF_DIR/slurm.conf
STATE=/var/spool/phf-slurm
LOGS=/var/log/phf-slurm
RUN=/run/phf-slurm
WAIT_S=${SLURM_UP_TIMEOUT:-60}

die() {
    echo "slurm_cluster: $*" >&2
    exit 1
}

need_root() {
    [ "$(id -u)" = 0 ] || die "must run as root (it installs packages and starts daemons)"
}

install_packages() {
    local cmd missing=0
    for cmd in slurmctld slurmd sbatch munged; do command -v "$cmd" >/dev/null || missing=1; done
    [ "$missing" = 0 ] && return 0
    export DEBIAN_FRONTEND=noninteractive
    local pkgs=(slurm-wlm munge)
    echo "slurm_cluster: installing ${pkgs[*]}"
    if ! apt-get install -y --no-install-recommends "${pkgs[@]}" >"$LOGS/apt.log" 2>&1; then
        apt-get update >>"$LOGS/apt.log" 2>&1
        apt-get install -y --no-install-recommends "${pkgs[@]}" >>"$LOGS/apt.log" 2>&1 \
            || die "apt-get install ${pkgs[*]} failed; see $LOGS/apt.log"
    fi
}

start_munge() {
    install -d -o munge -g munge -m 0700 /etc/munge /var/lib/munge /var/log/munge
    install -d -o munge -g munge -m 0755 /run/munge
    if [ ! -s /etc/munge/munge.key ]; then
        dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key status=none
    fi
    chown munge:munge /etc/munge/munge.key
    chmod 0400 /etc/munge/munge.key
    if ! munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1; then
        runuser -u munge -- munged --force >>"$LOGS/munged.log" 2>&1 || die "munged did not start"
        touch "$RUN/munged.ours"  # `down` stops only a munged that `up` started
        for _ in $(seq 50); do
            munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1 && return 0
            sleep 0.1
        done
        die "munged does not answer (munge -n | unmunge)"
    fi
}

add_hosts() {
    local name
    for name in "${NODES[@]}"; do
        grep -qE "^[^#]*[[:space:]]$name([[:space:]]|\$)" /etc/hosts \
            || echo "127.0.0.1 $name  # phf-harness CI SLURM node" >>/etc/hosts
    done
}

write_conf() {
    # CPUs, sockets, cores and memory exactly as slurmd sees them: more would drain the node.
    local hw ctld i
    local keys='CPUs|Boards|SocketsPerBoard|CoresPerSocket|ThreadsPerCore|RealMemory'
    hw=$(slurmd -C | head -n 1 | tr ' ' '\n' | grep -E "^($keys)=" | tr '\n' ' ')
    [ -n "$hw" ] || die "slurmd -C reported no hardware"
    ctld=$(hostname -s 2>/dev/null || uname -n | cut -d. -f1)
    mkdir -p "$CONF_DIR" "$STATE/ctld" "$RUN"
    {
        echo "# Written by .ci/slurm_cluster.sh: a test cluster of two nodes on $ctld."
        echo "ClusterName=phf"
        echo "SlurmctldHost=$ctld(127.0.0.1)"
        echo "SlurmctldPort=$CTLD_PORT"
        echo "SlurmUser=root"
        echo "SlurmdUser=root"
        echo "AuthType=auth/munge"
        echo "CredType=cred/munge"
        echo "StateSaveLocation=$STATE/ctld"
        echo "SlurmdSpoolDir=$STATE/%n"
        echo "SlurmctldPidFile=$RUN/slurmctld.pid"
        echo "SlurmdPidFile=$RUN/slurmd-%n.pid"
        echo "SlurmctldLogFile=$LOGS/slurmctld.log"
        echo "SlurmdLogFile=$LOGS/slurmd-%n.log"
        echo "ProctrackType=proctrack/linuxproc"
        echo "TaskPlugin=task/none"
        echo "MpiDefault=none"
        echo "SwitchType=switch/none"
        echo "JobAcctGatherType=jobacct_gather/none"
        echo "AccountingStorageType=accounting_storage/none"
        echo "JobCompType=jobcomp/none"
        echo "SchedulerType=sched/backfill"
        echo "SelectType=select/cons_tres"
        echo "SelectTypeParameters=CR_CPU"
        # A failed array cancels its dependents instead of leaving them pending forever.
        echo "DependencyParameters=kill_invalid_depend"
        echo "ReturnToService=2"
        echo "SlurmdTimeout=30"
        echo "SlurmctldTimeout=30"
        echo "InactiveLimit=0"
        echo "KillWait=10"
        echo "MinJobAge=300"
        echo "MaxArraySize=1001"
        echo "SlurmdParameters=config_overrides"
        for i in "${!NODES[@]}"; do
            echo "NodeName=${NODES[$i]} NodeHostname=${NODES[$i]} NodeAddr=127.0.0.1" \
                "Port=${PORTS[$i]} ${hw}State=UNKNOWN"
        done
        echo "PartitionName=cpu Nodes=$(IFS=,; echo "${NODES[*]}") Default=YES MaxTime=INFINITE" \
            "State=UP OverSubscribe=NO"
    } >"$CONF.tmp"
    mv "$CONF.tmp" "$CONF"
    # Debian's slurm.conf may point at a cgroup.conf; task/none and linuxproc need none.
}

pid_alive() { [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

start_daemons() {
    local i
    pid_alive "$RUN/slurmctld.pid" || slurmctld -f "$CONF" -L "$LOGS/slurmctld.log" \
        || die "slurmctld did not start; see $LOGS/slurmctld.log"
    for i in "${!NODES[@]}"; do
        mkdir -p "$STATE/${NODES[$i]}"
        pid_alive "$RUN/slurmd-${NODES[$i]}.pid" || slurmd -f "$CONF" -N "${NODES[$i]}" \
            || die "slurmd -N ${NODES[$i]} did not start; see $LOGS/slurmd-${NODES[$i]}.log"
    done
}

wait_idle() {
    local start=$1 out idle
    for _ in $(seq $((WAIT_S * 2))); do
        out=$(sinfo -h -N -o '%N %t' 2>/dev/null)
        idle=$(echo "$out" | grep -cE ' (idle|mix|alloc)$')
        if [ "$idle" -ge "${#NODES[@]}" ]; then
            echo "slurm_cluster: up in $(($(date +%s%N) / 1000000 - start)) ms:" \
                "$(echo "$out" | tr '\n' ' ')"
            return 0
        fi
        # A node left down/drained by an earlier run of this script: let it serve again.
        echo "$out" | awk '$2 ~ /^(down|drain|drng|fail)/ {print $1}' | while read -r n; do
            scontrol update NodeName="$n" State=RESUME >/dev/null 2>&1
        done
        sleep 0.5
    done
    echo "slurm_cluster: nodes not idle after ${WAIT_S}s: ${out:-no answer from slurmctld}" >&2
    tail -n 20 "$LOGS/slurmctld.log" >&2
    die "cluster not up"
}

up() {
    local start
    start=$(($(date +%s%N) / 1000000))
    need_root
    mkdir -p "$LOGS" "$STATE" "$RUN"
    install_packages
    start_munge
    add_hosts
    write_conf
    start_daemons
    wait_idle "$start"
}

stop_pidfile() {
    local f=$1 pid
    [ -s "$f" ] || return 0
    pid=$(cat "$f")
    if kill -0 "$pid" 2>/dev/null; then
        kill "$pid"
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
    fi
    rm -f "$f"
}

down() {
    need_root
    local n
    # Jobs first, while the controller still runs, so no stray task outlives the cluster.
    if command -v scancel >/dev/null && pid_alive "$RUN/slurmctld.pid"; then
        scancel "--user=$(id -un)" >/dev/null 2>&1
        for _ in $(seq 30); do [ -z "$(squeue -h 2>/dev/null)" ] && break; sleep 0.5; done
    fi
    for n in "${NODES[@]}"; do stop_pidfile "$RUN/slurmd-$n.pid"; done
    stop_pidfile "$RUN/slurmctld.pid"
    if [ -e "$RUN/munged.ours" ]; then
        stop_pidfile /run/munge/munged.pid
        rm -f "$RUN/munged.ours"
    fi
    echo "slurm_cluster: down"
}

status() {
    sinfo -N -o '%N %P %t %c %m' || exit 1
}

case "${1:-}" in
up) up ;;
down) down ;;
status) status ;;
*) die "usage: $0 up|down|status" ;;
esac
