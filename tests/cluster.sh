#!/bin/bash
# A private 3-node RabbitMQ cluster for the integration tests, on loopback
# only: three tests/broker.sh nodes (own node names dlqd<PORT>@localhost, AMQP
# ports, distribution ports PORT+20000 and data directories), nodes 2 and 3
# joined to node 1 with rabbitmqctl join_cluster.
#
#   tests/cluster.sh start         boot the three nodes (keeps their data;
#                                  joins them when the data is fresh)
#   tests/cluster.sh stop          stop the three nodes
#   tests/cluster.sh reset         stop, wipe every node's data, start, join
#   tests/cluster.sh status        each node, and exit 0 when the cluster
#                                  runs 3 nodes
#   tests/cluster.sh stop-node N   stop node N (1..3) alone
#   tests/cluster.sh start-node N  start node N again; waits until the
#                                  cluster runs 3 nodes
#   tests/cluster.sh urls          the three amqp:// URLs, space separated
#   tests/cluster.sh ctl N ARGS    rabbitmqctl against node N
#
# Environment:
#   DLQD_TEST_CLUSTER_PORT     AMQP port of node 1 (default 5701); node N
#                              listens on PORT+N-1
#   DLQD_TEST_CLUSTER_STATE    state directory (default /tmp/dlqd-test-cluster);
#                              node N keeps its data under node<N>/
#   DLQD_TEST_CLUSTER_TIMEOUT  seconds to wait for the cluster (default 180)
#
# Works as root and as an ordinary user, like broker.sh: as an ordinary user
# each node has its own HOME, so the nodes get one shared Erlang cookie
# (STATE/cookie) through broker.sh's DLQD_TEST_ERLANG_COOKIE.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
BROKER_SH="$HERE/broker.sh"
BASE=${DLQD_TEST_CLUSTER_PORT:-5701}
STATE=${DLQD_TEST_CLUSTER_STATE:-/tmp/dlqd-test-cluster}
TIMEOUT=${DLQD_TEST_CLUSTER_TIMEOUT:-180}
NODES=(1 2 3)

case "$STATE" in
/ | "") echo "cluster.sh: refusing state directory '$STATE'" >&2; exit 2 ;;
esac

log() { echo "cluster.sh: $*" >&2; }

port_of() { echo $((BASE + $1 - 1)); }
node_of() { echo "dlqd$(port_of "$1")@localhost"; }

cookie() {
	if [ ! -s "$STATE/cookie" ]; then
		mkdir -p "$STATE"
		(umask 077 && tr -dc A-Z </dev/urandom | head -c 20 >"$STATE/cookie")
	fi
	cat "$STATE/cookie"
}

# A quorum queue dead-letters at least once (dlqd's delay lanes do) through
# a worker that re-sends what the target did not confirm only after this
# timeout, 180 s by default: when the target's leader moves (a node stops),
# RabbitMQ 3.10 can hold a lane's expired messages that long. 5 s keeps a
# failover test short (README.md, "The 3-node cluster test").
advanced_conf() {
	mkdir -p "$STATE"
	cat >"$STATE/advanced.config" <<-EOF
		[{rabbit, [{dead_letter_worker_publisher_confirm_timeout, 5000}]}].
	EOF
	echo "$STATE/advanced.config"
}

node() { # N broker.sh-args...
	local n=$1
	shift
	DLQD_TEST_AMQP_PORT=$(port_of "$n") DLQD_TEST_STATE="$STATE/node$n" \
		DLQD_TEST_ERLANG_COOKIE="$(cookie)" DLQD_TEST_BROKER_TIMEOUT="$TIMEOUT" \
		DLQD_TEST_BROKER_ADVANCED_CONF="$(advanced_conf)" "$BROKER_SH" "$@"
}

check_n() {
	case "${1:-}" in
	1 | 2 | 3) ;;
	*) log "node number must be 1, 2 or 3, not '${1:-}'"; exit 2 ;;
	esac
}

# Runs "node N ARGS" for several nodes at once (a clustered node that boots
# waits for its peers, so a restart of the whole cluster must be parallel);
# fails, with each failing node's output, when any of them failed.
each_node() { # "N..." broker.sh-args...
	local ns=$1 n rc=0
	shift
	local -A pids=()
	mkdir -p "$STATE"
	for n in $ns; do
		node "$n" "$@" >"$STATE/node$n.cmd.log" 2>&1 &
		pids[$n]=$!
	done
	for n in $ns; do
		if ! wait "${pids[$n]}"; then
			log "node $n ($(node_of "$n")): broker.sh $* failed:"
			cat "$STATE/node$n.cmd.log" >&2
			rc=1
		fi
	done
	return $rc
}

# The running nodes as node 1..3 see them (the first node that answers).
running_nodes() {
	local n out
	for n in "${NODES[@]}"; do
		if out=$(node "$n" ctl -q cluster_status --formatter json 2>/dev/null); then
			python3 -c 'import json,sys; print(" ".join(sorted(json.load(sys.stdin).get("running_nodes", []))))' \
				<<<"$out" && return 0
		fi
	done
	return 1
}

wait_cluster() {
	local want deadline seen=""
	want=$(for n in "${NODES[@]}"; do node_of "$n"; done | sort | tr '\n' ' ' | sed 's/ $//')
	deadline=$((SECONDS + TIMEOUT))
	while [ $SECONDS -lt $deadline ]; do
		seen=$(running_nodes || true)
		[ "$seen" = "$want" ] && return 0
		sleep 1
	done
	log "the cluster did not run 3 nodes within ${TIMEOUT}s: running '${seen}', want '$want'"
	log "state and logs under $STATE/node{1,2,3}"
	return 1
}

join() { # N: node N leaves whatever it had and joins node 1
	local n=$1 first step out
	first=$(node_of 1)
	log "joining $(node_of "$n") to $first"
	for step in stop_app reset "join_cluster $first" start_app; do
		# shellcheck disable=SC2086 # step is a command and its argument
		if ! out=$(node "$n" ctl -q $step 2>&1); then
			log "node $n: rabbitmqctl $step failed:"
			echo "$out" >&2
			return 1
		fi
	done
}

do_start() {
	mkdir -p "$STATE"
	cookie >/dev/null
	if [ -e "$STATE/joined" ]; then
		each_node "${NODES[*]}" start
	else
		# Fresh data: node 1 first (it may create the shared cookie of the
		# rabbitmq user as root), then the others, which join it.
		each_node 1 start
		each_node "2 3" start
		join 2
		join 3
		touch "$STATE/joined"
	fi
	wait_cluster
	log "cluster up: $(do_urls)"
}

do_stop() {
	each_node "${NODES[*]}" stop
}

do_reset() {
	do_stop
	local n
	for n in "${NODES[@]}"; do
		rm -rf "$STATE/node$n/mnesia" "$STATE/node$n/log"
	done
	rm -f "$STATE/joined"
	do_start
}

do_status() {
	local n rc=0 running
	for n in "${NODES[@]}"; do
		node "$n" status || rc=1
	done
	if running=$(running_nodes) && [ -n "$running" ]; then
		echo "running nodes: $running"
		[ "$(wc -w <<<"$running")" = 3 ] || rc=1
	else
		echo "running nodes: none answers"
		rc=1
	fi
	return $rc
}

do_urls() {
	local n out=()
	for n in "${NODES[@]}"; do
		out+=("amqp://guest:guest@127.0.0.1:$(port_of "$n")/%2f")
	done
	echo "${out[*]}"
}

cmd=${1:-}
[ $# -gt 0 ] && shift
case "$cmd" in
start) do_start ;;
stop) do_stop ;;
reset) do_reset ;;
status) do_status ;;
stop-node) check_n "${1:-}"; node "$1" stop ;;
start-node) check_n "${1:-}"; node "$1" start; wait_cluster ;;
urls) do_urls ;;
ctl) check_n "${1:-}"; n=$1; shift; node "$n" ctl "$@" ;;
*)
	echo "usage: $0 start|stop|reset|status|stop-node N|start-node N|urls|ctl N ARGS..." >&2
	exit 2
	;;
esac
