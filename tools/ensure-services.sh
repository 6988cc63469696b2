#!/usr/bin/env bash
# Start the local test servers (Redis, PostgreSQL, MariaDB) that are installed but stopped.
# Servers that are not installed are left to the tests, which fail under
# FLOWRRA_REQUIRE_SERVICES=1 when they need one.
set -u

up() { timeout 3 bash -c "</dev/tcp/127.0.0.1/$1" 2>/dev/null; }

if ! up 6379 && command -v redis-server >/dev/null; then
  echo "starting redis"
  mkdir -p /var/lib/redis /var/log/redis 2>/dev/null
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log || true
fi
if ! up 5432 && command -v pg_ctlcluster >/dev/null && [ -d /etc/postgresql ]; then
  echo "starting postgresql"
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
fi
if ! up 3306 && [ -x /usr/sbin/mariadbd ]; then
  echo "starting mariadb"
  start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd || true
fi
exit 0
