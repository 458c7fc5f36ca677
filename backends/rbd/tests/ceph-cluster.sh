#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# A throwaway one-node Ceph cluster for tests and benchmarks: one monitor and
# one OSD with the memstore object store (data in memory), cephx disabled,
# bound to 127.0.0.1 only (or $CEPH_ADDR), everything (config, logs,
# sockets, pid files) in one directory.
#
#   ceph-cluster.sh start DIR [POOL]  create DIR, start the cluster, create
#                                     POOL (default "rbd", initialised for RBD);
#                                     prints nothing; DIR/ceph.conf is the
#                                     client config
#   ceph-cluster.sh kill DIR          SIGKILL the daemons (a dead cluster), keep DIR
#   ceph-cluster.sh stop DIR          kill the daemons and remove DIR
#   ceph-cluster.sh available         exit 0 when the Ceph programs are installed
#
# Exit 77 from start when a program is missing (a test then skips).  Up with
# a pool in about 10 s on a 2-core machine.
#
# The environment of start:
#   CEPH_ADDR            the IPv4 address the daemons bind to and advertise
#                        (default 127.0.0.1); it must be on an interface here
#   CEPH_PORT            the monitor's port (default: a random free one); the
#                        OSD takes ports within CEPH_PORT+1 .. CEPH_PORT+60
#   CEPH_MEMSTORE_BYTES  the OSD's memory store (default 2 GiB)
#   CEPH_START_TIMEOUT   seconds until the pool must take writes (default 90)
set -euo pipefail

PROGRAMS=(ceph-mon ceph-osd monmaptool ceph rados rbd python3)
START_TIMEOUT=${CEPH_START_TIMEOUT:-90}
ADDR=${CEPH_ADDR:-127.0.0.1}

log() { echo "ceph-cluster: $*" >&2; }

new_uuid() { python3 -c 'import uuid; print(uuid.uuid4())'; }

missing_program() {
	for p in "${PROGRAMS[@]}"; do
		command -v "$p" >/dev/null || { echo "$p"; return 0; }
	done
	return 1
}

# A free TCP port on $ADDR followed by 60 more that look free: the monitor
# takes the first, the OSD binds within the rest.  $CEPH_PORT fixes the first.
pick_ports() {
	if [[ -n ${CEPH_PORT:-} ]]; then
		echo "$CEPH_PORT"
		return
	fi
	python3 - "$ADDR" <<'PY'
import random, socket, sys
def free(p):
    s = socket.socket()
    try:
        s.bind((sys.argv[1], p))
        return True
    except OSError:
        return False
    finally:
        s.close()
for _ in range(200):
    base = random.randrange(20000, 60000, 64)
    if all(free(p) for p in range(base, base + 61)):
        print(base)
        break
else:
    raise SystemExit("no free port range")
PY
}

write_conf() {
	local dir=$1 port=$2 fsid=$3
	cat >"$dir/ceph.conf" <<-EOF
		[global]
		fsid = $fsid
		mon_host = v2:$ADDR:$port
		public_addr = $ADDR
		cluster_addr = $ADDR
		ms_bind_ipv4 = true
		ms_bind_ipv6 = false
		ms_bind_msgr1 = false
		ms_bind_msgr2 = true
		ms_bind_port_min = $((port + 1))
		ms_bind_port_max = $((port + 60))
		auth_cluster_required = none
		auth_service_required = none
		auth_client_required = none
		run_dir = $dir/run
		admin_socket = $dir/run/\$name.asok
		pid_file = $dir/run/\$name.pid
		log_file = $dir/log/\$name.log
		log_to_stderr = false
		err_to_stderr = false
		osd_pool_default_size = 1
		osd_pool_default_min_size = 1
		osd_pool_default_pg_num = 8
		osd_pool_default_pgp_num = 8
		mon_allow_pool_size_one = true
		mon_warn_on_pool_no_redundancy = false
		osd_crush_chooseleaf_type = 0
		[mon]
		mon_data = $dir/mon.\$id
		mon_allow_pool_delete = true
		[osd]
		osd_data = $dir/osd.\$id
		osd_objectstore = memstore
		memstore_device_bytes = ${CEPH_MEMSTORE_BYTES:-2147483648}
		osd_max_object_name_len = 256
		osd_max_object_namespace_len = 64
	EOF
	# The client side (tests, rbd, librbd) logs nowhere.
	cat >>"$dir/ceph.conf" <<-EOF
		[client]
		log_file = /dev/null
		admin_socket =
	EOF
}

start_mon() {
	local dir=$1 port=$2 fsid=$3
	monmaptool --create --fsid "$fsid" --addv a "[v2:$ADDR:$port]" "$dir/monmap" >/dev/null
	ceph-mon -c "$dir/ceph.conf" -i a --mkfs --monmap "$dir/monmap" >"$dir/log/mkfs-mon.log" 2>&1
	ceph-mon -c "$dir/ceph.conf" -i a
}

start_osd() {
	local dir=$1 uuid id
	uuid=$(new_uuid)
	id=$(timeout 60 ceph -c "$dir/ceph.conf" osd new "$uuid")
	mkdir -p "$dir/osd.$id"
	ceph-osd -c "$dir/ceph.conf" -i "$id" --mkfs --osd-uuid "$uuid" >"$dir/log/mkfs-osd.log" 2>&1
	ceph-osd -c "$dir/ceph.conf" -i "$id"
}

# Wait until the pool takes writes: its placement groups are active.  (pg
# stat needs a manager daemon, which this cluster does without.)
wait_active() {
	local dir=$1 pool=$2 deadline=$((SECONDS + START_TIMEOUT))
	while ((SECONDS < deadline)); do
		if timeout 10 rados -c "$dir/ceph.conf" -p "$pool" put blkserv-probe "$dir/monmap" 2>/dev/null &&
			timeout 10 rados -c "$dir/ceph.conf" -p "$pool" rm blkserv-probe 2>/dev/null; then
			return 0
		fi
		sleep 0.2
	done
	log "pool $pool does not take writes after ${START_TIMEOUT}s; logs in $dir/log"
	return 1
}

cmd_start() {
	local dir=$1 pool=${2:-rbd} port fsid
	local missing
	if missing=$(missing_program); then
		log "$missing is not installed"
		exit 77
	fi
	mkdir -p "$dir/run" "$dir/log"
	port=$(pick_ports)
	fsid=$(new_uuid)
	write_conf "$dir" "$port" "$fsid"
	start_mon "$dir" "$port" "$fsid"
	start_osd "$dir"
	timeout 60 ceph -c "$dir/ceph.conf" osd pool create "$pool" 8 >/dev/null 2>&1
	timeout 60 rbd -c "$dir/ceph.conf" pool init "$pool"
	wait_active "$dir" "$pool" || { cmd_kill "$dir"; exit 1; }
}

# SIGKILL every daemon whose pid file is in DIR/run.
cmd_kill() {
	local dir=$1 pidfile pid
	for pidfile in "$dir"/run/*.pid; do
		[[ -f $pidfile ]] || continue
		pid=$(<"$pidfile")
		# Only our own daemons: the process must still run a ceph binary
		# with our config.
		if [[ -r /proc/$pid/cmdline ]] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF "$dir/ceph.conf"; then
			kill -KILL "$pid" 2>/dev/null || true
			while kill -0 "$pid" 2>/dev/null; do sleep 0.05; done
		fi
		rm -f "$pidfile"
	done
}

cmd_stop() {
	local dir=$1
	[[ -d $dir ]] || return 0
	cmd_kill "$dir"
	rm -rf "$dir"
}

case ${1:-} in
start) cmd_start "${2:?usage: ceph-cluster.sh start DIR [POOL]}" "${3:-rbd}" ;;
kill) cmd_kill "${2:?usage: ceph-cluster.sh kill DIR}" ;;
stop) cmd_stop "${2:?usage: ceph-cluster.sh stop DIR}" ;;
available)
	if missing=$(missing_program); then
		echo "$missing is not installed"
		exit 1
	fi
	;;
*)
	echo "usage: ceph-cluster.sh start|kill|stop DIR | available" >&2
	exit 2
	;;
esac
