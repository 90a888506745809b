#!/usr/bin/env bash
# slurm/local-cluster.sh - a real single-node SLURM cluster on loopback, for tests and demos.
#
#   slurm/local-cluster.sh start           install what is missing (apt), configure, start
#   slurm/local-cluster.sh stop [--purge]  cancel this cluster's jobs, stop its daemons
#                                          (--purge also deletes the prefix: keys, DB, logs)
#   slurm/local-cluster.sh status          daemons, partitions and queue
#   slurm/local-cluster.sh env             prints `export ...` lines:  eval "$(slurm/local-cluster.sh env)"
#
# What runs: munged, MariaDB (mariadbd), slurmdbd, slurmctld and slurmd, all as root, all
# listening on 127.0.0.1 only, every file (config, keys, state, spool, logs, database, pid
# files, sockets) under one prefix.  Nothing is written to /etc/slurm: clients find the
# configuration through SLURM_CONF (see `env`).  Accounting (slurmdbd + MariaDB) is on by
# default because `sacct` needs it and submitit asks sacct for job states: without it a
# cancelled job stays UNKNOWN in submitit forever.
#
# Partitions: `cpu` (Default=YES) and `debug`, both on the one node, no GPUs (no GRES).
#
# Environment:
#   AUDIOSETDL_SLURM_PREFIX      where everything lives (default ${TMPDIR:-/tmp}/audiosetdl-slurm);
#                                absolute, no whitespace, short enough for a unix socket path
#   AUDIOSETDL_SLURM_CPUS        CPUs the node advertises (default: max(nproc, 8)), see caveats
#   AUDIOSETDL_SLURM_ACCOUNTING  1 (default): slurmdbd + MariaDB, sacct works; 0: none
#   AUDIOSETDL_SLURM_NODENAME    node name (default: hostname -s)
#   AUDIOSETDL_SLURM_CTLD_PORT / _SLURMD_PORT / _DBD_PORT / _MYSQL_PORT
#                                (default 6917 / 6918 / 6919 / 3317: not SLURM's usual 6817-6819
#                                nor MariaDB's 3306, so a system SLURM/MariaDB or the
#                                shared/tools reference cluster on 6817-6819/3307 does not clash)
#
# Exit codes:
#   start: 0 cluster up (also when it already was); 1 a daemon failed (message names its log);
#          2 usage (unknown command, bad prefix); 4 not root; 5 packages missing and no apt-get;
#          6 apt-get failed; 7 a port is taken by a program that is not ours
#   stop:  0 stopped (also when nothing ran); 4 not root
#   status: 0 all daemons running and the node usable; 1 partly running; 3 not running (LSB)
#   env:   0
#
# Caveats (found while building this on Debian 12, SLURM 22.05.8, MariaDB 10.11, munge 0.5.15):
# - Root only: the daemons, the database and the jobs all run as root.  SLURM itself does not
#   refuse root jobs (DisableRootJobs defaults to NO; set explicitly below) and without
#   AccountingStorageEnforce root needs no association, but we register one anyway (account
#   `ci`) so that sacct shows something sensible.
# - No systemd is assumed (containers, CI): daemons are started directly and tracked by their
#   pid files.  Stopping ends each daemon by the pid in its own pid file, checked against the
#   expected program name, never by name matching, so a system SLURM or another prefix's
#   cluster on the same machine is left alone.  Leftover slurmstepd processes are found by
#   the SLURM_CONF in their environment (ours), again never by name alone.
# - Installing packages: Debian's postinst scripts would start default munge (/run/munge) and
#   MariaDB (:3306) instances; a temporary /usr/sbin/policy-rc.d (exit 101) prevents that when
#   none exists.  Package lists are refreshed only when missing or when install fails.
# - CPUs: with a 2-core machine and real CPU counts only 2 one-CPU jobs could run at once
#   (select/cons_tres, CR_CPU_Memory), which makes array throttling / dependency tests slow
#   and serial.  The node therefore advertises max(nproc, 8) CPUs, accepted through
#   SlurmdParameters=config_overrides (without it slurmd would DRAIN the node as "Low
#   CPUs").  This oversubscribes the real cores: fine for tests, not for timings.  Set
#   AUDIOSETDL_SLURM_CPUS=$(nproc) to get the honest count.
# - No cgroups (proctrack/linuxproc, task/none): memory and CPU limits are not enforced, and
#   processes that daemonize out of a job can escape scancel.  --mem is still bookkept:
#   DefMemPerCPU keeps a job without --mem from reserving the whole node.
# - Requeue: a requeued job may not restart until the launch credential expires, by default
#   120 s; AuthInfo cred_expire=10 makes that 10 s.
# - MinJobAge=300: finished jobs stay visible to squeue/scontrol for 5 minutes; after that only
#   sacct knows them.  sacct lags slurmctld by a moment (records go through slurmdbd).
# - A config change (e.g. another AUDIOSETDL_SLURM_CPUS) restarts slurmctld and slurmd on the
#   next `start`; running jobs of that cluster may be lost.  State (job ids, accounting DB)
#   survives stop/start; `stop --purge` wipes it.
# - Unix socket paths are limited to 107 bytes: keep the prefix short (pytest's tmp_path is
#   usually too long), hence the default under $TMPDIR.
# - Concurrent start/stop calls on one prefix are serialised with flock on $PREFIX/lock.
set -euo pipefail

PROG=local-cluster.sh
PREFIX=${AUDIOSETDL_SLURM_PREFIX:-${TMPDIR:-/tmp}/audiosetdl-slurm}
ACCOUNTING=${AUDIOSETDL_SLURM_ACCOUNTING:-1}
NODE=${AUDIOSETDL_SLURM_NODENAME:-$(hostname -s 2>/dev/null || uname -n)}
NODE=${NODE%%.*}
CTLD_PORT=${AUDIOSETDL_SLURM_CTLD_PORT:-6917}
SLURMD_PORT=${AUDIOSETDL_SLURM_SLURMD_PORT:-6918}
DBD_PORT=${AUDIOSETDL_SLURM_DBD_PORT:-6919}
MYSQL_PORT=${AUDIOSETDL_SLURM_MYSQL_PORT:-3317}
CLUSTER=audiosetdl
ACCOUNT=ci
DB_PASS=audiosetdl-local   # throwaway credentials for a MariaDB that listens on 127.0.0.1 only

SLURM_CONF=$PREFIX/etc/slurm.conf
MUNGE_SOCK=$PREFIX/munge/run/munge.socket
MY=$PREFIX/mysql
export SLURM_CONF   # for every client call below, and inherited by the daemons and jobs

T0=$EPOCHREALTIME
log() {
  local now=$EPOCHREALTIME t
  t=$(( (10#${now//[!0-9]/} - 10#${T0//[!0-9]/}) / 100000 ))   # tenths of a second since the start
  printf '[%s +%d.%ds] %s\n' "$PROG" $((t / 10)) $((t % 10)) "$*" >&2
}
die() { local code=$1; shift; log "ERROR: $*"; exit "$code"; }

usage() {
  sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

check_prefix() {
  case "$PREFIX" in
    /*) ;;
    *) die 2 "AUDIOSETDL_SLURM_PREFIX must be an absolute path, got '$PREFIX'" ;;
  esac
  [[ "$PREFIX" =~ [[:space:]] ]] && die 2 "AUDIOSETDL_SLURM_PREFIX must not contain whitespace (slurm.conf cannot quote it)"
  [ ${#MUNGE_SOCK} -le 100 ] || die 2 "prefix too long: unix socket path '$MUNGE_SOCK' exceeds 100 bytes"
  case "$PREFIX" in
    /|/tmp|/tmp/|/var|/usr*|/etc*|/root|/home) die 2 "refusing prefix '$PREFIX': use a directory of its own" ;;
  esac
}

need_root() { [ "$(id -u)" = 0 ] || die 4 "must run as root (the daemons and jobs run as root; try: sudo $0 $*)"; }

# alive PIDFILE COMM: the pid file names a live, non-zombie process running program COMM
alive() {
  local pid
  [ -s "$1" ] || return 1
  pid=$(cat "$1" 2>/dev/null) || return 1
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  [ -d "/proc/$pid" ] && [ "$(cat /proc/"$pid"/comm 2>/dev/null)" = "$2" ] &&
    [ "$(sed 's/.*) //' /proc/"$pid"/stat 2>/dev/null | cut -d' ' -f1)" != Z ]
}

# wait_for SECONDS CMD...: 0 once CMD succeeds, 1 on timeout
wait_for() {
  local end=$(( $(date +%s) + $1 )); shift
  until "$@" >/dev/null 2>&1; do
    [ "$(date +%s)" -lt "$end" ] || return 1
    sleep 0.1
  done
}

# port_busy PORT: something accepts TCP connections on 127.0.0.1:PORT (no ss/netstat needed)
port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# stop_pid PIDFILE COMM: TERM, wait up to 15 s, then KILL; only the pid from our pid file
stop_pid() {
  if ! alive "$1" "$2"; then log "$2: not running"; return 0; fi
  local pid; pid=$(cat "$1")
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 150); do
    if ! alive "$1" "$2"; then log "$2: stopped (pid $pid)"; rm -f "$1"; return 0; fi
    sleep 0.1
  done
  kill -9 "$pid" 2>/dev/null || true
  log "$2: killed with SIGKILL (pid $pid)"
}

# Daemons are started with 9>&- : an inherited lock descriptor would hold the lock for
# their whole life and block every later start/stop.
take_lock() {
  mkdir -p "$PREFIX"
  exec 9>"$PREFIX/lock"
  flock -w 900 9 || die 1 "another start/stop on $PREFIX holds $PREFIX/lock"
}

# ------------------------------------------------------------------ packages --
ensure_packages() {
  local pkgs=(munge slurmctld slurmd slurm-client) missing=() p
  local bins=(munged slurmctld slurmd sbatch sacct)
  [ "$ACCOUNTING" = 1 ] && pkgs+=(slurmdbd mariadb-server) && bins+=(slurmdbd mariadbd mariadb-install-db)
  if ! command -v dpkg-query >/dev/null 2>&1; then
    # not Debian-like: accept programs installed some other way, we cannot install them
    for p in "${bins[@]}"; do command -v "$p" >/dev/null 2>&1 || missing+=("$p"); done
    [ ${#missing[@]} -eq 0 ] && { log "programs found (no dpkg)"; return 0; }
    die 5 "programs missing (${missing[*]}) and no dpkg/apt-get to install them"
  fi
  for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ ${#missing[@]} -eq 0 ]; then log "packages already installed"; return 0; fi
  command -v apt-get >/dev/null 2>&1 ||
    die 5 "packages missing (${missing[*]}) and apt-get not found: install them by hand (Debian/Ubuntu names)"
  log "installing: ${missing[*]}"
  local added_policy=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\n# temporary, from audiosetdl slurm/local-cluster.sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
    added_policy=1
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
  fi
  export DEBIAN_FRONTEND=noninteractive
  local apt=(apt-get -o DPkg::Lock::Timeout=600 -o Dpkg::Use-Pty=0 -q)
  local inst=("${apt[@]}" install -y --no-install-recommends "${missing[@]}")
  local aptlog=$PREFIX/log/apt.log
  mkdir -p "$PREFIX/log"
  # Refresh the lists first only when there are none; otherwise try, and refresh on failure
  # (stale lists give 404s for superseded versions).
  if ! compgen -G '/var/lib/apt/lists/*_Packages*' >/dev/null; then
    "${apt[@]}" update >"$aptlog" 2>&1 || die 6 "apt-get update failed, see $aptlog"
  fi
  if ! "${inst[@]}" >>"$aptlog" 2>&1; then
    log "install failed, refreshing package lists and retrying"
    { "${apt[@]}" update && "${inst[@]}"; } >>"$aptlog" 2>&1 ||
      die 6 "apt-get install ${missing[*]} failed, see $aptlog"
  fi
  if [ "$added_policy" = 1 ]; then rm -f /usr/sbin/policy-rc.d; trap - EXIT; fi
  log "packages installed"
}

# -------------------------------------------------------------------- config --
write_if_changed() {  # write_if_changed FILE  (content on stdin); 0 if it changed
  cat > "$1.new"
  if cmp -s "$1.new" "$1"; then rm -f "$1.new"; return 1; fi
  mv "$1.new" "$1"; return 0
}

write_slurm_conf() {
  local ncpu real_mem cpus acct
  ncpu=$(nproc)
  cpus=${AUDIOSETDL_SLURM_CPUS:-$(( ncpu > 8 ? ncpu : 8 ))}
  [[ "$cpus" =~ ^[1-9][0-9]*$ ]] || die 2 "AUDIOSETDL_SLURM_CPUS must be a positive integer, got '$cpus'"
  real_mem=$(awk '/MemTotal/ {print int($2 / 1024 * 0.9)}' /proc/meminfo)
  if [ "$ACCOUNTING" = 1 ]; then
    acct="AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort=$DBD_PORT
# (for slurmdbd connections this names the munge socket)
AccountingStoragePass=$MUNGE_SOCK
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=30"
  else
    acct="AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none"
  fi
  write_if_changed "$SLURM_CONF" <<EOF
# generated by audiosetdl slurm/local-cluster.sh; rewritten on every start
ClusterName=$CLUSTER
SlurmctldHost=$NODE(127.0.0.1)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=root
SlurmdUser=root
# jobs run as root here (CI); SLURM allows that unless DisableRootJobs=YES
DisableRootJobs=NO
AuthType=auth/munge
CredType=cred/munge
# cred_expire also sets how long a requeued job waits before it may start again (default 120 s)
AuthInfo=socket=$MUNGE_SOCK,cred_expire=10
StateSaveLocation=$PREFIX/state
SlurmdSpoolDir=$PREFIX/spool/slurmd-%n
SlurmctldPidFile=$PREFIX/run/slurmctld.pid
SlurmdPidFile=$PREFIX/run/slurmd.pid
SlurmctldLogFile=$PREFIX/log/slurmctld.log
SlurmdLogFile=$PREFIX/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
# no cgroups: plain process tracking, limits are not enforced
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
$acct
JobCompType=jobcomp/filetxt
JobCompLoc=$PREFIX/log/jobcomp.txt
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=2,bf_interval=2
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
# a job without --mem would otherwise reserve the whole node's memory
DefMemPerCPU=1024
# the node advertises $cpus CPUs on $ncpu real ones; config_overrides makes slurmd accept that
SlurmdParameters=config_overrides
ReturnToService=2
MpiDefault=none
MailProg=/bin/true
SwitchType=switch/none
MessageTimeout=10
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
MinJobAge=300
KillWait=5
Waittime=0
MaxArraySize=10001
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$real_mem State=UNKNOWN
PartitionName=cpu Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
PartitionName=debug Nodes=$NODE Default=NO MaxTime=INFINITE State=UP
EOF
}

write_env() {
  cat > "$PREFIX/env.sh.new" <<EOF
export SLURM_CONF=$SLURM_CONF
export AUDIOSETDL_SLURM_PREFIX=$PREFIX
EOF
  mv "$PREFIX/env.sh.new" "$PREFIX/env.sh"
}

# ------------------------------------------------------------------- daemons --
check_port() {  # check_port PORT PIDFILE COMM: refuse when the port is taken by someone else
  if port_busy "$1" && ! alive "$2" "$3"; then
    die 7 "127.0.0.1:$1 (for $3) is in use by another program; pick another port with AUDIOSETDL_SLURM_*_PORT"
  fi
}

start_munge() {
  if [ ! -s "$PREFIX/munge/etc/munge.key" ]; then
    dd if=/dev/urandom of="$PREFIX/munge/etc/munge.key" bs=1024 count=1 status=none
    chmod 400 "$PREFIX/munge/etc/munge.key"
  fi
  if alive "$PREFIX/munge/run/munged.pid" munged; then log "munged already running"; return; fi
  # --force: munged refuses to run as root or with a socket dir it finds insecure otherwise
  munged 9>&- --key-file="$PREFIX/munge/etc/munge.key" --socket="$MUNGE_SOCK" \
    --pid-file="$PREFIX/munge/run/munged.pid" --log-file="$PREFIX/munge/log/munged.log" \
    --seed-file="$PREFIX/munge/lib/munged.seed" --force \
    || die 1 "munged failed, see $PREFIX/munge/log/munged.log"
  wait_for 10 bash -c "munge -n -S '$MUNGE_SOCK' | unmunge -S '$MUNGE_SOCK'" \
    || die 1 "munged not answering, see $PREFIX/munge/log/munged.log"
  log "munged started (pid $(cat "$PREFIX/munge/run/munged.pid"))"
}

mysql_cli() { mariadb --no-defaults -S "$MY/run/mysqld.sock" -uroot "$@"; }

start_mariadb() {
  mkdir -p "$MY/data" "$MY/run"
  write_if_changed "$MY/my.cnf" <<EOF || true
[mysqld]
datadir=$MY/data
socket=$MY/run/mysqld.sock
pid-file=$MY/run/mysqld.pid
log-error=$MY/mysqld.err
bind-address=127.0.0.1
port=$MYSQL_PORT
user=root
skip-name-resolve
innodb_buffer_pool_size=128M
innodb_log_file_size=64M
innodb_lock_wait_timeout=900
EOF
  if [ ! -d "$MY/data/mysql" ]; then
    mariadb-install-db --no-defaults --user=root --datadir="$MY/data" \
      --auth-root-authentication-method=normal --skip-test-db > "$MY/install.log" 2>&1 \
      || die 1 "mariadb-install-db failed, see $MY/install.log"
  fi
  if alive "$MY/run/mysqld.pid" mariadbd; then
    log "mariadbd already running"
  else
    check_port "$MYSQL_PORT" "$MY/run/mysqld.pid" mariadbd
    setsid nohup mariadbd --defaults-file="$MY/my.cnf" > "$MY/nohup.out" 2>&1 < /dev/null 9>&- &
    wait_for 60 mariadb-admin --no-defaults -S "$MY/run/mysqld.sock" -uroot ping \
      || die 1 "mariadbd not answering, see $MY/mysqld.err"
    log "mariadbd started (pid $(cat "$MY/run/mysqld.pid"))"
  fi
  mysql_cli -e "
    CREATE DATABASE IF NOT EXISTS slurm_acct_db;
    CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY '$DB_PASS';
    GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';
    FLUSH PRIVILEGES;" || die 1 "could not create the accounting database"
}

start_slurmdbd() {
  local dbd_changed
  # slurmdbd reads slurmdbd.conf from the directory of $SLURM_CONF; it must be 0600
  (umask 077; write_if_changed "$PREFIX/etc/slurmdbd.conf" <<EOF
# generated by audiosetdl slurm/local-cluster.sh
AuthType=auth/munge
AuthInfo=socket=$MUNGE_SOCK
DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort=$DBD_PORT
SlurmUser=root
DebugLevel=info
LogFile=$PREFIX/log/slurmdbd.log
PidFile=$PREFIX/run/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$MYSQL_PORT
StorageUser=slurm
StoragePass=$DB_PASS
StorageLoc=slurm_acct_db
EOF
  ) && dbd_changed=1 || dbd_changed=0
  chmod 600 "$PREFIX/etc/slurmdbd.conf"
  if [ "$dbd_changed" = 1 ] && alive "$PREFIX/run/slurmdbd.pid" slurmdbd; then
    log "slurmdbd.conf changed: restarting slurmdbd"
    stop_pid "$PREFIX/run/slurmdbd.pid" slurmdbd
  fi
  if alive "$PREFIX/run/slurmdbd.pid" slurmdbd; then
    log "slurmdbd already running"
  else
    check_port "$DBD_PORT" "$PREFIX/run/slurmdbd.pid" slurmdbd
    slurmdbd 9>&- || die 1 "slurmdbd failed, see $PREFIX/log/slurmdbd.log"
    wait_for 60 sacctmgr -n list cluster || die 1 "slurmdbd not answering, see $PREFIX/log/slurmdbd.log"
    log "slurmdbd started (pid $(cat "$PREFIX/run/slurmdbd.pid"))"
  fi
  # register the cluster before slurmctld first connects, plus an account for root
  sacctmgr -n -P list cluster format=cluster | grep -qx "$CLUSTER" ||
    sacctmgr -i -Q add cluster "$CLUSTER" >/dev/null
  sacctmgr -n -P list account format=account | grep -qx "$ACCOUNT" ||
    sacctmgr -i -Q add account "$ACCOUNT" Description=ci Organization=ci >/dev/null
  sacctmgr -n -P list assoc cluster="$CLUSTER" user=root account="$ACCOUNT" format=user | grep -qx root ||
    sacctmgr -i -Q add user root Account="$ACCOUNT" DefaultAccount="$ACCOUNT" >/dev/null
}

node_ok() { sinfo -h -n "$NODE" -o %T 2>/dev/null | grep -qE '^(idle|mixed|allocated|completing)$'; }

start_slurm() {  # start_slurm CONF_CHANGED
  if [ "$1" = 1 ] && { alive "$PREFIX/run/slurmd.pid" slurmd || alive "$PREFIX/run/slurmctld.pid" slurmctld; }; then
    # a new config needs both daemons restarted (scontrol reconfigure misses node changes)
    log "slurm.conf changed: restarting slurmctld and slurmd"
    stop_pid "$PREFIX/run/slurmd.pid" slurmd
    stop_pid "$PREFIX/run/slurmctld.pid" slurmctld
  fi
  if alive "$PREFIX/run/slurmctld.pid" slurmctld; then
    log "slurmctld already running"
  else
    check_port "$CTLD_PORT" "$PREFIX/run/slurmctld.pid" slurmctld
    slurmctld -f "$SLURM_CONF" 9>&- || die 1 "slurmctld failed, see $PREFIX/log/slurmctld.log"
    wait_for 30 scontrol ping || die 1 "slurmctld not answering, see $PREFIX/log/slurmctld.log"
    log "slurmctld started (pid $(cat "$PREFIX/run/slurmctld.pid"))"
  fi
  if alive "$PREFIX/run/slurmd.pid" slurmd; then
    log "slurmd already running"
  else
    check_port "$SLURMD_PORT" "$PREFIX/run/slurmd.pid" slurmd
    slurmd -f "$SLURM_CONF" -N "$NODE" 9>&- || die 1 "slurmd failed, see $PREFIX/log/slurmd.log"
    wait_for 10 alive "$PREFIX/run/slurmd.pid" slurmd || die 1 "slurmd did not start, see $PREFIX/log/slurmd.log"
    log "slurmd started (pid $(cat "$PREFIX/run/slurmd.pid"))"
  fi
  if ! wait_for 30 node_ok; then
    # a node left DOWN/DRAIN by an earlier run (e.g. killed slurmd) does not come back by itself
    scontrol update NodeName="$NODE" State=RESUME >/dev/null 2>&1 || true
    wait_for 15 node_ok || die 1 "node $NODE not usable: $(sinfo -h -o '%T %E' | head -1), see $PREFIX/log/slurmd.log"
  fi
}

cmd_start() {
  need_root start
  check_prefix
  take_lock
  ensure_packages
  mkdir -p "$PREFIX"/{etc,state,spool,log,run} "$PREFIX"/munge/{etc,run,log,lib}
  chmod 755 "$PREFIX" "$PREFIX/munge" "$PREFIX/munge/run"   # munged: socket dir must be o+x
  chmod 700 "$PREFIX/munge/etc" "$PREFIX/munge/log" "$PREFIX/munge/lib"
  local conf_changed=0
  write_slurm_conf && conf_changed=1
  write_env
  # all ports first, so that a clash fails before anything is started
  check_port "$CTLD_PORT" "$PREFIX/run/slurmctld.pid" slurmctld
  check_port "$SLURMD_PORT" "$PREFIX/run/slurmd.pid" slurmd
  if [ "$ACCOUNTING" = 1 ]; then
    check_port "$DBD_PORT" "$PREFIX/run/slurmdbd.pid" slurmdbd
    check_port "$MYSQL_PORT" "$MY/run/mysqld.pid" mariadbd
  fi
  start_munge
  if [ "$ACCOUNTING" = 1 ]; then
    start_mariadb
    start_slurmdbd
  fi
  start_slurm "$conf_changed"
  log "cluster ready: $(sinfo -h -o '%P(%a,%D nodes,%T)' | tr '\n' ' ')"
  log "clients: eval \"\$($0 env)\"   (or: source $PREFIX/env.sh)"
}

# --------------------------------------------------------------------- stop --
# our_stepds: pids of slurmstepd processes of this cluster. slurmstepd daemonizes away from
# slurmd; ours carry our SLURM_CONF in their environment (never matched by name alone).
our_stepds() {
  local p
  for p in /proc/[0-9]*; do
    [ "$(cat "$p/comm" 2>/dev/null)" = slurmstepd ] || continue
    { tr '\0' '\n' < "$p/environ" | grep -qxF "SLURM_CONF=$SLURM_CONF"; } 2>/dev/null || continue
    echo "${p#/proc/}"
  done
}

stop_stray_stepds() {
  local pid left
  left=$(our_stepds)
  [ -n "$left" ] || return 0
  for pid in $left; do kill "$pid" 2>/dev/null && log "slurmstepd: TERM to leftover pid $pid"; done
  for _ in $(seq 25); do [ -n "$(our_stepds)" ] || return 0; sleep 0.2; done
  for pid in $(our_stepds); do kill -9 "$pid" 2>/dev/null && log "slurmstepd: KILL to leftover pid $pid"; done
  return 0
}

cmd_stop() {
  local purge=0
  case "${1:-}" in --purge) purge=1 ;; "") ;; *) usage ;; esac
  check_prefix
  if [ ! -d "$PREFIX" ]; then log "nothing at $PREFIX"; return 0; fi
  need_root stop
  take_lock
  # 1. this cluster's jobs, so that no slurmstepd or job process outlives slurmd
  if [ -f "$SLURM_CONF" ] && alive "$PREFIX/run/slurmctld.pid" slurmctld; then
    local jobs
    jobs=$(squeue -h -o %A 2>/dev/null | sort -u | tr '\n' ' ')
    if [ -n "${jobs// /}" ]; then
      # shellcheck disable=SC2086
      scancel --full $jobs 2>/dev/null || true
      log "jobs cancelled: $jobs"
    fi
  fi
  # let the job steps end (SIGTERM, then SIGKILL after KillWait=5 s) while slurmd still runs
  if [ -n "$(our_stepds)" ]; then
    local end=$(( $(date +%s) + 15 ))
    while [ -n "$(our_stepds)" ] && [ "$(date +%s)" -lt "$end" ]; do sleep 0.2; done
    if [ -z "$(our_stepds)" ]; then log "job steps ended"; fi
  fi
  # 2. daemons, clients first
  stop_pid "$PREFIX/run/slurmd.pid" slurmd
  stop_stray_stepds
  stop_pid "$PREFIX/run/slurmctld.pid" slurmctld
  stop_pid "$PREFIX/run/slurmdbd.pid" slurmdbd
  stop_pid "$MY/run/mysqld.pid" mariadbd
  stop_pid "$PREFIX/munge/run/munged.pid" munged
  if [ "$purge" = 1 ]; then
    exec 9>&-
    rm -rf --one-file-system "$PREFIX"
    log "purged $PREFIX"
  fi
}

# ------------------------------------------------------------------- status --
cmd_status() {
  check_prefix
  local n_up=0 n=0 d
  local -a daemons=("munge/run/munged.pid munged" "run/slurmctld.pid slurmctld" "run/slurmd.pid slurmd")
  [ "$ACCOUNTING" = 1 ] && daemons+=("mysql/run/mysqld.pid mariadbd" "run/slurmdbd.pid slurmdbd")
  echo "prefix: $PREFIX"
  for d in "${daemons[@]}"; do
    set -- $d
    n=$((n + 1))
    if alive "$PREFIX/$1" "$2"; then
      n_up=$((n_up + 1)); printf '  %-10s running (pid %s)\n' "$2" "$(cat "$PREFIX/$1")"
    else
      printf '  %-10s not running\n' "$2"
    fi
  done
  if [ "$n_up" = 0 ]; then echo "not running"; return 3; fi
  if [ "$n_up" != "$n" ]; then echo "partly running"; return 1; fi
  echo "SLURM_CONF=$SLURM_CONF"
  sinfo -o '%10P %5a %6D %10T %5c %8m %N' 2>&1 || true
  squeue -o '%.12i %.9P %.20j %.8T %.10M %R' 2>&1 | head -20 || true
  node_ok || { echo "node $NODE not usable"; return 1; }
}

cmd_env() {
  [ -f "$SLURM_CONF" ] || echo "# $PROG: $SLURM_CONF does not exist yet: run '$0 start'" >&2
  echo "export SLURM_CONF=$SLURM_CONF"
  echo "export AUDIOSETDL_SLURM_PREFIX=$PREFIX"
}

case "${1:-}" in
  start)  shift; [ $# -eq 0 ] || usage; cmd_start ;;
  stop)   shift; cmd_stop "$@" ;;
  status) shift; [ $# -eq 0 ] || usage; cmd_status ;;
  env)    shift; [ $# -eq 0 ] || usage; cmd_env ;;
  -h|--help|help) usage ;;
  *) usage ;;
esac
