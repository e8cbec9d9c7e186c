#!/bin/sh
# Entry point of the rpgrealtime image: check the configuration, then run the command (daphne by
# default, or e.g. `python manage.py migrate`). A setting that does not parse, is out of range or
# is dangerous in production stops the container here with a message naming the variable
# (docs/operations.md, Configuration), instead of failing later on a client's connection.
# Warnings are printed and do not stop it. RPGREALTIME_SKIP_CHECK=1 skips the check (one-off
# debugging only).
set -e
if [ "${RPGREALTIME_SKIP_CHECK:-0}" != "1" ]; then
  python manage.py check --deploy
fi
exec "$@"
