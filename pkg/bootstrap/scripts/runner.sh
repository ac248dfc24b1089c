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
#
# One bootstrap at a time per host: before the first runner starts the
# script, it stops the script of every other Operation in the parent
# directory that started and has not finished (a script that timed out, or
# whose Operation was deleted, while no controller could stop it), and
# prints "@@stargate-stopped <operation UID> <process group>" for each.
# The script runs in its own process group (setsid; pid holds its id) and
# every process it starts carries STARGATE_OPERATION=<operation UID> in its
# environment, also below sudo and in other process groups, so a stop finds
# them all. "runner.sh DIR stop" stops DIR's own script that way (the
# controller's stop on timeout or deletion).
set -u
dir=$1
mode=${2:-run}
cd "$dir" || exit 100
id=$(basename "$dir")
if [ "$(id -u)" -eq 0 ]; then
  sudo=""
else
  sudo="sudo -n"
fi

# marked UID prints the processes whose environment carries the marker of
# Operation UID.
marked() {
  # shellcheck disable=SC2086 # $sudo is empty or "sudo -n"
  $sudo grep -l -s -z -x -F "STARGATE_OPERATION=$1" /proc/[0-9]*/environ 2>/dev/null | cut -d/ -f3
}

# elsewhere PID... says whether all of the processes run in another
# network namespace than this runner: on another host that shares this
# file system (a simulated datacenter), never on a real one.
elsewhere() {
  [ $# -gt 0 ] || return 1
  for p in "$@"; do
    # shellcheck disable=SC2086
    [ "$($sudo readlink "/proc/$p/ns/net" 2>/dev/null)" = "$netns" ] && return 1
  done
  return 0
}
netns=$(readlink /proc/$$/ns/net)

# stop DIR WHY [here] stops the script of work directory DIR when it
# started and has not finished: TERM to its process group and every marked
# process, KILL to what is left after 5 seconds. It then writes DIR's
# result (exit code 143) so followers end and later stops pass it by.
# With "here" it stops only a script with a process running on this host.
stop() {
  d=$1
  [ -d "$d/started.d" ] || return 0
  [ -e "$d/result" ] && return 0
  sid=$(basename "$d")
  pg=$(cat "$d/pid" 2>/dev/null || true)
  # The group is this script's only while its leader names the Operation
  # (a pid is reused after a reboot).
  if [ -z "$pg" ] || ! tr '\0' '\n' <"/proc/$pg/cmdline" 2>/dev/null | grep -qxF "$sid"; then
    pg=none
  fi
  pids=$(marked "$sid")
  if [ "${3:-}" = here ]; then
    live=$pids
    [ "$pg" = none ] || live="$live $pg"
    # Nothing of it runs (yet: another runner may be between its mkdir
    # and its start), or it runs on another host: not this runner's to
    # stop.
    [ -n "$live" ] || return 0
    # shellcheck disable=SC2086 # a list of pids
    elsewhere $live && return 0
  fi
  if [ "$pg" != none ]; then
    # shellcheck disable=SC2086
    $sudo kill -TERM -- "-$pg" 2>/dev/null
  fi
  if [ -n "$pids" ]; then
    # shellcheck disable=SC2086 # a list of pids
    $sudo kill -TERM $pids 2>/dev/null
  fi
  n=0
  while [ -n "$(marked "$sid")" ] && [ "$n" -lt 50 ]; do
    sleep 0.1
    n=$((n + 1))
  done
  pids=$(marked "$sid")
  if [ -n "$pids" ]; then
    # shellcheck disable=SC2086
    $sudo kill -KILL $pids 2>/dev/null
  fi
  if [ ! -e "$d/result" ]; then
    start=$(stat -c %Y "$d/started.d" 2>/dev/null || date +%s)
    ms=$((($(date +%s) - start) * 1000))
    printf '\nstargate: the bootstrap script was stopped %s\n' "$2" >>"$d/output.log"
    printf '\n@@stargate-result %s 143 %s\n' "$sid" "$ms" >>"$d/output.log"
    echo "143 $ms" >"$d/result.tmp"
    mv "$d/result.tmp" "$d/result"
  fi
  echo "@@stargate-stopped $sid $pg"
}

if [ "$mode" = stop ]; then
  stop "$dir" "by stargate-controller: ${3:-its Operation ended}"
  exit 0
fi

# mkdir is atomic: only one runner ever starts the script.
if mkdir started.d 2>/dev/null; then
  for other in ../*/; do
    other=${other%/}
    [ "$other" = "../$id" ] && continue
    stop "$other" "before Operation $id started its bootstrap on this host" here
  done
  : >output.log
  # shellcheck disable=SC2016 # expanded by the inner shell
  setsid env STARGATE_OPERATION="$id" sh -c 'start=$(date +%s%N); '"$sudo"' env STARGATE_OPERATION="$1" /bin/bash ./bootstrap.sh >>output.log 2>&1 </dev/null; rc=$?; end=$(date +%s%N); r="$rc $(( (end - start) / 1000000 ))"; printf "\n@@stargate-result %s %s\n" "$1" "$r" >>output.log; echo "$r" >result.tmp; mv result.tmp result' sh "$id" >/dev/null 2>&1 </dev/null &
  echo $! >pid.tmp
  mv pid.tmp pid
fi
while [ ! -s pid ]; do sleep 0.05; done
tail -s 0.05 -c +1 --pid="$(cat pid)" -f output.log
while [ ! -e result ]; do sleep 0.05; done
printf '\n@@stargate-result %s %s\n' "$id" "$(cat result)"
