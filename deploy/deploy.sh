#!/bin/sh
# Install analytics on this host: a venv under PREFIX, the checkout pip-installed into it,
# the init script (/etc/init.d/analytics) and the systemd unit, and the var/ directory (runtime data; var/run: pid and log files),
# and an `analytics` system user when run as root. Idempotent: running it again upgrades
# the package and leaves existing configuration alone.
#
#   deploy/deploy.sh [--prefix /opt/analytics] [--config FILE] [--python python3] [--dry-run]
#
# --config FILE   copied to PREFIX/analytics.toml (only if that does not exist yet; an
#                 existing one is never overwritten); the services use ANALYTICS_CONFIG=that.
# --dry-run       print every command instead of running it.
set -eu

PREFIX=/opt/analytics
CONFIG=""
PYTHON=python3
DRY_RUN=0
SRC=$(cd "$(dirname "$0")/.." && pwd)
DESTDIR=${DESTDIR:-}   # staging root for packaging (tests); empty on a real host

usage() { sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-0}"; }

while [ $# -gt 0 ]; do
    case "$1" in
        --prefix) PREFIX=$2; shift 2 ;;
        --prefix=*) PREFIX=${1#*=}; shift ;;
        --config) CONFIG=$2; shift 2 ;;
        --config=*) CONFIG=${1#*=}; shift ;;
        --python) PYTHON=$2; shift 2 ;;
        --dry-run|-n) DRY_RUN=1; shift ;;
        -h|--help) usage 0 ;;
        *) echo "deploy.sh: unknown argument $1" >&2; usage 2 ;;
    esac
done

case "$PREFIX" in /*) ;; *) echo "deploy.sh: --prefix must be an absolute path, not $PREFIX" >&2; exit 2 ;; esac
if [ -n "$CONFIG" ] && [ ! -f "$CONFIG" ]; then
    echo "deploy.sh: configuration file $CONFIG does not exist" >&2; exit 2
fi

run() {
    if [ "$DRY_RUN" = 1 ]; then echo "+ $*"; else "$@"; fi
}

AS_ROOT=0
[ "$(id -u)" = 0 ] && AS_ROOT=1
VENV=$PREFIX/venv
CONF_DEST=$PREFIX/analytics.toml

echo "deploy: $SRC -> $DESTDIR$PREFIX (venv $VENV, config $CONF_DEST)"

# 1. the service user (root only)
if [ "$AS_ROOT" = 1 ] && ! id analytics >/dev/null 2>&1; then
    run useradd --system --home-dir "$PREFIX" --no-create-home --shell /usr/sbin/nologin analytics
fi

# 2. directories: var/ (disk logs, offsets, SQLite store) and var/run/ (pid and log files)
run mkdir -p "$DESTDIR$PREFIX" "$DESTDIR$PREFIX/var" "$DESTDIR$PREFIX/var/run"

# 3. the venv and the package (re-running upgrades it in place)
if [ ! -x "$DESTDIR$VENV/bin/python" ]; then
    run "$PYTHON" -m venv "$DESTDIR$VENV"
fi
run "$DESTDIR$VENV/bin/pip" install --quiet --upgrade pip
run "$DESTDIR$VENV/bin/pip" install --quiet --upgrade "$SRC"

# 4. configuration: installed once, never overwritten
if [ -n "$CONFIG" ]; then
    if [ -e "$DESTDIR$CONF_DEST" ]; then
        echo "deploy: $CONF_DEST exists; leaving it alone (compare with $CONFIG)"
    else
        run install -m 0644 "$CONFIG" "$DESTDIR$CONF_DEST"
    fi
fi

# 5. init script and systemd unit, with this prefix filled in
render() {  # render SRC DEST MODE
    if [ "$DRY_RUN" = 1 ]; then
        echo "+ sed s|/opt/analytics|$PREFIX|g $1 > $DESTDIR$2 (mode $3)"
    else
        mkdir -p "$(dirname "$DESTDIR$2")"
        sed "s|/opt/analytics|$PREFIX|g" "$1" > "$DESTDIR$2.tmp"
        chmod "$3" "$DESTDIR$2.tmp"
        mv "$DESTDIR$2.tmp" "$DESTDIR$2"
    fi
}
render "$SRC/deploy/analytics.init" /etc/init.d/analytics 0755
render "$SRC/deploy/analytics.service" /etc/systemd/system/analytics.service 0644
if [ "$AS_ROOT" = 1 ] && [ -z "$DESTDIR" ]; then
    run chown -R analytics:analytics "$PREFIX/var"
    if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
        run systemctl daemon-reload
        run systemctl enable analytics.service
    elif command -v update-rc.d >/dev/null 2>&1; then
        run update-rc.d analytics defaults
    fi
fi

echo "deploy: done. Start with 'service analytics start' (or 'systemctl start analytics'),"
echo "        check with 'service analytics status'; logs in $PREFIX/var/run/<name>.log."
