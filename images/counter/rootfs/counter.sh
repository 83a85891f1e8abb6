#!/bin/sh
# ctk's checkpoint/restore demo. The counter lives ONLY in the shell variable n
# (it is never read back from disk): after a CRIU restore it goes on from where
# it was, while a fresh start would begin again at 1.
#
# Each second: prints "count=N" to stdout and writes N to /www/count, which
# busybox httpd serves at http://IP:8080/count.

# sh as PID 1 ignores SIGTERM/SIGINT unless it traps them.
trap 'exit 0' TERM INT

mkdir -p /www
httpd -f -p 8080 -h /www &

n=1
while :; do
  echo "count=$n"
  # write then rename, so httpd never serves a half-written file
  echo "$n" >/www/count.tmp && mv -f /www/count.tmp /www/count
  n=$((n + 1))
  # sleep in the background and wait: a trapped signal interrupts `wait` at
  # once, whereas a foreground sleep would delay the exit by up to a second.
  sleep 1 &
  wait $!
done
