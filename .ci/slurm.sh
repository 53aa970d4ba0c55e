#!/usr/bin/env bash
# A private one-node SLURM cluster for CI and for developing the SLURM path of robustbench-nas.
#
#   bash .ci/slurm.sh start    # install slurm-wlm + munge (Debian, needs root), write slurm.conf, start daemons
#   bash .ci/slurm.sh status   # print the state; exit 0 only when the cluster answers
#   bash .ci/slurm.sh stop     # cancel our jobs, stop the daemons this script started (by pid)
#   bash .ci/slurm.sh ci-start # what .ci/run calls: under CI=true a SLURM that cannot start is an error (exit 1,
#                              # with the reason); elsewhere (e.g. no root) it is not, and the SLURM tests skip
#
# Everything lives in $RBNAS_SLURM_DIR (default /tmp/rbnas-slurm): slurm.conf, gres.conf, logs, state,
# `pids` (one "name pid" per line, only the daemons started here) and `status` ("ok" or "failed: <why>").
# The configuration is NOT installed into /etc/slurm: clients find it through SLURM_CONF, which the tests
# (tests/test_slurm*.py) set from $RBNAS_SLURM_DIR/slurm.conf, so a real site configuration is never touched.
#
# The node advertises 4 fake GPUs (gres `gpu`, backed by plain files) so that `--gres=gpu:N` jobs get
# CUDA_VISIBLE_DEVICES from SLURM exactly like on a GPU cluster; the work itself then runs on the CPU.
# `start` never hangs and never fails the CI run: if a daemon cannot start it prints why, writes
# "failed: <why>" into `status`, stops what it started, and exits 0, so the SLURM tests skip with that reason.
# Set RBNAS_SLURM_STRICT=1 to make such a failure exit 1 instead.
set -u

DIR="${RBNAS_SLURM_DIR:-/tmp/rbnas-slurm}"
CONF="$DIR/slurm.conf"
PIDS="$DIR/pids"
STATUS="$DIR/status"
NODE="$(hostname -s)"
NGPU="${RBNAS_SLURM_GPUS:-4}"
# Advertised, not real: config_overrides lets slurmd accept more CPUs than the machine has, so a few small
# worker jobs and a scheduler job can run side by side on a 2-core CI machine.
NCPU="${RBNAS_SLURM_CPUS:-8}"
MEM_MB="${RBNAS_SLURM_MEM_MB:-8192}"
PORT_CTLD="${RBNAS_SLURM_CTLD_PORT:-6817}"
PORT_D="${RBNAS_SLURM_D_PORT:-6818}"

log() { echo "[slurm.sh] $*" >&2; }

alive() { [ -n "${1:-}" ] && kill -0 "$1" 2>/dev/null; }

pid_of() { [ -f "$PIDS" ] && awk -v n="$1" '$1 == n {print $2}' "$PIDS" | tail -n 1; }

fail() {
    local why="$*"
    log "FAILED: $why"
    for f in "$DIR"/log/*.log; do
        [ -f "$f" ] && { log "--- tail of $f"; tail -n 20 "$f" >&2; }
    done
    stop_daemons
    mkdir -p "$DIR"
    echo "failed: $why" >"$STATUS"
    if [ "${RBNAS_SLURM_STRICT:-0}" = 1 ]; then exit 1; fi
    exit 0
}

install_packages() {
    if command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v sbatch >/dev/null \
        && command -v munged >/dev/null; then
        log "slurm-wlm and munge already installed"
        return 0
    fi
    if [ "$(id -u)" != 0 ]; then
        fail "slurm-wlm/munge are not installed and installing them needs root"
    fi
    log "installing slurm-wlm and munge (apt-get)"
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get update -qq >"$DIR/log/apt.log" 2>&1; then fail "apt-get update failed (see $DIR/log/apt.log)"; fi
    if ! apt-get install -y -qq --no-install-recommends slurm-wlm munge >>"$DIR/log/apt.log" 2>&1; then
        fail "apt-get install slurm-wlm munge failed (see $DIR/log/apt.log)"
    fi
}

write_config() {
    mkdir -p "$DIR/state" "$DIR/spool" "$DIR/log" "$DIR/gpus"
    local i
    # slurmd wants a character device per GPU; a symlink to /dev/null is one and needs no mknod rights.
    for ((i = 0; i < NGPU; i++)); do ln -sfn /dev/null "$DIR/gpus/gpu$i"; done
    cat >"$CONF" <<EOF
# Written by .ci/slurm.sh (robustbench-nas CI): a private one-node cluster. Not a site configuration.
ClusterName=rbnas-ci
SlurmctldHost=$NODE(127.0.0.1)
SlurmctldPort=$PORT_CTLD
SlurmdPort=$PORT_D
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
# No cgroups in CI containers. Track a job's processes by process group, not by parent pid: with linuxproc a
# process whose parent died (a Dask worker restarted by its nanny during scancel) is reparented to init, escapes
# the job, and lives on as a worker of a cancelled job. Everything a job starts here stays in its process group.
ProctrackType=proctrack/pgid
TaskPlugin=task/none
MpiDefault=none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
# Without this a job that gives no --mem would be allocated the whole node memory and run alone.
DefMemPerCPU=512
GresTypes=gpu
SlurmdParameters=config_overrides
ReturnToService=2
# Fast turnaround for tests: short kill grace, quick scheduling passes.
KillWait=5
MinJobAge=60
SchedulerParameters=sched_interval=2,bf_interval=2
SlurmctldTimeout=30
SlurmdTimeout=60
InactiveLimit=0
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$NCPU RealMemory=$MEM_MB Gres=gpu:$NGPU State=UNKNOWN
PartitionName=gpu Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF
    if ((NGPU > 0)); then
        echo "NodeName=$NODE Name=gpu File=$DIR/gpus/gpu[0-$((NGPU - 1))]" >"$DIR/gres.conf"
    else
        : >"$DIR/gres.conf"
    fi
}

start_munge() {
    if munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1; then
        log "munged already running (not started by this script, will not be stopped by it)"
        return 0
    fi
    if [ ! -s /etc/munge/munge.key ]; then
        log "creating /etc/munge/munge.key"
        if command -v mungekey >/dev/null; then mungekey --create --force >/dev/null 2>&1; else
            dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=128 2>/dev/null
        fi
        chown munge:munge /etc/munge/munge.key && chmod 400 /etc/munge/munge.key
    fi
    mkdir -p /run/munge /var/lib/munge /var/log/munge
    chown munge:munge /run/munge /var/lib/munge /var/log/munge
    chmod 755 /run/munge
    # setpriv execs munged as the munge user, so $! is munged's own pid (stopped by pid later).
    setpriv --reuid=munge --regid=munge --init-groups /usr/sbin/munged -F \
        --log-file="$DIR/log/munged.log" >>"$DIR/log/munged.out" 2>&1 &
    echo "munged $!" >>"$PIDS"
    local t
    for t in $(seq 1 50); do
        if munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1; then return 0; fi
        alive "$(pid_of munged)" || fail "munged exited at start"
        sleep 0.2
    done
    fail "munged does not answer after 10 s"
}

start_slurm() {
    slurmctld -D -f "$CONF" >>"$DIR/log/slurmctld.out" 2>&1 &
    echo "slurmctld $!" >>"$PIDS"
    slurmd -D -f "$CONF" -N "$NODE" >>"$DIR/log/slurmd.out" 2>&1 &
    echo "slurmd $!" >>"$PIDS"
    export SLURM_CONF="$CONF"
    local t state=""
    for t in $(seq 1 60); do
        alive "$(pid_of slurmctld)" || fail "slurmctld exited at start"
        alive "$(pid_of slurmd)" || fail "slurmd exited at start"
        state="$(timeout 5 sinfo -h -n "$NODE" -o %T 2>/dev/null | head -n 1)"
        case "$state" in idle* | mixed* | allocated*) break ;; esac
        if [ "$state" = down ] || [ "$state" = "down*" ]; then
            timeout 5 scontrol update NodeName="$NODE" State=RESUME >/dev/null 2>&1
        fi
        sleep 1
    done
    case "$state" in idle* | mixed* | allocated*) ;; *) fail "node $NODE not idle after 60 s (state: '${state:-no answer}')" ;; esac
    # Smoke test: a real batch job with one (fake) GPU must run and see CUDA_VISIBLE_DEVICES.
    local out="$DIR/log/smoke-%j.out" jobid
    jobid="$(timeout 10 sbatch --parsable --gres=gpu:1 -t 1 -o "$out" --wrap 'echo "gpu=$CUDA_VISIBLE_DEVICES"' 2>&1)" \
        || fail "sbatch smoke test rejected: $jobid"
    for t in $(seq 1 60); do
        if [ -f "$DIR/log/smoke-$jobid.out" ] && grep -q '^gpu=' "$DIR/log/smoke-$jobid.out"; then
            log "smoke job $jobid: $(cat "$DIR/log/smoke-$jobid.out")"
            return 0
        fi
        sleep 1
    done
    fail "smoke job $jobid did not finish in 60 s ($(timeout 5 squeue -h -j "$jobid" -o '%T %r' 2>/dev/null))"
}

stop_daemons() {
    [ -f "$PIDS" ] || return 0
    if alive "$(pid_of slurmctld)"; then
        # slurmstepd processes outlive slurmd: cancel every job of this private cluster first.
        SLURM_CONF="$CONF" timeout 10 scancel --full -u "$(id -un)" >/dev/null 2>&1
        local t
        for t in $(seq 1 15); do
            [ -z "$(SLURM_CONF="$CONF" timeout 5 squeue -h -o %i 2>/dev/null)" ] && break
            sleep 1
        done
    fi
    local name pid
    # Reverse start order: slurmd, slurmctld, munged.
    for name in slurmd slurmctld munged; do
        for pid in $(awk -v n="$name" '$1 == n {print $2}' "$PIDS"); do
            if alive "$pid"; then
                kill -TERM "$pid" 2>/dev/null
                for t in $(seq 1 50); do alive "$pid" || break; sleep 0.2; done
                alive "$pid" && { log "$name ($pid) ignored SIGTERM, sending SIGKILL"; kill -KILL "$pid" 2>/dev/null; }
                log "stopped $name (pid $pid)"
            fi
        done
    done
    rm -f "$PIDS"
}

cmd_start() {
    mkdir -p "$DIR/log"
    if [ -f "$STATUS" ] && [ "$(cat "$STATUS")" = ok ] && alive "$(pid_of slurmctld)" && alive "$(pid_of slurmd)"; then
        log "already running ($DIR)"
        return 0
    fi
    stop_daemons
    rm -f "$STATUS"
    install_packages
    write_config
    : >"$PIDS"
    start_munge
    start_slurm
    echo ok >"$STATUS"
    log "SLURM is up: export SLURM_CONF=$CONF   (node $NODE: $NCPU CPUs, ${MEM_MB} MB, gpu:$NGPU, partition gpu)"
}

cmd_status() {
    if [ ! -f "$STATUS" ]; then echo "not started (no $STATUS)"; return 1; fi
    echo "status: $(cat "$STATUS")"
    [ -f "$PIDS" ] && while read -r name pid; do
        if alive "$pid"; then echo "$name $pid running"; else echo "$name $pid dead"; fi
    done <"$PIDS"
    SLURM_CONF="$CONF" timeout 5 sinfo || return 1
}

cmd_ci_start() {
    case "${CI:-}" in
        true | TRUE | True | 1)
            if ! (RBNAS_SLURM_STRICT=1 cmd_start); then
                echo "CI=true: SLURM could not be started ($(cat "$STATUS" 2>/dev/null || echo 'no status written')); the SLURM path must be tested in CI" >&2
                exit 1
            fi
            ;;
        *)
            (cmd_start)
            if [ "$(cat "$STATUS" 2>/dev/null)" != ok ]; then
                echo "SLURM could not be started ($(cat "$STATUS" 2>/dev/null)): the SLURM tests will skip with the reason (CI=true makes this an error)" >&2
            fi
            ;;
    esac
}

case "${1:-start}" in
    start) cmd_start ;;
    ci-start) cmd_ci_start ;;
    stop)
        stop_daemons
        [ -f "$STATUS" ] && echo "stopped" >"$STATUS"
        ;;
    status) cmd_status ;;
    restart)
        stop_daemons
        cmd_start
        ;;
    *)
        echo "usage: $0 start|stop|status|restart|ci-start" >&2
        exit 2
        ;;
esac
