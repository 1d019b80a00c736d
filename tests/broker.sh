#!/bin/bash
# A private RabbitMQ node for the integration tests, on loopback only.
#
#   tests/broker.sh start     boot the node (keeps its data); no-op when up
#   tests/broker.sh stop      stop it for real (node, launcher, our epmd)
#   tests/broker.sh restart   stop + start; durable queues and persistent
#                             messages survive (the mnesia dir is kept)
#   tests/broker.sh reset     stop, wipe the node's data, start
#   tests/broker.sh wait      wait until the node accepts connections
#   tests/broker.sh status    exit 0 when the node is up
#   tests/broker.sh ctl ARGS  rabbitmqctl against the node
#
# Environment:
#   DLQD_TEST_AMQP_PORT  AMQP port (default 5673, so a system broker on 5672
#                        never clashes); the node is dlqd<PORT>@localhost and
#                        its distribution port is PORT+20000
#   DLQD_TEST_STATE      state directory (default /tmp/dlqd-test-broker)
#   DLQD_TEST_BROKER_EXTRA_CONF  optional file appended to the node's
#                        rabbitmq.conf on start (e.g. a TLS listener); files it
#                        names must be readable by the rabbitmq user as root
#   DLQD_TEST_BROKER_ADVANCED_CONF  optional advanced.config (Erlang terms)
#                        for the node, for settings rabbitmq.conf lacks
#   DLQD_TEST_ERLANG_COOKIE  as an ordinary user, the Erlang cookie written to
#                        the node's HOME on start (tests/cluster.sh gives its
#                        nodes one cookie so they can join); as root the
#                        nodes share the rabbitmq user's cookie anyway
#
# Works as root (Debian's scripts drop to the rabbitmq user, which must own
# the state directory) and as an ordinary user (the node runs as that user,
# with its own Erlang cookie under the state directory).
set -euo pipefail

PORT=${DLQD_TEST_AMQP_PORT:-5673}
STATE=${DLQD_TEST_STATE:-/tmp/dlqd-test-broker}
NODE="dlqd${PORT}@localhost"
DIST_PORT=$((PORT + 20000))
BOOT_TIMEOUT=${DLQD_TEST_BROKER_TIMEOUT:-90}

case "$STATE" in
/ | "") echo "broker.sh: refusing state directory '$STATE'" >&2; exit 2 ;;
esac

export RABBITMQ_BASE="$STATE"
export RABBITMQ_MNESIA_BASE="$STATE/mnesia"
export RABBITMQ_LOG_BASE="$STATE/log"
export RABBITMQ_NODENAME="$NODE"
export RABBITMQ_NODE_IP_ADDRESS=127.0.0.1
export RABBITMQ_NODE_PORT="$PORT"
export RABBITMQ_DIST_PORT="$DIST_PORT"
export RABBITMQ_CONFIG_FILE="$STATE/rabbitmq"
export RABBITMQ_ENABLED_PLUGINS_FILE="$STATE/enabled_plugins"
export RABBITMQ_PID_FILE="$STATE/pid"
if [ -n "${DLQD_TEST_BROKER_ADVANCED_CONF:-}" ]; then
	export RABBITMQ_ADVANCED_CONFIG_FILE="$STATE/advanced.config"
fi
export ERL_EPMD_ADDRESS=127.0.0.1
# Keep Erlang distribution on loopback too.
export RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}"

if [ "$(id -u)" = 0 ]; then
	SERVER=(rabbitmq-server)
	CTL=(rabbitmqctl)
	AS_ROOT=1
else
	# Debian's wrappers refuse ordinary users; call the real scripts.
	SERVER=(/usr/lib/rabbitmq/bin/rabbitmq-server)
	CTL=(/usr/lib/rabbitmq/bin/rabbitmqctl)
	AS_ROOT=0
	export HOME="$STATE/home"
fi

log() { echo "broker.sh: $*" >&2; }

ctl() {
	"${CTL[@]}" -n "$NODE" "$@"
}

node_pid() {
	local pid
	[ -s "$STATE/pid" ] || return 1
	pid=$(tr -dc 0-9 <"$STATE/pid")
	[ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
	echo "$pid"
}

is_up() {
	node_pid >/dev/null || return 1
	ctl -q status >/dev/null 2>&1
}

port_busy() {
	ss -Hltn "sport = :$1" 2>/dev/null | grep -q .
}

prepare_state() {
	mkdir -p "$STATE/mnesia" "$STATE/log" "$STATE/home"
	cat >"$STATE/rabbitmq.conf" <<-EOF
		listeners.tcp.default = 127.0.0.1:$PORT
		loopback_users.guest = true
		disk_free_limit.absolute = 10MB
		log.file.level = info
		log.console = false
	EOF
	if [ -n "${DLQD_TEST_BROKER_EXTRA_CONF:-}" ]; then
		cat "$DLQD_TEST_BROKER_EXTRA_CONF" >>"$STATE/rabbitmq.conf"
	fi
	echo "[]." >"$STATE/enabled_plugins"
	if [ -n "${DLQD_TEST_BROKER_ADVANCED_CONF:-}" ]; then
		cp "$DLQD_TEST_BROKER_ADVANCED_CONF" "$STATE/advanced.config"
	fi
	if [ "$AS_ROOT" = 0 ] && [ -n "${DLQD_TEST_ERLANG_COOKIE:-}" ]; then
		# Erlang refuses a cookie file others can read.
		rm -f "$HOME/.erlang.cookie"
		(umask 077 && printf '%s' "$DLQD_TEST_ERLANG_COOKIE" >"$HOME/.erlang.cookie")
		chmod 400 "$HOME/.erlang.cookie"
	fi
	if [ "$AS_ROOT" = 1 ]; then
		chown -R rabbitmq:rabbitmq "$STATE"
	fi
}

do_wait() {
	local timeout=${1:-$BOOT_TIMEOUT}
	# `rabbitmqctl wait` needs the pid file, which the server writes a moment
	# after it is launched.
	local i=0
	while [ ! -s "$STATE/pid" ]; do
		i=$((i + 1))
		if [ $i -gt $((timeout * 10)) ]; then
			log "no pid file after ${timeout}s; see $STATE/out.log"
			return 1
		fi
		if [ -s "$STATE/launcher.pid" ] && ! kill -0 "$(cat "$STATE/launcher.pid")" 2>/dev/null; then
			log "rabbitmq-server exited during boot; last lines of $STATE/out.log:"
			tail -n 30 "$STATE/out.log" >&2 || true
			return 1
		fi
		sleep 0.1
	done
	if ! ctl -q wait "$STATE/pid" --timeout "$timeout" >/dev/null; then
		log "node $NODE did not come up; last lines of $STATE/out.log:"
		tail -n 30 "$STATE/out.log" >&2 || true
		return 1
	fi
}

do_start() {
	if is_up; then
		return 0
	fi
	if node_pid >/dev/null; then
		# Booting (or wedged): give it the usual time before judging.
		do_wait && return 0
		do_stop
	fi
	if port_busy "$PORT"; then
		log "port $PORT is taken by another process:"
		ss -Hltnp "sport = :$PORT" >&2 || true
		return 1
	fi
	if port_busy "$DIST_PORT"; then
		log "distribution port $DIST_PORT is taken by another process"
		return 1
	fi
	rm -f "$STATE/pid"
	prepare_state
	if ! epmd -names >/dev/null 2>&1; then
		# Nobody runs epmd yet: the node will start one and stop() may end it.
		touch "$STATE/epmd-ours"
	fi
	(
		cd /
		exec setsid "${SERVER[@]}" >"$STATE/out.log" 2>&1 </dev/null
	) &
	echo $! >"$STATE/launcher.pid"
	do_wait
	log "node $NODE up on 127.0.0.1:$PORT (state $STATE)"
}

wait_gone() { # pid seconds
	local i=0
	while kill -0 "$1" 2>/dev/null; do
		i=$((i + 1))
		[ $i -gt $(($2 * 10)) ] && return 1
		sleep 0.1
	done
}

do_stop() {
	local pid launcher
	if pid=$(node_pid); then
		ctl -q stop "$STATE/pid" >/dev/null 2>&1 || true
		if ! wait_gone "$pid" 30; then
			log "node did not stop, killing $pid"
			kill -TERM "$pid" 2>/dev/null || true
			wait_gone "$pid" 10 || kill -KILL "$pid" 2>/dev/null || true
			wait_gone "$pid" 5 || true
		fi
	fi
	# The launcher shells (sh, su, sh) exit with the node; make sure.
	if [ -s "$STATE/launcher.pid" ]; then
		launcher=$(cat "$STATE/launcher.pid")
		if kill -0 "$launcher" 2>/dev/null; then
			# setsid made it a process group leader: end the whole group.
			kill -TERM -- "-$launcher" 2>/dev/null || true
			wait_gone "$launcher" 10 || kill -KILL -- "-$launcher" 2>/dev/null || true
		fi
		rm -f "$STATE/launcher.pid"
	fi
	rm -f "$STATE/pid"
	# End epmd only if we started it and no other node still uses it.
	if [ -e "$STATE/epmd-ours" ]; then
		if ! epmd -names 2>/dev/null | grep -q '^name '; then
			epmd -kill >/dev/null 2>&1 || true
		fi
		rm -f "$STATE/epmd-ours"
	fi
	# The listener can linger for a moment after the VM exits.
	local i=0
	while port_busy "$PORT" && [ $i -lt 50 ]; do
		sleep 0.1
		i=$((i + 1))
	done
}

do_reset() {
	do_stop
	rm -rf "$STATE/mnesia" "$STATE/log"
	do_start
}

cmd=${1:-}
[ $# -gt 0 ] && shift
case "$cmd" in
start) do_start ;;
stop) do_stop ;;
restart) do_stop; do_start ;;
reset) do_reset ;;
wait) do_wait "$@" ;;
status)
	if is_up; then
		echo "up: $NODE on 127.0.0.1:$PORT (pid $(node_pid), state $STATE)"
	else
		echo "down: $NODE (state $STATE)"
		exit 1
	fi
	;;
ctl) ctl "$@" ;;
*)
	echo "usage: $0 start|stop|restart|reset|wait|status|ctl ARGS..." >&2
	exit 2
	;;
esac
