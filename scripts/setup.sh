#!/usr/bin/env bash
# Idempotent set-up: Debian packages (as root or with sudo), a venv, the package with its dev extras.
# Says plainly what it could not do; exits non-zero only when the venv or the package could not be made.
set -uo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(softhsm2 opencryptoki opensc pcscd libpcsclite-dev vsmartcard-vpcd oathtool p11-kit gcc python3-dev python3-venv postgresql postgresql-client poppler-utils systemd curl strace)  # strace: the store's durability test counts syncs
APT_NO_RECOMMENDS=(pcsc-tools zbar-tools freeradius-utils)  # freeradius-utils: radclient, the RADIUS tests' independent client
VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}
problems=()

missing_packages() {
    local pkg
    for pkg in "$@"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || echo "$pkg"
    done
}

apt_install() {  # apt_install [apt options] -- packages
    local runner=()
    if [ "$(id -u)" -ne 0 ]; then
        if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then runner=(sudo -n); else return 1; fi
    fi
    export DEBIAN_FRONTEND=noninteractive
    if [ ! -f .setup-apt-updated ] || [ -n "$(find .setup-apt-updated -mmin +600 2>/dev/null)" ]; then
        "${runner[@]}" apt-get -o DPkg::Lock::Timeout=600 update -qq && touch .setup-apt-updated
    fi
    "${runner[@]}" apt-get -o DPkg::Lock::Timeout=600 install -y -qq "$@"
}

if command -v dpkg-query >/dev/null; then
    mapfile -t need < <(missing_packages "${APT_PACKAGES[@]}")
    mapfile -t need_nr < <(missing_packages "${APT_NO_RECOMMENDS[@]}")
    if [ ${#need[@]} -gt 0 ]; then
        echo "setup: installing Debian packages: ${need[*]}"
        apt_install "${need[@]}" >/dev/null || problems+=("could not install Debian packages (${need[*]}): run as root or with sudo: apt-get install ${need[*]}")
    fi
    if [ ${#need_nr[@]} -gt 0 ]; then
        echo "setup: installing Debian packages (no recommends): ${need_nr[*]}"
        apt_install --no-install-recommends "${need_nr[@]}" >/dev/null || problems+=("could not install ${need_nr[*]}: apt-get install --no-install-recommends ${need_nr[*]}")
    fi
    rm -f .setup-apt-updated
else
    problems+=("not a Debian/Ubuntu system: install SoftHSM2, pcscd with vpcd, OpenSC, oathtool and the PC/SC headers by hand")
fi

# The stamp lives inside the venv, so a new venv (the old one deleted, or VENV pointed
# elsewhere) always gets the package; the import check catches a venv whose packages were
# removed under an old stamp. -I: the import must not find ./otphsm through the current
# directory.
STAMP="$VENV/.otphsm-setup-stamp"
if [ -f .setup-stamp ]; then  # where older versions kept it: move it into an existing venv
    if [ -x "$VENV/bin/python" ] && [ ! -f "$STAMP" ]; then mv .setup-stamp "$STAMP"; else rm -f .setup-stamp; fi
fi

installed() {
    [ -f "$STAMP" ] && [ ! pyproject.toml -nt "$STAMP" ] \
        && "$VENV/bin/python" -I -c 'import otphsm, pytest' >/dev/null 2>&1
}

if [ ! -x "$VENV/bin/python" ]; then
    echo "setup: creating $VENV"
    "$PYTHON" -m venv "$VENV" || { echo "setup: FAILED to create the venv with $PYTHON" >&2; exit 1; }
fi
if ! installed; then
    echo "setup: installing otphsm and its dev extras into $VENV"
    "$VENV/bin/python" -m pip install -q --upgrade pip >/dev/null
    # setuptools' editable install prints an information box ("be careful with folders named
    # like the package") as a UserWarning: not ours to act on, so not shown
    if ! PYTHONWARNINGS=ignore::UserWarning "$VENV/bin/python" -m pip install -q -e '.[all,dev]'; then
        echo "setup: FAILED to install the package (pyscard needs gcc, python3-dev and libpcsclite-dev)" >&2
        exit 1
    fi
    touch "$STAMP"
fi

# PostgreSQL serves the replica tests. Start a local cluster that is installed but stopped.
PG_HOST=${OTPHSM_PG_HOST:-127.0.0.1}
if command -v pg_isready >/dev/null && ! pg_isready -q -h "$PG_HOST" -t 2; then
    if [ "$(id -u)" -eq 0 ] && command -v pg_ctlcluster >/dev/null && [ -d /etc/postgresql ]; then
        echo "setup: starting the local PostgreSQL cluster"
        pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
    fi
fi
if ! command -v pg_isready >/dev/null || ! pg_isready -q -h "$PG_HOST" -t 2; then
    problems+=("PostgreSQL is not reachable on $PG_HOST:5432: the PostgreSQL tests will skip (and fail in CI); set OTPHSM_TEST_PG_DSN to point at one")
fi

# The container tools, only for the deployment targets and tests (make image, test-deploy, …:
# OTPHSM_DEPLOY_TOOLS=1): podman with debootstrap (the local base image) and runc (crun fails
# on cgroups in hybrid mode), and podman-compose 1.6 from PyPI in the venv (Debian's 1.0.3
# ignores stop_grace_period and the depends_on conditions).
if [ "${OTPHSM_DEPLOY_TOOLS:-}" = 1 ]; then
    mapfile -t need < <(missing_packages podman debootstrap runc)
    if [ ${#need[@]} -gt 0 ]; then
        echo "setup: installing Debian packages: ${need[*]}"
        apt_install "${need[@]}" >/dev/null || problems+=("could not install ${need[*]}: apt-get install ${need[*]}")
        rm -f .setup-apt-updated
    fi
    if [ ! -x "$VENV/bin/podman-compose" ]; then
        echo "setup: installing podman-compose into $VENV"
        "$VENV/bin/python" -m pip install -q 'podman-compose>=1.6,<2' || problems+=("could not install podman-compose: pip install 'podman-compose>=1.6'")
    fi
fi

for tool in softhsm2-util pcscd opensc-tool pkcs15-tool pkcs11-tool oathtool zbarimg; do
    command -v "$tool" >/dev/null || [ -x "/usr/sbin/$tool" ] || problems+=("$tool is not installed: the tests that need it will skip (and fail in CI)")
done
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || problems+=("PostgreSQL's server programs (initdb, pg_ctl) are missing: the crash-and-restart test will skip (and fail in CI)")
[ -f /usr/lib/softhsm/libsofthsm2.so ] || problems+=("/usr/lib/softhsm/libsofthsm2.so is missing (package softhsm2)")
command -v radclient >/dev/null || problems+=("radclient is missing (package freeradius-utils): the RADIUS tests will fail")

if [ ${#problems[@]} -gt 0 ]; then
    echo "setup: done, with problems:"
    for p in "${problems[@]}"; do echo "  - $p"; done
else
    echo "setup: ready ($VENV, SoftHSM2, pcscd+vpcd, OpenSC, oathtool)"
fi
