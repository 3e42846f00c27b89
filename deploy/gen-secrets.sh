#!/bin/sh
# Create the two docker secrets compose.yaml expects, sharing one random Redis password:
#   secrets/redis_auth.conf  "requirepass <pw>"                 read by redis (uid 999)
#   secrets/redis_url        "redis://:<pw>@redis:6379/0"       read by the relay (uid 10001)
# Without swarm, docker bind-mounts these files with the host's owner and mode, hence the
# chown (run as root) - or chmod 0444 on a single-user host if you cannot chown.
set -eu
cd "$(dirname "$0")"
umask 077
mkdir -p secrets
if [ -e secrets/redis_auth.conf ] || [ -e secrets/redis_url ]; then
    echo "secrets/ already populated; remove the files to regenerate" >&2
    exit 1
fi
pw=$(python3 -c 'import secrets; print(secrets.token_urlsafe(32))')
printf 'requirepass %s\n' "$pw" > secrets/redis_auth.conf
printf 'redis://:%s@redis:6379/0\n' "$pw" > secrets/redis_url
chmod 0400 secrets/redis_auth.conf secrets/redis_url
if [ "$(id -u)" = 0 ]; then
    chown 999:999 secrets/redis_auth.conf
    chown 10001:10001 secrets/redis_url
else
    echo "not root: chown secrets/redis_auth.conf to 999 and secrets/redis_url to 10001" >&2
fi
echo "wrote secrets/redis_auth.conf and secrets/redis_url"
