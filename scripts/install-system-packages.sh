#!/usr/bin/env bash
# Install the Debian packages the stack and the tests run, where they are missing.
# Safe to run again: packages already installed are left alone and apt is not called.
set -euo pipefail

packages=(
  postgresql-15 postgresql-contrib postgresql-15-hypopg
  pgbouncer redis-server redis-tools nginx
  wrk hey python3 python3-venv busybox-static curl procps iproute2
)

missing=()
for package in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$package")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "system packages: all present"
  exit 0
fi

sudo=()
if [ "$(id -u)" -ne 0 ]; then
  sudo=(sudo)
fi
echo "system packages: installing ${missing[*]}"
"${sudo[@]}" apt-get update -qq
# Installing the server packages must not start system-wide copies of the services
# (nginx's default site on port 80 of every address, a system PostgreSQL, Redis and
# PgBouncer): every environment runs its own, under its own supervisor. Package scripts
# ask /usr/sbin/policy-rc.d before they start a service, under systemd too; one that
# answers 101 ("not allowed") is in place for the install, unless the machine has one.
policy=/usr/sbin/policy-rc.d
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' | "${sudo[@]}" tee "$policy" >/dev/null
  "${sudo[@]}" chmod 755 "$policy"
  trap '"${sudo[@]}" rm -f "$policy"' EXIT
fi
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive RUNLEVEL=1 \
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
