#!/bin/sh
# Differential fuzzing of xensim xenstored against the real daemon of the same profile:
# for each seed, start a fresh reference daemon (../shared/oracle/start.sh) and a fresh xensim,
# run one generated script (~200 steps) on both, compare the transcripts, stop both.
#
#   usage: test/interop/difffuzz-run.sh SEEDS [PROFILE] [xs-difffuzz.py options...]
#     SEEDS    N (seeds 1..N) or FIRST-LAST
#     PROFILE  c (C xenstored 4.17, default) or ocaml (oxenstored 4.17)
#   e.g.  test/interop/difffuzz-run.sh 1-50 ocaml --keep-going --known test/interop/difffuzz-known-ocaml.txt
#         test/interop/difffuzz-run.sh 7-7 c --minimise
# Exit status 0 if every seed gave equal transcripts (known differences aside), else 1.
set -eu
HERE=$(cd "$(dirname "$0")" && pwd)
[ $# -ge 1 ] || { sed -n '2,11s/^# \{0,1\}//p' "$0" >&2; exit 2; }
case "$1" in
*-*) first=${1%-*}; last=${1#*-} ;;
*) first=1; last=$1 ;;
esac
shift
profile=${1:-c}
[ $# -ge 1 ] && shift
exec /usr/bin/python3 "$HERE/xs-difffuzz.py" --profile "$profile" --start \
	--seed "$first" --runs $((last - first + 1)) "$@"
