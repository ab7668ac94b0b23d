#!/bin/bash
# Entrypoint of the PostgreSQL stand-in (docker/bases/postgres): the official image's contract as
# far as docker/compose.yml uses it. On an empty PGDATA: initdb (UTF8, C.UTF-8) with
# POSTGRES_USER as superuser and POSTGRES_PASSWORD as its password, POSTGRES_DB created, then the
# *.sql (psql, ON_ERROR_STOP) and *.sh files of /docker-entrypoint-initdb.d in name order, with
# the server on its socket only. Then the server replaces this script (exec), on every address and
# on PGPORT (default 5432). TCP needs the password (scram-sha-256); the socket admits the OS user
# postgres as POSTGRES_USER (peer). Values of the environment are data: never evaluated.
set -Eeuo pipefail

fail() {
    echo "postgres entrypoint: $*" >&2
    exit 1
}

initialise() {
    local user=${POSTGRES_USER:-postgres}
    local db=${POSTGRES_DB:-$user}
    [[ -n ${POSTGRES_PASSWORD:-} ]] || fail "POSTGRES_PASSWORD is not set (or empty)"
    [[ $user =~ ^[A-Za-z_][A-Za-z0-9_]{0,62}$ ]] \
        || fail "POSTGRES_USER must be a plain SQL name (letters, digits, _), not '$user'"
    [[ $POSTGRES_PASSWORD != *$'\n'* ]] || fail "POSTGRES_PASSWORD holds a line break"
    [[ -w $PGDATA ]] || fail "$PGDATA is not writable by $(id -un) (uid $(id -u))"
    chmod 700 "$PGDATA"

    initdb --pgdata="$PGDATA" --username="$user" \
        --pwfile=<(printf '%s\n' "$POSTGRES_PASSWORD") \
        --encoding=UTF8 --locale=C.UTF-8 --auth-local=peer --auth-host=scram-sha-256
    printf '%s\n' \
        "# Written by the stand-in's entrypoint: the socket admits the OS user postgres as the" \
        "# superuser (peer, map superuser in pg_ident.conf); TCP from anywhere needs a password." \
        "local all all peer map=superuser" \
        "host all all all scram-sha-256" >"$PGDATA/pg_hba.conf"
    printf 'superuser postgres %s\n' "$user" >>"$PGDATA/pg_ident.conf"
    printf "listen_addresses = '*'\n" >>"$PGDATA/postgresql.conf"

    pg_ctl --pgdata="$PGDATA" --wait --options="-c listen_addresses=''" start
    local psql=(psql --no-psqlrc --set=ON_ERROR_STOP=1 --username="$user")
    if [[ $db != postgres ]]; then
        "${psql[@]}" --dbname=postgres --set=db="$db" <<<'CREATE DATABASE :"db";'
    fi
    local file
    for file in /docker-entrypoint-initdb.d/*; do
        [[ -e $file ]] || continue
        case $file in
        *.sql)
            echo "postgres entrypoint: running $file"
            "${psql[@]}" --dbname="$db" --file="$file"
            ;;
        *.sh)
            echo "postgres entrypoint: running $file"
            if [[ -x $file ]]; then
                POSTGRES_USER=$user POSTGRES_DB=$db "$file"
            else
                # shellcheck disable=SC1090 # the official image sources non-executable scripts
                POSTGRES_USER=$user POSTGRES_DB=$db . "$file"
            fi
            ;;
        *) echo "postgres entrypoint: ignoring $file" ;;
        esac
    done
    pg_ctl --pgdata="$PGDATA" --wait --mode=fast stop
    echo "postgres entrypoint: initialised $PGDATA"
}

if [[ ${1:-} == postgres ]]; then
    [[ ${PGPORT:-5432} =~ ^[0-9]{1,5}$ ]] || fail "PGPORT must be a port number, not '${PGPORT}'"
    : "${PGDATA:?PGDATA is not set}"
    if [[ ! -s $PGDATA/PG_VERSION ]]; then
        initialise
    fi
fi
exec "$@"
