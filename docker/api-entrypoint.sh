#!/bin/sh
# Entry point of the api image (the control plane), so that its first run on an empty /data
# volume serves at once:
#
#   docker run -d --name simplypng-api -v simplypng-data:/data -p 127.0.0.1:8080:8080 IMAGE
#
# Before an api_stub command that needs them it
#  1. settles CALLBACK_MASTER_KEY, the secret that every per-job callback key (and the local
#     storage's URL signing key) is derived from (serve, dispatcher, reconciler only):
#     - CALLBACK_MASTER_KEY set: used as given;
#     - else CALLBACK_MASTER_KEY_FILE set: read from that file (a Docker or Kubernetes secret);
#     - else, with a SQLite DATABASE_URL (the image's default, sqlite:////data/simplypng.db):
#       read from `callback_master_key` beside the database, which the first start creates
#       (random, mode 0600, never printed). Every process using that database shares its
#       folder, so they all get the same key; back the file up with the database.
#     - else (Postgres): refuse to start. Processes of one database may then run on different
#       hosts, and a key generated into each one's volume would silently split them (callbacks
#       signed with one key, checked with another).
#  2. applies pending migrations (`python -m api_stub migrate`: idempotent, and serialised
#     between processes), so a fresh database is created and an upgraded image migrates its
#     database (serve, dispatcher, reconciler, create-user, grant). MIGRATE_ON_START=0 skips
#     this, for deployments that migrate in a separate job with more privileged credentials.
# and then execs the command, so that it is PID 1 and gets the container's signals.
#
# A bare api_stub command (`serve`, `dispatcher`, `create-user --credits 5`, ...) means
# `python -m api_stub <command>`; any other command (`sh`, ...) runs untouched.
set -eu

die() {
    echo "api-entrypoint: $*" >&2
    exit 2
}

case "${1:-}" in
    migrate | create-user | grant | serve | dispatcher | reconciler | gen-secret | openapi)
        set -- python -m api_stub "$@"
        ;;
esac

subcommand=""
if [ "$#" -ge 4 ] && [ "$2" = "-m" ] && [ "$3" = "api_stub" ]; then
    case "$1" in
        python | python3 | */python | */python3) subcommand="$4" ;;
    esac
fi
case "$subcommand" in
    serve | dispatcher | reconciler) needs_key=1 needs_schema=1 ;;
    create-user | grant) needs_key=0 needs_schema=1 ;;
    *) exec "$@" ;;
esac

database_url="${DATABASE_URL:-sqlite:///./simplypng.db}"
sqlite_path=""
case "$database_url" in
    sqlite:///*) sqlite_path="${database_url#sqlite:///}" ;;
esac
[ "$sqlite_path" = ":memory:" ] && sqlite_path=""
data_dir=""
[ -n "$sqlite_path" ] && data_dir="$(dirname -- "$sqlite_path")"

# Mode bits for group and others of `$1` ("------" when only the owner may read it).
# shellcheck disable=SC2012 # one file we name ourselves: ls -ln's mode column is all we read
others_bits() {
    ls -ln -- "$1" | cut -c5-10
}

load_key() {
    if [ -n "${CALLBACK_MASTER_KEY:-}" ]; then
        return 0
    fi
    if [ -n "${CALLBACK_MASTER_KEY_FILE:-}" ]; then
        [ -f "$CALLBACK_MASTER_KEY_FILE" ] && [ -r "$CALLBACK_MASTER_KEY_FILE" ] ||
            die "CALLBACK_MASTER_KEY_FILE=$CALLBACK_MASTER_KEY_FILE is not a readable file"
        key_file="$CALLBACK_MASTER_KEY_FILE"
    elif [ -n "$data_dir" ]; then
        key_file="$data_dir/callback_master_key"
        if [ ! -e "$key_file" ]; then
            [ -d "$data_dir" ] && [ -w "$data_dir" ] ||
                die "$data_dir is not a folder writable by uid $(id -u): cannot create" \
                    "$key_file beside the database; mount a volume there that this user may write"
            tmp="$key_file.new.$$"
            (umask 077 && python -c 'import secrets; print(secrets.token_urlsafe(48))' >"$tmp")
            # ln refuses an existing name: when processes start together, the first one wins
            # and the others read its key.
            if ln -- "$tmp" "$key_file" 2>/dev/null; then
                echo "api-entrypoint: generated CALLBACK_MASTER_KEY into $key_file (mode 0600," \
                    "not printed); back it up with the database" >&2
            elif [ ! -e "$key_file" ]; then
                mv -- "$tmp" "$key_file" # a file system without hard links
            fi
            rm -f -- "$tmp"
        fi
        [ "$(others_bits "$key_file")" = "------" ] ||
            die "$key_file is readable by other users: chmod 600 it (and rotate the key" \
                "if it may have leaked)"
    else
        die "CALLBACK_MASTER_KEY is required when DATABASE_URL is not a SQLite file: set it" \
            "(or CALLBACK_MASTER_KEY_FILE) to the same secret for every api, dispatcher and" \
            "reconciler process; \`python -m api_stub gen-secret\` makes one"
    fi
    CALLBACK_MASTER_KEY="$(cat -- "$key_file")" || die "cannot read $key_file"
    [ "${#CALLBACK_MASTER_KEY}" -ge 32 ] ||
        die "$key_file holds fewer than the 32 characters CALLBACK_MASTER_KEY needs"
    export CALLBACK_MASTER_KEY
}

if [ "$needs_key" = 1 ]; then
    load_key
fi

case "${MIGRATE_ON_START:-1}" in
    1)
        if [ "$needs_schema" = 1 ]; then
            if [ -n "$data_dir" ] && [ ! -e "$sqlite_path" ]; then
                [ -d "$data_dir" ] && [ -w "$data_dir" ] ||
                    die "$data_dir is not a folder writable by uid $(id -u): cannot create" \
                        "the database $sqlite_path; mount a volume there that this user may write"
            fi
            "$1" -m api_stub migrate
        fi
        ;;
    0) ;;
    *) die "MIGRATE_ON_START must be 1 (migrate before starting, the default) or 0" ;;
esac

exec "$@"
