#!/usr/bin/env bash
# A throwaway single-node Slurm (munge, MariaDB, slurmdbd, slurmctld, slurmd) under one
# directory, for the Slurm tests and for trying hydra/launcher=slurm on a machine without a
# cluster. Everything (config, state, sockets, logs, the database) lives under DIR; the
# daemons run in the foreground (-D) in the background of this script and are stopped by PID.
#
#   scripts/slurm_cluster.sh install           # Debian packages (root, apt-get); one line and exit 0 elsewhere
#   scripts/slurm_cluster.sh start [DIR]       # DIR defaults to a new temp dir; prints the env lines
#   eval "$(scripts/slurm_cluster.sh env DIR)" # SLURM_CONF for sbatch/squeue/sacct/submitit
#   scripts/slurm_cluster.sh stop DIR          # stops the daemons by PID; DIR (logs) is kept
#
# Pitfalls measured on Debian 12 (Slurm 22.05.8, gVisor, 2 cores):
# - without accounting `sacct` fails and submitit reports UNKNOWN forever for a job that died
#   without a result: slurmdbd + MariaDB are part of the cluster, not an option;
# - slurmdbd refuses a slurmdbd.conf readable by others (mode 600);
# - slurmctld only records jobs once its cluster exists in the database (`sacctmgr add cluster`);
# - a requeued job may start again only after the credential lifetime (cred_expire, default
#   120 s) and the next scheduling pass (default 60 s): a requeue took ~150 s; with
#   cred_expire=10 and passes every 2 s it takes ~12 s.
set -euo pipefail
export PATH=$PATH:/usr/sbin:/sbin   # the daemons live there; not on every user's PATH

PACKAGES=(slurmctld slurmd slurm-client slurmdbd munge mariadb-server)
CLUSTER=harness
DB_PASS=harness-slurm   # a throwaway database reachable on 127.0.0.1 only

log() { echo "[slurm_cluster] $*" >&2; }
die() { echo "slurm_cluster: $*" >&2; exit 1; }

cmd_install() {
  local cmd missing=""
  for cmd in slurmctld slurmd slurmdbd sbatch munged mariadbd; do
    command -v $cmd >/dev/null || missing=1
  done
  if [ -z "$missing" ]; then
    log "packages already installed"; return 0
  fi
  if ! command -v apt-get >/dev/null || [ "$(id -u)" -ne 0 ]; then
    echo "slurm_cluster: no apt-get as root here: Slurm not installed, the Slurm tests will be skipped" >&2
    return 0
  fi
  local start=$SECONDS policy=/usr/sbin/policy-rc.d
  # The packages' postinst must not start system daemons (ours run under DIR): policy-rc.d
  # exit 101 tells invoke-rc.d "not allowed"; container images usually have one already.
  if [ ! -e $policy ]; then
    printf '#!/bin/sh\nexit 101\n' >$policy && chmod 755 $policy
    trap "rm -f $policy" EXIT
  fi
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${PACKAGES[@]}" >/dev/null
  log "installed ${PACKAGES[*]} in $((SECONDS - start)) s"
}

free_ports() {  # N free TCP ports on 127.0.0.1 (the kernel picks them)
  python3 - "$1" <<'EOF'
import socket, sys
socks = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))
EOF
}

wait_for() {  # wait_for SECONDS WHAT CMD...: poll CMD until it succeeds
  local limit=$1 what=$2; shift 2
  local deadline=$((SECONDS + limit))
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -lt $deadline ] || die "$what not ready after ${limit} s (logs: $DIR/log)"
    sleep 0.2
  done
}

spawn() {  # spawn NAME CMD...: a foreground daemon, in the background, its PID kept in run/NAME.pid
  local name=$1; shift
  "$@" >>"$DIR/log/$name.out" 2>&1 &
  echo $! >"$DIR/run/$name.pid"
}

alive() { kill -0 "$(cat "$DIR/run/$1.pid")" 2>/dev/null || die "$1 exited; see $DIR/log/$1.out"; }

write_configs() {
  local host cpus mem_mb
  host=$(hostname -s)
  cpus=$(nproc)
  mem_mb=$(awk '/MemTotal/ {print int($2 / 1024 * 0.9)}' /proc/meminfo)
  read -r CTLD_PORT SLURMD_PORT DBD_PORT DB_PORT <<<"$(free_ports 4)"
  local auth="socket=$DIR/munge/munge.socket,cred_expire=10"

  cat >"$DIR/etc/slurm.conf" <<EOF
ClusterName=$CLUSTER
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
SlurmdUser=root
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
AuthType=auth/munge
CredType=cred/munge
AuthInfo=$auth
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/run/slurmctld.slurm.pid
SlurmdPidFile=$DIR/run/slurmd.slurm.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
# no cgroups in containers: track processes by parentage, no task binding
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
MpiDefault=none
# a requeued job becomes eligible after cred_expire but starts only at the next scheduling
# pass (default every 60 s main, 30 s backfill): pass often, it is one node
SchedulerParameters=sched_interval=2,bf_interval=2
ReturnToService=2
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort=$DBD_PORT
# the munge socket for talking to slurmdbd: AuthInfo is not used on that connection
AccountingStoragePass=$DIR/munge/munge.socket
JobCompType=jobcomp/none
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF

  cat >"$DIR/etc/slurmdbd.conf" <<EOF
AuthType=auth/munge
AuthInfo=$auth
DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort=$DBD_PORT
SlurmUser=root
PidFile=$DIR/run/slurmdbd.slurm.pid
LogFile=$DIR/log/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$DB_PORT
StorageUser=slurm
StoragePass=$DB_PASS
StorageLoc=slurm_acct_db
EOF
  chmod 600 "$DIR/etc/slurmdbd.conf"   # slurmdbd refuses to start otherwise
}

start_munge() {
  # munged checks that its key is the munge user's, closed to others, and that clients can reach
  # the socket (its directory executable by all).
  install -d -o munge -g munge -m 755 "$DIR/munge"
  dd if=/dev/urandom of="$DIR/munge/munge.key" bs=1024 count=1 status=none
  chown munge:munge "$DIR/munge/munge.key"
  chmod 400 "$DIR/munge/munge.key"
  spawn munged setpriv --reuid=munge --regid=munge --init-groups munged -F --socket="$DIR/munge/munge.socket" \
    --key-file="$DIR/munge/munge.key" --pid-file="$DIR/munge/munged.pid" \
    --seed-file="$DIR/munge/munged.seed" --log-file="$DIR/munge/munged.log"
  wait_for 20 munged munge --socket="$DIR/munge/munge.socket" -n
}

start_mariadb() {
  local sock=$DIR/mysql.sock
  mariadb-install-db --no-defaults --user=root --datadir="$DIR/mysql" --skip-test-db \
    --auth-root-authentication-method=socket >"$DIR/log/mariadb-install.out" 2>&1 \
    || die "mariadb-install-db failed; see $DIR/log/mariadb-install.out"
  spawn mariadbd mariadbd --no-defaults --user=root --datadir="$DIR/mysql" --socket="$sock" \
    --port="$DB_PORT" --bind-address=127.0.0.1 --skip-name-resolve --skip-log-bin \
    --innodb-buffer-pool-size=32M --pid-file="$DIR/run/mariadbd.own.pid" --log-error="$DIR/log/mariadbd.log"
  wait_for 60 mariadbd mariadb --no-defaults --socket="$sock" -u root -e "SELECT 1"
  mariadb --no-defaults --socket="$sock" -u root -e "
    CREATE USER 'slurm'@'127.0.0.1' IDENTIFIED BY '$DB_PASS';
    GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';"
}

cmd_start() {
  DIR=${1:-$(mktemp -d "${TMPDIR:-/tmp}/harness-slurm.XXXXXX")}
  command -v slurmctld >/dev/null || die "Slurm is not installed (scripts/slurm_cluster.sh install)"
  [ "$(id -u)" -eq 0 ] || die "start needs root (munged runs as munge, the Slurm daemons as root)"
  mkdir -p "$DIR" && DIR=$(cd "$DIR" && pwd)
  [ ! -e "$DIR/run" ] || die "$DIR already holds a cluster; stop it and use a new directory"
  chmod 755 "$DIR"   # munged (user munge) must reach DIR/munge
  mkdir -p "$DIR"/{etc,state,spool,log,run}
  local start=$SECONDS
  export SLURM_CONF=$DIR/etc/slurm.conf
  trap 'log "start failed: stopping what was started"; cmd_stop "$DIR"' EXIT
  write_configs
  start_munge
  start_mariadb
  spawn slurmdbd slurmdbd -D
  wait_for 60 slurmdbd sacctmgr -i list cluster
  alive slurmdbd
  sacctmgr -i add cluster "$CLUSTER" >/dev/null
  spawn slurmctld slurmctld -D
  wait_for 60 slurmctld scontrol ping
  spawn slurmd slurmd -D
  wait_for 60 "node $(hostname -s)" sh -c "sinfo -h -N -o %T | grep -qx idle"
  trap - EXIT
  log "up in $((SECONDS - start)) s: $DIR (logs in $DIR/log)"
  cmd_env "$DIR"
}

cmd_env() {
  [ -f "${1:-}/etc/slurm.conf" ] || die "usage: $0 env DIR (a directory made by '$0 start')"
  echo "export SLURM_CONF=$(cd "$1" && pwd)/etc/slurm.conf"
}

terminate() {  # terminate DIR NAME...: SIGTERM to each, wait up to 10 s for all, then SIGKILL
  local dir=$1 name pids=(); shift
  for name in "$@"; do
    [ -f "$dir/run/$name.pid" ] || continue
    pids+=("$(cat "$dir/run/$name.pid")")
    kill "${pids[-1]}" 2>/dev/null || true
    rm -f "$dir/run/$name.pid"
  done
  for _ in $(seq 100); do
    kill -0 "${pids[@]}" 2>/dev/null || break   # true while any is alive
    sleep 0.1
  done
  [ ${#pids[@]} -eq 0 ] || kill -9 "${pids[@]}" 2>/dev/null || true
}

cmd_stop() {
  DIR=${1:?usage: $0 stop DIR}
  [ -d "$DIR/run" ] || die "$DIR holds no cluster (no run/ directory)"
  if [ -f "$DIR/run/slurmctld.pid" ] && kill -0 "$(cat "$DIR/run/slurmctld.pid")" 2>/dev/null; then
    # Jobs first: their slurmstepd processes are not children of slurmd and would outlive it.
    export SLURM_CONF=$DIR/etc/slurm.conf
    scancel --user="$(id -un)" 2>/dev/null || true
    for _ in $(seq 100); do [ -z "$(squeue -h -o %A 2>/dev/null)" ] && break; sleep 0.2; done
  fi
  terminate "$DIR" slurmd slurmctld        # the cluster first, then what it stands on
  terminate "$DIR" slurmdbd mariadbd munged
  log "stopped: $DIR"
}

case "${1:-}" in
  install) cmd_install ;;
  start) shift; cmd_start "$@" ;;
  stop) shift; cmd_stop "$@" ;;
  env) shift; cmd_env "$@" ;;
  *) echo "usage: $0 install | start [DIR] | env DIR | stop DIR" >&2; exit 2 ;;
esac
