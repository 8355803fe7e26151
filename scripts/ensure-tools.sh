#!/usr/bin/env bash
# Install the external tools the test suite needs, when they are missing. Idempotent.
#
#   promtool  (Debian package `prometheus`): `promtool check rules` / `promtool test rules`
#             on deploy/prometheus/rules, run by tests/unit/test_prometheus_rules.py.
#
# Needs root (or sudo) and apt-get. Without either it prints what to install and exits 1.
set -euo pipefail

PACKAGES=()
command -v promtool >/dev/null 2>&1 || PACKAGES+=(prometheus)
command -v amtool >/dev/null 2>&1 || PACKAGES+=(prometheus-alertmanager)
command -v chromium >/dev/null 2>&1 || PACKAGES+=(chromium)

if [ "${#PACKAGES[@]}" -eq 0 ]; then
    echo "ensure-tools: promtool, amtool and chromium present"
    exit 0
fi

if [ "$(id -u)" -eq 0 ]; then
    SUDO=()
elif command -v sudo >/dev/null 2>&1; then
    SUDO=(sudo)
else
    echo "ensure-tools: missing tools; as root run:" >&2
    echo "  apt-get update && apt-get install -y --no-install-recommends ${PACKAGES[*]}" >&2
    exit 1
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "ensure-tools: no apt-get; install promtool (Prometheus ${PACKAGES[*]}) by hand" >&2
    exit 1
fi

# The package's maintainer scripts try to start a prometheus service. In containers there is
# no init system, so forbid service starts for the duration of the install (policy-rc.d exit
# code 101 = "action not allowed"), and restore whatever policy was there before.
POLICY=/usr/sbin/policy-rc.d
BACKUP=""
if [ -e "$POLICY" ]; then
    BACKUP="$(mktemp)"
    "${SUDO[@]}" cp -p "$POLICY" "$BACKUP"
fi
restore_policy() {
    if [ -n "$BACKUP" ]; then
        "${SUDO[@]}" cp -p "$BACKUP" "$POLICY"
        rm -f "$BACKUP"
    else
        "${SUDO[@]}" rm -f "$POLICY"
    fi
}
trap restore_policy EXIT
printf '#!/bin/sh\nexit 101\n' | "${SUDO[@]}" tee "$POLICY" >/dev/null
"${SUDO[@]}" chmod 755 "$POLICY"

# Wait (bounded) for another apt/dpkg run to release its lock instead of failing at once.
LOCK_WAIT=(-o DPkg::Lock::Timeout=600)
export DEBIAN_FRONTEND=noninteractive
"${SUDO[@]}" apt-get "${LOCK_WAIT[@]}" update
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get "${LOCK_WAIT[@]}" install -y --no-install-recommends "${PACKAGES[@]}"

command -v promtool >/dev/null 2>&1 || { echo "ensure-tools: promtool still missing" >&2; exit 1; }
echo "ensure-tools: installed ${PACKAGES[*]} ($(promtool --version 2>&1 | head -n 1))"
