#!/bin/sh
# warren-run MAP PROGRAM [ARGS...]: puts each secret MAP names into the environment, then
# runs PROGRAM. Rendered by deploy/terraform/modules/topology. A MAP line is
#   ENV_NAME=credential:NAME   the file systemd loaded with LoadCredential=NAME:PATH, or
#   ENV_NAME=sm:ID             what "$WARREN_SECRET_FETCH ID" prints (a secret manager).
# Values go to the environment only: never to argv, never to a log.
set -eu
map=$1
shift
while IFS= read -r line || [ -n "$line" ]; do
  case $line in '' | '#'*) continue ;; esac
  name=${line%%=*}
  ref=${line#*=}
  case $ref in
    credential:*) value=$(cat "${CREDENTIALS_DIRECTORY:?no credentials: the unit needs LoadCredential=}/${ref#credential:}") ;;
    sm:*) value=$("${WARREN_SECRET_FETCH:?WARREN_SECRET_FETCH is not set}" "${ref#sm:}") ;;
    *) echo "warren-run: $name: unknown kind of secret reference" >&2; exit 1 ;;
  esac
  export "$name=$value"
done <"$map"
exec "$@"
