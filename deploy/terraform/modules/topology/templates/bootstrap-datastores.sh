#!/bin/sh
# Rendered by deploy/terraform/modules/topology for the control host: Redis on the private
# network, PostgreSQL on loopback with a role whose password is generated here and written only
# to ${database_url_file} (read by systemd's LoadCredential=, never by Terraform).
set -eu
conf=/etc/redis/redis.conf
sed -i -e 's/^bind .*/bind 127.0.0.1 ${private_ip}/' -e 's/^protected-mode .*/protected-mode no/' "$conf"
systemctl restart redis-server
if [ ! -s ${database_url_file} ]; then
  password=$(openssl rand -hex 24)
  runuser -u postgres -- psql -q -v ON_ERROR_STOP=1 \
    -c "CREATE ROLE warren LOGIN PASSWORD '$password'" \
    -c "CREATE DATABASE warren OWNER warren"
  umask 077
  mkdir -p "$(dirname ${database_url_file})"
  printf 'postgres://warren:%s@127.0.0.1:5432/warren\n' "$password" >${database_url_file}
fi
