#!/bin/bash
# test-completion: drives packaging/completion/dlqctl.bash the way bash does
# (COMP_WORDS, COMP_CWORD, COMP_LINE, COMP_POINT, then _dlqctl) and checks
# COMPREPLY: commands, each command's options, files, error classes, and
# the error codes of the taxonomy that the config names. It also holds the
# completion to `dlqctl --help` (every command and option there is
# completed) and to dlqctl's parser (every option offered for a command is
# accepted with it).
#
# Usage: test-completion.bash DLQCTL COMPLETION_FILE SOURCE_DIR
# It runs twice: with bash-completion loaded (when installed, as on CI) and
# without it (the file's own fallback).
set -euo pipefail

if [[ ${1-} != --mode=* ]]; then
	modes=(plain)
	if [[ -r /usr/share/bash-completion/bash_completion ]]; then
		modes+=(bash-completion)
	else
		echo "note: bash-completion is not installed; testing the plain mode only"
	fi
	rc=0
	for m in "${modes[@]}"; do
		bash "$0" --mode="$m" "$@" || rc=1
	done
	exit "$rc"
fi

mode=${1#--mode=}
dlqctl=$2
completion=$3
src=$4
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
failures=0

if [[ $mode == bash-completion ]]; then
	set +u # bash_completion is not written for nounset
	# shellcheck disable=SC1091
	source /usr/share/bash-completion/bash_completion
	set -u
fi
# shellcheck disable=SC1090
source "$completion"

# comp [-a N] WORD... : completes word N (default: the last one), the cursor
# at its end, and sets $got to the replies, one per line. Give "--opt=value"
# as the three words "--opt" "=" "value", as bash splits it.
comp()
{
	local w i=0 at line="" point=0
	at=$(($# - 1))
	if [[ $1 == -a ]]; then
		at=$2
		shift 2
	fi
	COMP_WORDS=("$@")
	COMP_CWORD=$at
	for w in "$@"; do
		if ((i == 0)); then
			line=$w
		elif [[ $w == = || $line == *= ]]; then
			line+=$w
		else
			line+=" $w"
		fi
		((i++ == at)) && point=${#line}
	done
	COMP_LINE=$line
	COMP_POINT=$point
	COMPREPLY=()
	set +euo pipefail # as in an interactive shell
	_dlqctl
	set -euo pipefail
	got=""
	for w in "${COMPREPLY[@]}"; do
		got+="$w"$'\n'
	done
}

fail()
{
	echo "FAIL [$mode] $*" >&2
	failures=$((failures + 1))
}

# has WORD: the last comp offered WORD.
has()
{
	[[ $'\n'$got == *$'\n'"$1"$'\n'* ]]
}

# expect "WANTED..." [-a N] WORD... : the replies are exactly WANTED.
expect()
{
	local w want=" $1 " wanted n=0
	read -ra wanted <<<"$1"
	shift
	comp "$@"
	for w in "${wanted[@]}"; do
		has "$w" || fail "'$*': $w not offered (got [${got//$'\n'/ }])"
	done
	for w in "${COMPREPLY[@]}"; do
		[[ $want == *" $w "* ]] || fail "'$*': $w offered (wanted [$want])"
		n=$((n + 1))
	done
	((n == ${#wanted[@]})) || fail "'$*': [${got//$'\n'/ }] is not [$want]"
}

# offers "WANTED..." "REFUSED..." WORD... : the replies hold every WANTED
# and no REFUSED.
offers()
{
	local w offered=$1 refused=$2
	shift 2
	comp "$@"
	for w in $offered; do
		has "$w" || fail "'$*': $w not offered (got [${got//$'\n'/ }])"
	done
	for w in $refused; do
		! has "$w" || fail "'$*': $w offered"
	done
}

commands="list purge replay show stats"
global="--config --json --max-duration --help --version"
filters="--error-code --error-class --message-id --schema-version --older-than --newer-than"

# Commands, before and after global options.
expect "$commands" dlqctl ""
expect "show stats" dlqctl s
expect "$commands" dlqctl --config /etc/dlqd/dlqd.conf --json ""
expect "$commands" dlqctl -c /etc/dlqd/dlqd.conf ""
expect "$global $filters" dlqctl stats ""

# Each command's own options.
expect "$global $filters" dlqctl stats --
expect "$global $filters --limit" dlqctl list --
expect "$global" dlqctl show evt_1 --
expect "" dlqctl show ""
offers "--rate --force --dry-run --all --limit $filters" "--yes --archive" dlqctl replay --
offers "--yes --archive --dry-run --all --limit $filters" "--rate --force" dlqctl purge --
offers "$global" "$filters --rate" dlqctl --
# Options given once are not offered again; filters repeat.
offers "--error-code --error-class" "--json --config" \
	dlqctl --json stats --config x --error-code A --error-class TRANSIENT --
offers "--limit" "--dry-run" dlqctl replay --dry-run --error-code=A --
expect "--rate" dlqctl replay --ra
expect "" dlqctl bogus --

# Files for --config and --archive.
mkdir -p "$tmp/files/sub"
touch "$tmp/files/alpha.conf" "$tmp/files/alpine.conf" "$tmp/files/beta"
expect "$tmp/files/alpha.conf $tmp/files/alpine.conf" dlqctl --config "$tmp/files/al"
expect "$tmp/files/alpha.conf $tmp/files/alpine.conf" dlqctl stats -c "$tmp/files/al"
expect "$tmp/files/beta" dlqctl --config = "$tmp/files/b"
expect "$tmp/files/beta" dlqctl purge --yes --archive "$tmp/files/b"
offers "$tmp/files/sub" "" dlqctl --config "$tmp/files/s"

# Enumerations; a comma-separated list completes its last value.
expect "TRANSIENT PERSISTENT NON_RETRYABLE" dlqctl list --error-class ""
expect "NON_RETRYABLE" dlqctl list --error-class N
expect "TRANSIENT,PERSISTENT" dlqctl list --error-class TRANSIENT,P
expect "none" dlqctl list --schema-version ""
expect "" dlqctl replay --rate ""
expect "" dlqctl list --older-than ""

# Error codes from the taxonomy the config names: a relative path (to the
# config's directory) after an inline comment's blank, in the [retry]
# section only; and a quoted absolute path.
builtin="INVALID_ENVELOPE MESSAGE_TOO_LARGE POISON_MESSAGE RETRY_EXHAUSTED"
mkdir -p "$tmp/etc/tax"
cp "$src/tests/data/taxonomy/good-every-key.json" "$tmp/etc/tax/every.json"
cat >"$tmp/etc/every.conf" <<EOF
[ retry ]
  taxonomy = tax/every.json   ; relative to this file
[broker]
url = amqp://guest:guest@127.0.0.1:5672/%2f
taxonomy = /nonexistent/broker-section.json
EOF
printf '[retry]\r\ntaxonomy = "%s" # quoted\r\n' "$src/config/taxonomy.json" >"$tmp/etc/shipped.conf"
every="A B_1 C D E F G UNKNOWN_ERROR $builtin"
expect "$every" dlqctl --config "$tmp/etc/every.conf" stats --error-code ""
# The config may follow the cursor.
expect "B_1" -a 3 dlqctl list --error-code B -c "$tmp/etc/every.conf"
expect "$every" dlqctl -c"$tmp/etc/every.conf" replay --error-code ""
expect "UPSTREAM_THROTTLED UPSTREAM_TIMEOUT" \
	dlqctl --config = "$tmp/etc/shipped.conf" replay --error-code = UPSTREAM_T
expect "AUTH_REVOKED,UPSTREAM_THROTTLED AUTH_REVOKED,UPSTREAM_TIMEOUT" \
	dlqctl --config "$tmp/etc/shipped.conf" purge --error-code AUTH_REVOKED,UPSTREAM_T
# A code of another taxonomy, or of none, is not offered.
expect "" dlqctl --config "$tmp/etc/every.conf" stats --error-code UPSTREAM_T
expect "" dlqctl --config "$tmp/etc/shipped.conf" stats --error-code NOT_A_
# Split over lines, as a JSON formatter may write it; only error_code keys.
printf '[retry]\ntaxonomy = odd.json\n' >"$tmp/etc/odd.conf"
printf '{"rules": [{"when": {"handler_code": ["NOT_AN_ERROR_CODE"]},\n "error_code"\n :\n  "SPLIT_CODE"}],\n "default": {"error_code":"DEF"}}\n' >"$tmp/etc/odd.json"
expect "DEF SPLIT_CODE $builtin" dlqctl --config "$tmp/etc/odd.conf" list --error-code ""
# No readable taxonomy: the codes dlqd itself gives.
printf '[retry]\ntaxonomy = missing.json\n' >"$tmp/etc/missing.conf"
expect "$builtin" dlqctl --config "$tmp/etc/missing.conf" list --error-code ""

# Every command and option of `dlqctl --help` is completed, so a new one
# fails here until the completion knows it.
help=$("$dlqctl" --help)
help_cmds=$(sed -n '/^Commands/,/^$/s/^  \([a-z][a-z-]*\).*/\1/p' <<<"$help")
[[ -n $help_cmds ]] || fail "no command found in dlqctl --help"
comp dlqctl ""
for c in $help_cmds; do
	has "$c" || fail "command '$c' of dlqctl --help is not completed"
done
all_opts=""
for c in $help_cmds; do
	comp dlqctl "$c" x --
	all_opts+=$got
done
got=$all_opts
mapfile -t help_opts < <(grep -o -- '--[a-z][a-z-]*' <<<"$help")
for o in "${help_opts[@]}"; do
	has "$o" || fail "option '$o' of dlqctl --help is not completed"
done

# Every option offered for a command is one dlqctl accepts with it: the run
# gets past the command line to the config (missing here) or to a refusal
# (exit 5), never to a usage error about the option. The offers do not
# depend on bash-completion, so one mode runs dlqctl.
if [[ $mode == plain ]]; then
	declare -A value=(
		[--config]="$tmp/nonexistent.conf" [--rate]=3 [--limit]=3
		[--archive]="$tmp/archive.jsonl" [--max-duration]=1h [--older-than]=1h
		[--newer-than]=1h [--error-class]=TRANSIENT [--schema-version]=none
		[--error-code]=X [--message-id]=X
	)
	for c in $help_cmds; do
		operand=()
		[[ $c == show ]] && operand=(evt_1)
		comp dlqctl "$c" "${operand[@]}" --
		for o in "${COMPREPLY[@]}"; do
			args=(--config "$tmp/nonexistent.conf" "$c" "${operand[@]}" "$o")
			[[ -n ${value[$o]-} ]] && args+=("${value[$o]}")
			r=0
			err=$("$dlqctl" "${args[@]}" 2>&1 >/dev/null) || r=$?
			if ! [[ $r == 0 || $r == 5 || $err == *"configuration is invalid"* ]]; then
				fail "'$c $o' is offered but dlqctl refuses it (exit $r): $err"
			fi
		done
	done
fi

if ((failures)); then
	echo "[$mode] $failures failure(s)" >&2
	exit 1
fi
echo "[$mode] ok"
