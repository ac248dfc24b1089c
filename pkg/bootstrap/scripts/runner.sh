#!/bin/sh
# Runs ./bootstrap.sh of one Operation exactly once and follows its output.
# The first runner in the directory starts the script detached (setsid), so
# a dropped SSH session or a restarted controller does not stop it; any
# later runner, e.g. of a restarted controller, only follows the output.
# The result line "@@stargate-result <operation UID> <exit code>
# <milliseconds>" ends output.log, so a follower sees it the moment the
# script ends; it is printed once more at the end, after the follower's
# tail has stopped. The UID is the work directory's name: the controller
# takes only its own Operation's line for the result.
set -u
dir=$1
cd "$dir" || exit 100
id=$(basename "$dir")
if [ "$(id -u)" -eq 0 ]; then
  sudo=""
else
  sudo="sudo -n"
fi
# mkdir is atomic: only one runner ever starts the script.
if mkdir started.d 2>/dev/null; then
  : >output.log
  # shellcheck disable=SC2016 # expanded by the inner shell
  setsid sh -c 'start=$(date +%s%N); '"$sudo"' /bin/bash ./bootstrap.sh >>output.log 2>&1 </dev/null; rc=$?; end=$(date +%s%N); r="$rc $(( (end - start) / 1000000 ))"; printf "\n@@stargate-result %s %s\n" "$1" "$r" >>output.log; echo "$r" >result.tmp; mv result.tmp result' sh "$id" >/dev/null 2>&1 </dev/null &
  echo $! >pid.tmp
  mv pid.tmp pid
fi
while [ ! -s pid ]; do sleep 0.05; done
tail -s 0.05 -c +1 --pid="$(cat pid)" -f output.log
while [ ! -e result ]; do sleep 0.05; done
printf '\n@@stargate-result %s %s\n' "$id" "$(cat result)"
