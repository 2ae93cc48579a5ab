#!/bin/sh
# Debian's OpenSSH server for the --host tests (real sshd processes on 127.0.0.1), and pssh
# for the remote benchmark. Installs them when missing and we are root on a system with
# apt-get; otherwise says why not, and the remote tests skip themselves with that reason.
set -u
if [ -x /usr/sbin/sshd ] && command -v parallel-ssh >/dev/null 2>&1; then
    exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "install_sshd: sshd or pssh is missing and this is not root with apt-get: remote tests will be skipped" >&2
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get install -y -q openssh-server pssh >/dev/null \
    || { apt-get update -q >/dev/null && apt-get install -y -q openssh-server pssh >/dev/null; } \
    || echo "install_sshd: apt-get could not install openssh-server: remote tests will be skipped" >&2
