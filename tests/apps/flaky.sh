#!/bin/sh
# Runs "$@" (the app), or fails the way the file named by $MODE_FILE says:
#   serve  run the app
#   exit1  say why on stderr and exit 1
#   hang   never become ready
#   fork   start a grandchild, then never become ready
# so that a test can make one new generation fail while the old one serves.
mode=$(cat "$MODE_FILE")
case "$mode" in
  serve) exec "$@" ;;
  exit1) echo "flaky: cannot load the app (mode exit1)" >&2; exit 1 ;;
  hang) echo "flaky: hanging (mode hang)" >&2; exec sleep 600 ;;
  fork) sleep 600 & echo "flaky: forked $! and hanging (mode fork)" >&2; exec sleep 601 ;;
  *) echo "flaky: unknown mode $mode" >&2; exit 2 ;;
esac
