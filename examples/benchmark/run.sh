#!/usr/bin/env bash
# Load benchmark: jwt_auth against plain Caddy answering the identical
# request. See README.md in this directory.
#
# It builds Caddy once (go build -o <tmp>/caddy ./xcaddy), mints keys and
# tokens, starts one Caddy with every configuration of ./Caddyfile (ports
# 9150-9159 on 127.0.0.1, admin off, logs off), and then, for each
# configuration X, runs wrk interleaved: plain, X, plain, X, ..., plain.
# Plain runs send exactly what X's runs send (same headers, same wrk
# script). The table gives, per configuration, the median RPS and p99 of its
# runs and the ratio of its median RPS to the median of the plain runs
# around it.
#
# Environment (all optional):
#   BENCH_DURATION     length of one wrk run            (default 5s)
#   BENCH_ROUNDS       runs of each configuration       (default 3)
#   BENCH_CONNECTIONS  wrk -c                           (default 32)
#   BENCH_THREADS      wrk -t                           (default 1)
#   BENCH_FRESH        tokens in each first-seen list   (default 100000)
#   BENCH_ONLY         extended regex: only configurations whose name matches
#   BENCH_KEEP         if set, keep the temporary directory (keys, logs, raw results)
#   BENCH_BEFORE       a git revision: also build Caddy at that revision, serve
#                      the same Caddyfile from it on ports 9250-9259, and run
#                      its configurations in the same interleaving
#                      (plain, X, X-before, plain, ...), so the table gives
#                      before and after from one run
#   BENCH_RSS          1 (default) or 0: after the table, flood a fresh Caddy
#                      with distinct valid tokens, once on the plain site and
#                      once through jwt_auth, and compare peak RSS (VmHWM)
#   BENCH_RSS_DURATION length of each flood                (default 20s)
set -euo pipefail

DURATION=${BENCH_DURATION:-5s}
ROUNDS=${BENCH_ROUNDS:-3}
CONNS=${BENCH_CONNECTIONS:-32}
THREADS=${BENCH_THREADS:-1}
FRESH=${BENCH_FRESH:-100000}
ONLY=${BENCH_ONLY:-}
BEFORE=${BENCH_BEFORE:-}
RSS=${BENCH_RSS:-1}
RSS_DURATION=${BENCH_RSS_DURATION:-20s}

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)

if ! command -v wrk >/dev/null 2>&1; then
	if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
		echo "installing wrk..." >&2
		apt-get install -y wrk >/dev/null || { apt-get update >/dev/null && apt-get install -y wrk >/dev/null; }
	else
		echo "run.sh: wrk is required (Debian/Ubuntu: sudo apt-get install wrk)" >&2
		exit 1
	fi
fi
command -v curl >/dev/null 2>&1 || { echo "run.sh: curl is required" >&2; exit 1; }
[[ "$ROUNDS" =~ ^[1-9][0-9]*$ ]] || { echo "run.sh: BENCH_ROUNDS must be a positive integer" >&2; exit 1; }

tmp=$(mktemp -d "${TMPDIR:-/tmp}/jwtauth-bench.XXXXXX")
caddy_pid=
before_pid=
stop_caddy() { # PID
	if [ -n "$1" ]; then
		kill "$1" 2>/dev/null || true
		wait "$1" 2>/dev/null || true
	fi
}
cleanup() {
	stop_caddy "$caddy_pid"
	stop_caddy "$before_pid"
	if [ -n "$BEFORE" ] && [ -d "$tmp/before-src" ]; then
		git -C "$root" worktree remove --force "$tmp/before-src" 2>/dev/null || true
	fi
	if [ -n "${BENCH_KEEP:-}" ]; then
		echo "kept $tmp" >&2
	else
		rm -rf "$tmp"
	fi
}
trap cleanup EXIT

echo "building caddy and the token minter..." >&2
(cd "$root" && go build -o "$tmp/caddy" ./xcaddy && go build -o "$tmp/mint" ./examples/benchmark/mint)
if [ -n "$BEFORE" ]; then
	echo "building caddy at $BEFORE..." >&2
	git -C "$root" worktree add --detach "$tmp/before-src" "$BEFORE" >/dev/null 2>&1
	(cd "$tmp/before-src" && go build -o "$tmp/caddy-before" ./xcaddy)
	# the same sites, 100 ports up
	sed -E 's/:91([5-9][0-9])/:92\1/' "$here/Caddyfile" >"$tmp/Caddyfile-before"
fi
"$tmp/mint" -out "$tmp/data" -fresh "$FRESH"

# start_caddy BINARY CADDYFILE LOG: starts Caddy with its own HOME, so
# nothing is written outside $tmp, and sets started_pid.
start_caddy() {
	local bin=$1 conf=$2 log=$3
	mkdir -p "$tmp/home"
	(
		cd "$tmp"
		export HOME="$tmp/home" XDG_DATA_HOME="$tmp/home/data" XDG_CONFIG_HOME="$tmp/home/config"
		export BENCH_DIR="$tmp/data"
		JWTAUTH_BENCH_SECRET=$(cat "$tmp/data/hs256.secret")
		export JWTAUTH_BENCH_SECRET
		exec "$bin" run --adapter caddyfile --config "$conf"
	) >"$log" 2>&1 &
	started_pid=$!
}

# wait_for PID LOG PORT: waits (bounded) until the site on PORT answers.
wait_for() {
	local pid=$1 log=$2 port=$3
	for _ in $(seq 100); do
		if curl -s -o /dev/null "http://127.0.0.1:$port/"; then
			return 0
		fi
		if ! kill -0 "$pid" 2>/dev/null; then
			echo "run.sh: caddy exited:" >&2
			cat "$log" >&2
			exit 1
		fi
		sleep 0.1
	done
	echo "run.sh: caddy did not answer on port $port" >&2
	exit 1
}

start_caddy "$tmp/caddy" "$here/Caddyfile" "$tmp/caddy.log"
caddy_pid=$started_pid
wait_for "$caddy_pid" "$tmp/caddy.log" 9159
if [ -n "$BEFORE" ]; then
	start_caddy "$tmp/caddy-before" "$tmp/Caddyfile-before" "$tmp/caddy-before.log"
	before_pid=$started_pid
	wait_for "$before_pid" "$tmp/caddy-before.log" 9259
fi

# Configurations: name, port, token, expected status. The token is NAME for
# the one in NAME.token, sent on every request, or list:NAME for a different
# token from NAME.tokens on every request (fresh.lua).
configs=(
	"plain-vs-plain 9150 hs256 200"
	"HS256 9151 hs256 200"
	"HS256-nocache 9152 hs256 200"
	"RS256 9153 rs256 200"
	"RS256-nocache 9154 rs256 200"
	"ES256 9155 es256 200"
	"ES256-nocache 9156 es256 200"
	"EdDSA 9157 eddsa 200"
	"EdDSA-nocache 9158 eddsa 200"
	"HS256-first-seen 9151 list:fresh 200"
	"401-forged-HS256 9151 forged 401"
	"401-expired 9151 expired 401"
	"401-expired-1st-seen 9151 list:expired 401"
	"caddy-error-401 9159 hs256 401"
)

# Check every configuration answers as expected before measuring anything,
# on the before Caddy too.
offsets=(0)
if [ -n "$BEFORE" ]; then
	offsets=(0 100)
fi
for off in "${offsets[@]}"; do
	for c in "${configs[@]}"; do
		read -r name port tok want <<<"$c"
		case $tok in
		list:*) tok_value=$(head -n 1 "$tmp/data/${tok#list:}.tokens") ;;
		*) tok_value=$(cat "$tmp/data/$tok.token") ;;
		esac
		got=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $tok_value" "http://127.0.0.1:$((port + off))/")
		if [ "$got" != "$want" ]; then
			echo "run.sh: $name (port $((port + off))): got HTTP $got, want $want" >&2
			cat "$tmp/caddy.log" >&2
			exit 1
		fi
	done
	for port in 9151 9152 9153 9154 9155 9156 9157 9158; do
		got=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$((port + off))/")
		if [ "$got" != 401 ]; then
			echo "run.sh: port $((port + off)) answers $got without a token; jwt_auth is not active" >&2
			exit 1
		fi
	done
done

# wrk_run PORT TOKEN DURATION -> "rps p99_us non2xx requests errors"
wrk_run() {
	local port=$1 tok=$2 dur=$3 out
	if [[ "$tok" == list:* ]]; then
		out=$(BENCH_SCRIPTS="$here" BENCH_TOKENS="$tmp/data/${tok#list:}.tokens" \
			wrk -t"$THREADS" -c"$CONNS" -d"$dur" -s "$here/fresh.lua" "http://127.0.0.1:$port/")
	else
		out=$(BENCH_SCRIPTS="$here" wrk -t"$THREADS" -c"$CONNS" -d"$dur" -s "$here/report.lua" \
			-H "Authorization: Bearer $(cat "$tmp/data/$tok.token")" "http://127.0.0.1:$port/")
	fi
	awk '/^RESULT/ {
		for (i = 2; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
		printf "%.1f %d %d %d %d\n", v["requests"] / (v["duration_us"] / 1e6), v["p99_us"], v["non2xx"], v["requests"], v["errors"]
	}' <<<"$out"
}

median() {
	sort -g | awk '{ a[NR] = $1 } END { if (NR == 0) print "nan"; else if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'
}

results="$tmp/results.tsv"
: >"$results"
bad=0

# record NAME KIND WANT ROUND "rps p99 non2xx requests errors"
record() {
	local name=$1 kind=$2 want=$3 round=$4 rps p99 non2xx requests errors
	read -r rps p99 non2xx requests errors <<<"$5"
	if [ -z "${requests:-}" ] || [ "$requests" = 0 ]; then
		echo "run.sh: $name ($kind): wrk produced no result" >&2
		bad=1
		return
	fi
	if { [ "$want" = 200 ] && [ "$non2xx" != 0 ]; } || { [ "$want" = 401 ] && [ "$non2xx" != "$requests" ]; }; then
		echo "run.sh: $name ($kind): $non2xx of $requests responses were not the expected $want" >&2
		bad=1
	fi
	if [ "$errors" != 0 ]; then
		echo "run.sh: $name ($kind): $errors socket errors" >&2
	fi
	printf '%s\t%s\t%s\t%s\t%s\n' "$name" "$kind" "$rps" "$p99" "$round" >>"$results"
}

echo "machine: $(nproc) CPUs, $(lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -n 1); $(uptime | sed 's/.*load/load/')" >&2
echo "wrk -t$THREADS -c$CONNS -d$DURATION, $ROUNDS rounds per configuration" >&2

# Warm up every port once (connections, the verified-token caches).
for off in "${offsets[@]}"; do
	for port in 9150 9151 9152 9153 9154 9155 9156 9157 9158; do
		case $port in 9153 | 9154) tok=rs256 ;; 9155 | 9156) tok=es256 ;; 9157 | 9158) tok=eddsa ;; *) tok=hs256 ;; esac
		wrk_run "$((port + off))" "$tok" 1s >/dev/null
	done
done

for c in "${configs[@]}"; do
	read -r name port tok want <<<"$c"
	if [ -n "$ONLY" ] && ! [[ "$name" =~ $ONLY ]]; then
		continue
	fi
	echo "running $name ..." >&2
	for ((r = 0; r <= ROUNDS; r++)); do
		# plain Caddy, the identical request; the plain site answers 200
		record "$name" plain 200 "$r" "$(wrk_run 9150 "$tok" "$DURATION")"
		if ((r < ROUNDS)); then
			record "$name" x "$want" "$r" "$(wrk_run "$port" "$tok" "$DURATION")"
			if [ -n "$BEFORE" ]; then
				record "$name" before "$want" "$r" "$(wrk_run "$((port + 100))" "$tok" "$DURATION")"
			fi
		fi
	done
done

# col NAME KIND FIELD: the median of one column of one configuration's runs
col() {
	awk -F'\t' -v n="$1" -v k="$2" -v f="$3" '$1 == n && $2 == k { print $f }' "$results" | median
}

# ratios NAME KIND: per round, the run's RPS over the mean of the two plain
# runs around it, one per line. Pairing each run with its neighbours cancels
# the machine's slow drift, which medians of all runs would keep.
ratios() {
	awk -F'\t' -v n="$1" -v k="$2" '
		$1 == n && $2 == "plain" { p[$5] = $3 }
		$1 == n && $2 == k { x[$5] = $3 }
		END { for (r in x) if ((r + 1) in p) printf "%.4f\n", x[r] / ((p[r] + p[r + 1]) / 2) }' "$results"
}

# ratio_cell NAME KIND: "median [min-max]" of the paired ratios
ratio_cell() {
	local med lo hi
	med=$(ratios "$1" "$2" | median)
	lo=$(ratios "$1" "$2" | sort -g | head -n 1)
	hi=$(ratios "$1" "$2" | sort -g | tail -n 1)
	awk -v m="$med" -v l="$lo" -v h="$hi" 'BEGIN { printf "%.2fx [%.2f-%.2f]", m, l, h }'
}

echo
echo "ratio: the median over rounds of RPS / mean RPS of the plain runs just before and after, [lowest-highest]"
fmt_us() { awk -v us="$1" 'BEGIN { if (us >= 1000) printf "%.2fms", us / 1000; else printf "%dus", us }'; }
if [ -n "$BEFORE" ]; then
	echo "after: this tree; before: $BEFORE ($(git -C "$root" log -1 --format=%h "$BEFORE"))"
	printf '%-22s %10s %10s %10s %10s %10s %-18s %-18s\n' configuration "after RPS" "after p99" "before RPS" "before p99" "plain RPS" "after ratio" "before ratio"
else
	printf '%-22s %12s %10s %12s %10s %-18s\n' configuration "median RPS" "p99" "plain RPS" "plain p99" ratio
fi
for c in "${configs[@]}"; do
	read -r name _ <<<"$c"
	grep -q "^$name	" "$results" || continue
	x_rps=$(col "$name" x 3)
	x_p99=$(col "$name" x 4)
	p_rps=$(col "$name" plain 3)
	p_p99=$(col "$name" plain 4)
	if [ -n "$BEFORE" ]; then
		b_rps=$(col "$name" before 3)
		b_p99=$(col "$name" before 4)
		printf '%-22s %10.0f %10s %10.0f %10s %10.0f %-18s %-18s\n' "$name" "$x_rps" "$(fmt_us "$x_p99")" "$b_rps" "$(fmt_us "$b_p99")" "$p_rps" "$(ratio_cell "$name" x)" "$(ratio_cell "$name" before)"
	else
		printf '%-22s %12.0f %10s %12.0f %10s %-18s\n' "$name" "$x_rps" "$(fmt_us "$x_p99")" "$p_rps" "$(fmt_us "$p_p99")" "$(ratio_cell "$name" x)"
	fi
done

# Memory under a flood of distinct valid tokens: a fresh Caddy (the same
# binary and Caddyfile) is flooded once on the plain site and once through
# jwt_auth (HS256, default cache), each with the first-seen list, and its
# peak resident set (VmHWM) is read before it stops. Alternated, twice each.
if [ "$RSS" = 1 ]; then
	stop_caddy "$caddy_pid"
	caddy_pid=
	stop_caddy "$before_pid"
	before_pid=
	echo "flooding for memory ($RSS_DURATION each) ..." >&2
	: >"$tmp/rss.tsv"
	for round in 1 2; do
		for port in 9150 9151; do
			start_caddy "$tmp/caddy" "$here/Caddyfile" "$tmp/caddy-rss.log"
			caddy_pid=$started_pid
			wait_for "$caddy_pid" "$tmp/caddy-rss.log" 9159
			res=$(wrk_run "$port" list:fresh "$RSS_DURATION")
			hwm=$(awk '/^VmHWM:/ { print $2 }' "/proc/$caddy_pid/status")
			rss=$(awk '/^VmRSS:/ { print $2 }' "/proc/$caddy_pid/status")
			read -r rps _ non2xx requests _ <<<"$res"
			if [ "$non2xx" != 0 ]; then
				echo "run.sh: memory flood on port $port: $non2xx of $requests responses were not 200" >&2
				bad=1
			fi
			printf '%s\t%s\t%s\t%s\t%s\n' "$port" "$round" "$hwm" "$rss" "$requests" >>"$tmp/rss.tsv"
			stop_caddy "$caddy_pid"
			caddy_pid=
		done
	done
	echo
	printf '%-28s %12s %12s %12s\n' "memory flood" "peak RSS" "RSS at end" requests
	for port in 9150 9151; do
		case $port in 9150) label="plain" ;; *) label="jwt_auth HS256 (cache 10000)" ;; esac
		hwm=$(awk -F'\t' -v p="$port" '$1 == p { print $3 }' "$tmp/rss.tsv" | median)
		rss=$(awk -F'\t' -v p="$port" '$1 == p { print $4 }' "$tmp/rss.tsv" | median)
		req=$(awk -F'\t' -v p="$port" '$1 == p { print $5 }' "$tmp/rss.tsv" | median)
		printf '%-28s %10.1fMB %10.1fMB %12.0f\n' "$label" "$(awk -v k="$hwm" 'BEGIN { print k / 1024 }')" "$(awk -v k="$rss" 'BEGIN { print k / 1024 }')" "$req"
	done
	p_hwm=$(awk -F'\t' '$1 == 9150 { print $3 }' "$tmp/rss.tsv" | median)
	x_hwm=$(awk -F'\t' '$1 == 9151 { print $3 }' "$tmp/rss.tsv" | median)
	awk -v p="$p_hwm" -v x="$x_hwm" 'BEGIN { printf "peak RSS of jwt_auth minus plain: %+.1f MB (medians of 2 floods each)\n", (x - p) / 1024 }'
fi
if [ -n "${BENCH_KEEP:-}" ]; then
	cp "$results" "$tmp/results-final.tsv"
fi
exit "$bad"
