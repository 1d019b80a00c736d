# dlqctl(8) completion for bash: commands, each command's options, and the
# values that are known without the broker (files, error classes, and the
# error codes of the taxonomy that the config in effect names).
#
# bash-completion loads this file from its completions directory when
# "dlqctl" is first completed; without bash-completion, source it by hand.
# The option lists follow src/dlqctl/main.c and ctlopts.c (which options a
# command accepts); tests/completion/test-completion.bash fails when a
# command or option of `dlqctl --help` is missing here.

# Sets _dlqctl_taxonomy to the taxonomy file that the config $1 names, read
# the way src/common/ini.c reads it: [retry] taxonomy, blanks around names,
# an inline comment after a blank, a "quoted" value with \" and \\ escapes,
# a relative path relative to the config's directory. Pure bash: completion
# must not need jq, python or even the broker.
_dlqctl_taxonomy_of()
{
    local conf=$1 line section="" key value out c i
    _dlqctl_taxonomy=/etc/dlqd/taxonomy.json
    [[ -f $conf && -r $conf ]] || return 0
    while IFS= read -r line || [[ -n $line ]]; do
        line=${line%$'\r'}
        line=${line#"${line%%[!$' \t']*}"}
        case $line in
            '' | [';#']*) continue ;;
            '['*)
                section=${line#\[}
                section=${section%%]*}
                section=${section#"${section%%[!$' \t']*}"}
                section=${section%"${section##*[!$' \t']}"}
                continue
                ;;
        esac
        [[ $section == retry && $line == *=* ]] || continue
        key=${line%%=*}
        key=${key%"${key##*[!$' \t']}"}
        [[ $key == taxonomy ]] || continue
        value=${line#*=}
        value=${value#"${value%%[!$' \t']*}"}
        if [[ $value == \"* ]]; then
            out=""
            for ((i = 1; i < ${#value}; i++)); do
                c=${value:i:1}
                [[ $c == \" ]] && break
                if [[ $c == \\ && ${value:i+1:1} == [\"\\] ]]; then
                    ((i++))
                    c=${value:i:1}
                fi
                out+=$c
            done
            value=$out
        else
            value=${value%%[$' \t'][;#]*}
            value=${value%"${value##*[!$' \t']}"}
        fi
        # An empty value is a config error; dlqctl would refuse the file.
        [[ -n $value ]] || continue
        [[ $value == /* || $conf != */* ]] || value=${conf%/*}/$value
        _dlqctl_taxonomy=$value
    done <"$conf"
}

# Sets _dlqctl_codes to the error codes of taxonomy file $1 (every
# "error_code": "..." of its rules and default) and the codes dlqd itself
# gives (include/common/taxonomy.h). A handler may report codes of its own
# that no file lists: those are typed, not completed.
_dlqctl_codes_of()
{
    local text="" re='"error_code"[[:space:]]*:[[:space:]]*"([A-Z0-9_]+)"'
    _dlqctl_codes=" INVALID_ENVELOPE MESSAGE_TOO_LARGE POISON_MESSAGE RETRY_EXHAUSTED "
    [[ -f $1 && -r $1 ]] && text=$(<"$1")
    while [[ $text =~ $re ]]; do
        [[ $_dlqctl_codes == *" ${BASH_REMATCH[1]} "* ]] ||
            _dlqctl_codes+="${BASH_REMATCH[1]} "
        text=${text#*"${BASH_REMATCH[0]}"}
    done
}

# Completes one value of a comma-separated list ($cur) from the words $1.
_dlqctl_list()
{
    local head="" last=$cur
    if [[ $cur == *,* ]]; then
        head=${cur%,*},
        last=${cur##*,}
    fi
    mapfile -t COMPREPLY < <(compgen -P "$head" -W "$1" -- "$last")
}

_dlqctl_files()
{
    if declare -F _filedir >/dev/null; then
        _filedir
    else
        compopt -o filenames 2>/dev/null
        mapfile -t COMPREPLY < <(compgen -f -- "$cur")
    fi
}

_dlqctl()
{
    local cur prev words cword split=false
    if declare -F _init_completion >/dev/null; then
        _init_completion -s || return
    else
        # Without bash-completion: join "--opt" "=" "value", which bash
        # splits at COMP_WORDBREAKS, back into one word as it would.
        local i w
        words=()
        for ((i = 0; i < ${#COMP_WORDS[@]}; i++)); do
            w=${COMP_WORDS[i]}
            if ((${#words[@]})) && { [[ $w == = && ${words[-1]} == --* ]] ||
                [[ ${words[-1]} == --*= ]]; }; then
                words[-1]+=$w
            else
                words+=("$w")
            fi
            ((i == COMP_CWORD)) && cword=$((${#words[@]} - 1))
        done
        cur=${words[cword]}
        prev=${words[cword - 1]}
        COMPREPLY=()
        if [[ $cur == --?*=* ]]; then
            prev=${cur%%=*}
            cur=${cur#*=}
            split=true
        fi
    fi

    local with_arg=" -c --config --rate --limit --archive --max-duration --error-code --error-class --message-id --schema-version --older-than --newer-than "
    local filters=" --error-code --error-class --message-id --schema-version --older-than --newer-than "
    local cmd="" operand=false conf=/etc/dlqd/dlqd.conf seen=" " i w

    # The config, anywhere on the line; the command and the options already
    # given, before the cursor.
    for ((i = 1; i < ${#words[@]}; i++)); do
        ((i == cword)) && continue
        w=${words[i]}
        case $w in
            -c | --config)
                ((i + 1 < ${#words[@]})) && conf=${words[i + 1]}
                w=--config
                ;;
            --config=*) conf=${w#--config=} ;;
            -c?*)
                # -cPATH: counted below as --config given, no value follows.
                conf=${w#-c}
                w=--config=
                ;;
        esac
        ((i < cword)) || continue
        if [[ $with_arg == *" $w "* ]]; then
            seen+="$w "
            ((i++))
        elif [[ $w == -* ]]; then
            seen+="${w%%=*} "
        elif [[ -z $cmd ]]; then
            cmd=$w
        else
            operand=true
        fi
    done
    [[ $conf == \~/* ]] && conf=$HOME/${conf#\~/}

    case $prev in
        -c | --config | --archive)
            _dlqctl_files
            return
            ;;
        --error-class)
            _dlqctl_list "TRANSIENT PERSISTENT NON_RETRYABLE"
            return
            ;;
        --error-code)
            local _dlqctl_taxonomy _dlqctl_codes
            _dlqctl_taxonomy_of "$conf"
            _dlqctl_codes_of "$_dlqctl_taxonomy"
            _dlqctl_list "$_dlqctl_codes"
            return
            ;;
        --schema-version)
            # Real versions are whatever producers send; "none" is dlqctl's.
            _dlqctl_list "none"
            return
            ;;
    esac
    # Numbers, durations and message ids are not completed.
    [[ $with_arg == *" $prev "* ]] && return
    $split && return

    local opts=" --config --json --max-duration --help --version"
    case $cmd in
        stats) opts+=$filters ;;
        list) opts+="$filters--limit" ;;
        show) ;;
        replay) opts+="$filters--all --rate --limit --dry-run --force" ;;
        purge) opts+="$filters--all --yes --archive --limit --dry-run" ;;
        "") ;;
        *) return ;; # not a command: dlqctl will say so
    esac

    if [[ -z $cmd && $cur != -* ]]; then
        mapfile -t COMPREPLY < <(compgen -W "stats list show replay purge" -- "$cur")
    elif [[ $cur == -* || $cmd != show ]] || $operand; then
        # Filters may repeat; every other option counts once. show's
        # MESSAGE_ID would need the broker: it is not completed.
        local o offer=""
        for o in $opts; do
            [[ $filters == *" $o "* || $seen != *" $o "* ]] && offer+="$o "
        done
        mapfile -t COMPREPLY < <(compgen -W "$offer" -- "$cur")
    fi
} &&
    complete -F _dlqctl dlqctl
