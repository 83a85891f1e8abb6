#!/bin/sh
# Move a container from Docker to Podman (cold: spec and rootfs changes move, memory does not).
# Defaults to the testbed (scripts/testbed up): Docker on h1 -> Podman on h2.
# Usage: examples/docker-to-podman.sh   (FROM=docker+... TO=podman+... ADDR=... to override)
set -eu
FROM=${FROM:-docker+unix:///run/ctk-testbed/h1/docker.sock}
TO=${TO:-podman+unix:///run/ctk-testbed/h2/podman.sock}
ADDR=${ADDR:-10.77.0.12}
PORT=${PORT:-28082}
CTK=${CTK:-ctk}
NAME=ctk-example-d2p-$$

cleanup() {
    $CTK --engine "$FROM" rm -f "$NAME" >/dev/null 2>&1 || true
    $CTK --engine "$TO" rm -f "$NAME" >/dev/null 2>&1 || true
}
trap cleanup EXIT

$CTK --engine "$FROM" run -d --name "$NAME" -p "$PORT:8080" -e GREETING=hello \
    -l ctk.example=docker-to-podman ctk-demo/counter
# wait (30 s at most) until it has counted to 2: readiness, not a fixed sleep
deadline=$(($(date +%s) + 30))
until [ "$($CTK --engine "$FROM" logs "$NAME" | sed -n 's/^count=//p' | tail -n 1)" -ge 2 ] 2>/dev/null; do
    [ "$(date +%s)" -lt "$deadline" ] || { echo "$NAME did not start counting on $FROM" >&2; exit 1; }
    sleep 0.2
done

# the image moves too when Podman lacks it (docker-archive keeps its ID)
$CTK migrate "$NAME" --from "$FROM" --to "$TO" --mode cold --verify "http://$ADDR:$PORT/count"

$CTK --engine "$TO" ps | grep -q "$NAME"
COUNT=$(curl -fsS --retry 10 --retry-connrefused --retry-delay 1 "http://$ADDR:$PORT/count")
echo "$NAME runs on Podman now and answers $COUNT"
