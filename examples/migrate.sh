#!/bin/sh
# Live-migrate a stateful web container between two hosts with the ctk CLI.
# Defaults to the testbed (scripts/testbed up): h1 -> h2. Override with FROM=... TO=... ADDR=...
# Usage: examples/migrate.sh [docker|podman]
set -eu
KIND=${1:-docker}
FROM=${FROM:-$KIND+unix:///run/ctk-testbed/h1/$KIND.sock}
TO=${TO:-$KIND+unix:///run/ctk-testbed/h2/$KIND.sock}
ADDR=${ADDR:-10.77.0.12}
PORT=${PORT:-28081}
CTK=${CTK:-ctk}
NAME=ctk-example-$$

cleanup() {
    $CTK --engine "$FROM" rm -f "$NAME" >/dev/null 2>&1 || true
    $CTK --engine "$TO" rm -f "$NAME" >/dev/null 2>&1 || true
}
trap cleanup EXIT

$CTK --engine "$FROM" run -d --name "$NAME" -p "$PORT:8080" -l ctk.example=migrate ctk-demo/counter
# wait (30 s at most) until it has counted to 3: readiness, not a fixed sleep
deadline=$(($(date +%s) + 30))
until [ "$($CTK --engine "$FROM" logs "$NAME" | sed -n 's/^count=//p' | tail -n 1)" -ge 3 ] 2>/dev/null; do
    [ "$(date +%s)" -lt "$deadline" ] || { echo "$NAME did not start counting on $FROM" >&2; exit 1; }
    sleep 0.2
done
BEFORE=$($CTK --engine "$FROM" logs "$NAME" | sed -n 's/^count=//p' | tail -n 1)
echo "$NAME counted to $BEFORE on $FROM"

# one command: preflight, checkpoint, transfer, restore, verify; prints phases and downtime
$CTK --engine "$FROM" migrate "$NAME" --to "$TO" --mode live --verify "http://$ADDR:$PORT/count"

AFTER=$(curl -fsS --retry 10 --retry-connrefused --retry-delay 1 "http://$ADDR:$PORT/count")
echo "$NAME answers $AFTER on $TO"
if [ "$AFTER" -lt "$BEFORE" ]; then
    echo "FAILED: the count went back from $BEFORE to $AFTER" >&2
    exit 1
fi
echo "OK: the state survived the move"
