#!/bin/sh
# The gateway image's entrypoint: make sure the block log can be written, then run the command
# (`rsafe serve ...`) as the unprivileged user rsafe (uid/gid 10001, RSAFE_UID/RSAFE_GID).
#
# Docker creates a missing bind-mounted folder (`./logs:/logs`) owned by root, mode 755: the
# gateway's user cannot write it, the start fails, and `restart: unless-stopped` makes that a
# crash loop. So:
#   - started as root (the image's default): create the block log's folder if needed, hand it
#     and the block-log files in it (blocks.jsonl, blocks.jsonl.1, ...) that are not the user's
#     to the user, then drop to the user with setpriv (util-linux, in every Debian image) and
#     exec the command: the gateway is PID 1 and never runs as root. Nothing else is chowned:
#     not the files of other names in the folder, not the folder `/`.
#   - started as another user (`docker run --user`, Kubernetes runAsUser): nothing can be fixed,
#     so a folder it cannot write stops the start with one message saying how to fix it,
#     before the gateway starts (exit 78, EX_CONFIG), instead of a Python traceback.
# The block log path is the command's `--block-log PATH` (or `--block-log=PATH`), else
# RSAFE_BLOCK_LOG, else logs/blocks.jsonl; `-` (JSON lines on stdout) needs no folder.
set -eu

uid="${RSAFE_UID:-10001}"
gid="${RSAFE_GID:-10001}"

fail() {
    echo "rsafe entrypoint: $*" >&2
    exit 78
}

log=""
prev=""
for arg in "$@"; do
    case "$prev" in --block-log) log="$arg" ;; esac
    case "$arg" in --block-log=*) log="${arg#--block-log=}" ;; esac
    prev="$arg"
done
[ -n "$log" ] || log="${RSAFE_BLOCK_LOG:-logs/blocks.jsonl}"

# The nearest folder that exists at or above $1 (the gateway creates the rest).
existing_dir() {
    d="$1"
    while [ ! -d "$d" ]; do d="$(dirname -- "$d")"; done
    printf '%s\n' "$d"
}

describe() {  # "owned by uid 0, mode 755"
    stat -c 'owned by uid %u, mode %a' -- "$1" 2>/dev/null || echo "unreadable"
}

# Can the user we will run as create and append to the block log?
writable() {  # $1: the folder, $2: the log file
    if [ -e "$2" ]; then
        test -w "$2" || return 1
    fi
    d="$(existing_dir "$1")"
    test -w "$d" && test -x "$d"
}

as_user() {
    setpriv --reuid="$uid" --regid="$gid" --clear-groups -- "$@"
}

# Run as the user: can it create (or append to) the log file in the folder?
can_write='test -w "$1" && test -x "$1" && { [ ! -e "$2" ] || test -w "$2"; }'

if [ "$log" != "-" ]; then
    dir="$(dirname -- "$log")"
    if [ "$(id -u)" = 0 ]; then
        mkdir -p -- "$dir" || fail "cannot create the block log folder $dir (a read-only mount?)"
        if ! as_user sh -c "$can_write" sh "$dir" "$log"; then
            [ "$(cd -- "$dir" && pwd -P)" != "/" ] \
                || fail "refusing to chown / for the block log $log: give it a folder of its own (--block-log /logs/blocks.jsonl)"
            chown -- "$uid:$gid" "$dir" 2>/dev/null || true
            for f in "$log" "$log".*; do
                if [ -e "$f" ] && [ "$(stat -c %u -- "$f")" != "$uid" ]; then
                    chown -- "$uid:$gid" "$f" 2>/dev/null || true
                fi
            done
            as_user sh -c "$can_write" sh "$dir" "$log" \
                || fail "the block log folder $dir is not writable by uid $uid and could not be handed to it" \
                        "($(describe "$dir"); a read-only mount, or a file system that refuses chown?)." \
                        "Mount a writable folder there, or log to stdout with --block-log - (RSAFE_BLOCK_LOG=-)."
        fi
    elif ! writable "$dir" "$log"; then
        d="$(existing_dir "$dir")"
        fail "uid $(id -u) cannot write the block log $log: $d is $(describe "$d")." \
             "Fix it on the host (for ./logs: sudo chown $(id -u) ./logs), or start the container as root" \
             "(the image's default: this entrypoint then hands the folder to uid $uid and drops to it)," \
             "or log to stdout with --block-log - (RSAFE_BLOCK_LOG=-)."
    fi
fi

if [ "$(id -u)" = 0 ]; then
    home="$(getent passwd "$uid" | cut -d: -f6 || true)"
    HOME="${home:-/tmp}"
    export HOME
    exec setpriv --reuid="$uid" --regid="$gid" --clear-groups -- "$@"
fi
exec "$@"
