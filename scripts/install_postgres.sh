#!/usr/bin/env bash
# PostgreSQL 15 with plpython3u and pgvector, for the tests (Debian 12, as root).
#
#   ./scripts/install_postgres.sh        # idempotent: a second run only checks
#
# pgvector is not packaged for bookworm, so it is built from Debian's own
# source package (trixie's) against this machine's pg_config. Prints the
# PostgreSQL bin directory on its last line. Exits non-zero when something is
# missing and it cannot install it (not root), saying what to do.
set -euo pipefail

PG_MAJOR=${VECPLUG_PG_MAJOR:-15}
PG_BIN=/usr/lib/postgresql/$PG_MAJOR/bin
PG_CONFIG=$PG_BIN/pg_config
APT="apt-get -o DPkg::Lock::Timeout=600 -y -q"

installed() {
    [ -x "$PG_BIN/postgres" ] && [ -x "$PG_CONFIG" ] \
        && [ -f "$("$PG_CONFIG" --pkglibdir)/plpython3.so" ] \
        && [ -f "$("$PG_CONFIG" --pkglibdir)/vector.so" ] \
        && [ -f "$("$PG_CONFIG" --sharedir)/extension/vector.control" ]
}

if installed; then
    echo "$PG_BIN"
    exit 0
fi

if [ "$(id -u)" != 0 ]; then
    echo "install_postgres.sh: PostgreSQL $PG_MAJOR with plpython3u and pgvector is not installed," >&2
    echo "and installing it needs root: run 'sudo $0' once." >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive
echo "installing PostgreSQL $PG_MAJOR, plpython3u and the pgvector build tools ..." >&2
$APT update >/dev/null
$APT install --no-install-recommends "postgresql-$PG_MAJOR" "postgresql-plpython3-$PG_MAJOR" \
    "postgresql-server-dev-$PG_MAJOR" build-essential dpkg-dev >/dev/null

if [ ! -f "$("$PG_CONFIG" --pkglibdir)/vector.so" ]; then
    # A deb-src entry for trixie on the mirror this machine already uses.
    mirror=$(cat /etc/apt/sources.list.d/*.sources /etc/apt/sources.list 2>/dev/null \
             | awk '/^URIs:/ && !/security/ {print $2; exit} /^deb / && !/security/ {for (i = 2; i <= NF; i++) if ($i ~ /^https?:/) {print $i; exit}}' \
             || true)
    mirror=${mirror:-http://deb.debian.org/debian}
    sources=/etc/apt/sources.list.d/vecplug-pgvector-src.sources
    cat >"$sources" <<EOF
# Added by vecplug's scripts/install_postgres.sh: pgvector's Debian source package.
Types: deb-src
URIs: $mirror
Suites: trixie
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
    $APT update -o APT::Get::List-Cleanup=0 -o Dir::Etc::sourcelist=/dev/null -o Dir::Etc::sourceparts=/dev/null \
        -o Dir::Etc::sourcelist="$sources" >/dev/null
    build=$(mktemp -d /tmp/vecplug-pgvector-build.XXXXXX)
    (
        cd "$build"
        apt-get source --download-only pgvector >/dev/null 2>&1 || apt-get source pgvector >/dev/null
        dpkg-source -x --no-check ./*.dsc src >/dev/null
        cd src
        # OPTFLAGS="": no -march=native, the build runs anywhere (as Debian builds it).
        make -s PG_CONFIG="$PG_CONFIG" OPTFLAGS="" -j"$(nproc)" >/dev/null
        make -s PG_CONFIG="$PG_CONFIG" install >/dev/null
    )
    rm -rf "$build"
fi

if ! installed; then
    echo "install_postgres.sh: PostgreSQL, plpython3u or pgvector is still missing after installing" >&2
    exit 1
fi
echo "$PG_BIN"
