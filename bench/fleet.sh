#!/usr/bin/env bash
# The fleet benchmark: otaserve and N simulated devices (the real device
# agent over emulated flash in memory, no plugin processes, in otafleet-sim
# processes), upgraded by one campaign. Prints devices upgraded per second,
# the time to the last confirm, per-device percentiles, peak memory per
# device and the CPU time of each side (which shows the side that limits
# the run). bench/fleet.sh --help says how to run it.
set -euo pipefail
cd "$(dirname "$0")/.."

usage() {
	cat <<'EOF'
Usage: bench/fleet.sh [--broker embedded|mosquitto] [--edges E] [--sims S] [--replicas R] [N...]

Upgrades N simulated devices (default 1000 10000, one run each) with one campaign.

  --broker embedded   (default) one otaserve on bbolt with its embedded MQTT broker,
                      one otafleet-sim process
  --broker mosquitto  otaserve replicas on one PostgreSQL (started here, in a
                      temporary directory) connected to a hub Mosquitto; the
                      devices connect to edge Mosquitto nodes bridged to the hub
  --edges E           edge Mosquitto nodes (default ceil(N / 12000)); edge i
                      listens on 127.0.0.(10+i), so that each has its own
                      ephemeral ports
  --sims S            otafleet-sim processes (default E); simulator j connects
                      to edge j mod E, so S >= E
  --replicas R        otaserve replicas on the one database (default 1); the
                      campaigns' lease holder runs the campaign, every replica
                      stores reports; simulator j registers through replica j mod R

Every process holds at most as many connections as its open-file limit
(ulimit -n; raised here to the hard limit, ulimit -Hn) allows less 1,000: with
the embedded broker that caps N, with Mosquitto each edge's and simulator's share.
Needs mosquitto (apt-get install mosquitto) and PostgreSQL (apt-get install
postgresql) for --broker mosquitto. BIN=dir builds into dir (default bin);
KEEP=1 keeps the work directory (logs, each device's times) and says where.
EOF
}

broker=embedded edges="" sims="" replicas=""
counts=()
while [ $# -gt 0 ]; do
	case $1 in
	-h | --help) usage; exit 0 ;;
	--broker | --edges | --sims | --replicas)
		[ $# -ge 2 ] || { echo "$1 needs a value (bench/fleet.sh --help)" >&2; exit 2; }
		printf -v "${1#--}" %s "$2"; shift 2 ;;
	--broker=* | --edges=* | --sims=* | --replicas=*)
		opt=${1%%=*}; printf -v "${opt#--}" %s "${1#*=}"; shift ;;
	-*) echo "unknown option $1 (bench/fleet.sh --help)" >&2; exit 2 ;;
	*) counts+=("$1"); shift ;;
	esac
done
[ ${#counts[@]} -gt 0 ] || counts=(1000 10000)
for v in "${counts[@]}" ${edges:+"$edges"} ${sims:+"$sims"} ${replicas:+"$replicas"}; do
	[[ $v =~ ^[1-9][0-9]*$ ]] || { echo "$v: want a whole number of 1 or more (bench/fleet.sh --help)" >&2; exit 2; }
done
case $broker in
embedded)
	if [ "${edges:-1}${sims:-1}${replicas:-1}" != 111 ]; then
		echo "--edges, --sims and --replicas go with --broker mosquitto: the embedded broker is one otaserve on bbolt" >&2
		exit 2
	fi ;;
mosquitto)
	mosquitto=$(command -v mosquitto || echo /usr/sbin/mosquitto)
	[ -x "$mosquitto" ] || { echo "--broker mosquitto: mosquitto is not installed (apt-get install -y mosquitto)" >&2; exit 2; }
	pgbin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -t/ -k5 -n | tail -n 1)
	[ -n "$pgbin" ] && [ -x "$pgbin/postgres" ] || { echo "--broker mosquitto: PostgreSQL is not installed (apt-get install -y postgresql)" >&2; exit 2; } ;;
*) echo "--broker $broker: want embedded or mosquitto" >&2; exit 2 ;;
esac

bin=${BIN:-bin}
go build -o "$bin/" ./cmd/otaserve ./cmd/otaimg ./cmd/otafleet-sim
# Every device is a TCP connection on both sides.
ulimit -n 1048576 2>/dev/null || ulimit -n "$(ulimit -Hn)"
# Beyond the devices' connections each process keeps a few hundred
# descriptors: HTTP connections, the database, the listeners, a bridge.
headroom=1000
files=$(ulimit -n)
[ "$files" != unlimited ] || files=$((1 << 30))

# The mosquitto layout of a run of n devices: E edges, S simulators,
# R replicas, and simulator j's count sim_n[j], first device sim_first[j]
# and edge j mod E; edge_n[i] is what edge i holds.
# An edge takes at most 12,000 devices by default: every simulator connects
# from 127.0.0.1, and Linux gives connect() the even ephemeral ports first
# (14,116 of 32768-60999), then searches every one of them before the odd
# ones at each connection: past about 14,000 clients to one edge from one
# address, every reconnection of a device (each one reboots into its new
# image) costs a scan of the port range in the kernel, which took a fifth
# of the machine's CPU in a run of 16,667 devices an edge.
per_edge=12000
layout() {
	local n=$1 j
	E=${edges:-$(((n + per_edge - 1) / per_edge))} S=${sims:-${edges:-$(((n + per_edge - 1) / per_edge))}} R=${replicas:-1}
	[ "$S" -ge "$E" ] || { echo "--sims $S < --edges $E: each simulator connects to one edge, so give at least as many simulators as edges" >&2; exit 2; }
	[ "$E" -le 240 ] || { echo "--edges $E: at most 240 (127.0.0.10 to 127.0.0.249)" >&2; exit 2; }
	[ "$S" -le "$n" ] || { echo "--sims $S > N = $n: each simulator needs a device" >&2; exit 2; }
	sim_n=() sim_first=() edge_n=()
	for ((j = 0; j < S; j++)); do
		sim_n[j]=$((n / S + (j < n % S ? 1 : 0)))
		sim_first[j]=$((j == 0 ? 0 : sim_first[j - 1] + sim_n[j - 1]))
		edge_n[j % E]=$((${edge_n[j % E]:-0} + sim_n[j]))
	done
}

for n in "${counts[@]}"; do
	if [ "$broker" = embedded ]; then
		if [ $((n + headroom)) -gt "$files" ]; then
			echo "N = $n needs about $((n + headroom)) open files per process; this shell allows $files (hard limit $(ulimit -Hn)): raise it (ulimit -Hn, or LimitNOFILE in a service) or use N <= $((files - headroom)), or --broker mosquitto to spread the devices over edge brokers and simulators" >&2
			exit 2
		fi
		continue
	fi
	layout "$n"
	most_sim=$(printf '%s\n' "${sim_n[@]}" | sort -n | tail -n 1)
	most_edge=$(printf '%s\n' "${edge_n[@]}" | sort -n | tail -n 1)
	if [ $((most_sim + headroom)) -gt "$files" ] || [ $((most_edge + headroom)) -gt "$files" ]; then
		echo "N = $n on $E edges and $S simulators puts up to $most_edge devices on an edge and $most_sim in a simulator, which need $headroom open files more each; a process may have $files (hard limit $(ulimit -Hn)): give more --edges and --sims (each at least ceil(N / $((files - headroom))) = $(((n + files - headroom - 1) / (files - headroom)))), or raise the limit" >&2
		exit 2
	fi
done

work=$(mktemp -d "${TMPDIR:-/tmp}/otaport-fleet.XXXXXX")
srv="" pgdir="" pg="" started=()
cleanup() {
	local p
	[ -n "$srv" ] && kill -INT "$srv" 2>/dev/null && wait "$srv" 2>/dev/null || true
	for p in "${started[@]}"; do kill -INT "$p" 2>/dev/null || true; done
	for p in "${started[@]}"; do wait "$p" 2>/dev/null || true; done
	if [ -n "$pg" ]; then kill -INT "$pg" 2>/dev/null && wait "$pg" 2>/dev/null || true; fi
	if [ -n "${KEEP:-}" ]; then echo "kept $work" >&2; else rm -rf "$work"; fi
	rm -rf ${pgdir:+"$pgdir"}
}
trap cleanup EXIT

"$bin/otaimg" keygen --type ecdsa-p256 -o "$work/key.pem" >/dev/null
"$bin/otaimg" getpub --key "$work/key.pem" -o "$work/pub.pem" >/dev/null
head -c 16384 /dev/urandom >"$work/app.bin" # a small image: the fleet side is measured
"$bin/otaimg" sign --key "$work/key.pem" --version 1.0.0 --pad-header "$work/app.bin" "$work/v1.img" >/dev/null
"$bin/otaimg" sign --key "$work/key.pem" --version 2.0.0 --pad-header "$work/app.bin" "$work/v2.img" >/dev/null

# peak_kib PID: the process's peak resident memory (VmHWM) in KiB.
peak_kib() { awk '/^VmHWM/ {print $2}' "/proc/$1/status"; }
# cpu_ticks PID: the process's user + system CPU time in clock ticks.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)

# run_embedded N: today's benchmark, one otaserve with its embedded broker
# and one simulator.
run_embedded() {
	local n=$1
	rm -rf "$work/data"
	"$bin/otaserve" run --data "$work/data" --http 127.0.0.1:0 --mqtt 127.0.0.1:0 --key "$work/pub.pem" >"$work/otaserve.log" 2>&1 &
	srv=$!
	for _ in $(seq 100); do grep -q 'MQTT on' "$work/otaserve.log" && [ -f "$work/data/url" ] && break; sleep 0.1; done
	mqtt=$(sed -n 's/.*MQTT on \([0-9.]*:[0-9]*\).*/\1/p' "$work/otaserve.log" | head -n 1)
	# The devices pin the fleet CA (otaserve serves TLS by default) and
	# take orders signed with the order key otaserve made at its start.
	"$bin/otaserve" order-key --data "$work/data" -o "$work/order.pub" >/dev/null
	echo "== N = $n"
	"$bin/otafleet-sim" --server "$(cat "$work/data/url")" --token "$(cat "$work/data/token")" --mqtt "$mqtt" \
		--ca "$work/data/ca.pem" --order-key "$work/order.pub" \
		--key "$work/pub.pem" --v1 "$work/v1.img" --v2 "$work/v2.img" -n "$n" --timeout 20m &
	sim=$!
	peak_sim=0 peak_srv=0 cpu_sim=0 cpu_srv0=$(cpu_ticks "$srv") cpu_srv=0
	while kill -0 "$sim" 2>/dev/null; do
		p=$(peak_kib "$sim" 2>/dev/null || echo 0); [ "${p:-0}" -gt "$peak_sim" ] && peak_sim=$p
		p=$(peak_kib "$srv" 2>/dev/null || echo 0); [ "${p:-0}" -gt "$peak_srv" ] && peak_srv=$p
		p=$(cpu_ticks "$sim" 2>/dev/null || echo 0); [ "${p:-0}" -gt "$cpu_sim" ] && cpu_sim=$p
		cpu_srv=$(cpu_ticks "$srv")
		sleep 0.5
	done
	status=0
	wait "$sim" || status=$?
	echo "peak RSS: simulator $((peak_sim / 1024)) MiB ($((peak_sim / n)) KiB per device), otaserve $((peak_srv / 1024)) MiB ($((peak_srv / n)) KiB per device)"
	echo "CPU time over the whole run: simulator $((cpu_sim / hz)) s, otaserve $(((cpu_srv - cpu_srv0) / hz)) s"
	t=$(date +%s%N)
	kill -INT "$srv"; wait "$srv" 2>/dev/null || true; srv=""
	echo "otaserve stopped $(( ($(date +%s%N) - t) / 1000000 )) ms after SIGINT"
	[ "$status" -eq 0 ] || { echo "N = $n failed"; tail -n 20 "$work/otaserve.log"; exit "$status"; }
}

if [ "$broker" = embedded ]; then
	for n in "${counts[@]}"; do run_embedded "$n"; done
	exit 0
fi

# free_port: a loopback TCP port nothing listens on, below the ephemeral
# range (32768 and up) so that no client's connection takes it meanwhile.
free_port() {
	local p
	while :; do
		p=$((20000 + RANDOM % 12000))
		(exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { echo "$p"; return; }
	done
}

# PostgreSQL refuses to run as root: its directory then belongs to an
# unprivileged user (nobody, or otaport-pgtest, made when missing) and it
# runs as that user, as fleet/store/pgtest does for the tests. Its
# settings are the distribution's defaults (fsync and synchronous commits
# on) but for the listen address and the connection count.
pgdir=$(mktemp -d "${TMPDIR:-/tmp}/otaport-fleet-pg.XXXXXX")
chmod 755 "$pgdir"
as_pg=()
if [ "$(id -u)" = 0 ]; then
	pguser=nobody
	id -u "$pguser" >/dev/null 2>&1 || { pguser=otaport-pgtest; id -u "$pguser" >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin "$pguser"; }
	chown "$(id -u "$pguser"):$(id -g "$pguser")" "$pgdir"
	as_pg=(setpriv "--reuid=$(id -u "$pguser")" "--regid=$(id -g "$pguser")" --clear-groups --pdeathsig KILL --)
fi
(cd "$pgdir" && "${as_pg[@]}" "$pgbin/initdb" -D "$pgdir/data" -U postgres --auth=trust -E UTF8 --locale=C >"$pgdir/initdb.log" 2>&1) ||
	{ echo "initdb failed:" >&2; cat "$pgdir/initdb.log" >&2; exit 1; }
pgport=$(free_port)
(cd "$pgdir" && exec "${as_pg[@]}" "$pgbin/postgres" -D "$pgdir/data" -p "$pgport" -c listen_addresses=127.0.0.1 \
	-c unix_socket_directories= -c max_connections=200 ${PG_OPTS:-}) >"$pgdir/postgres.log" 2>&1 &
pg=$!
for _ in $(seq 300); do "$pgbin/pg_isready" -q -h 127.0.0.1 -p "$pgport" && break; sleep 0.2; done
"$pgbin/pg_isready" -q -h 127.0.0.1 -p "$pgport" || { echo "PostgreSQL did not start:" >&2; cat "$pgdir/postgres.log" >&2; exit 1; }

# mosquitto_conf FILE LISTENER [HUB-PORT NAME PRODUCT]: a Mosquitto
# configuration; with a hub, an edge bridged to it, which takes from the hub
# only the orders and broadcasts of its own devices' product key (one per
# edge): a bridge of every order would send each one to every edge, which
# drops it there, and at 9 edges that is 9 times the hub's work. No sign-in
# and no ACL: the benchmark measures connections and messages, not the
# brokers' authentication.
# Queues are unbounded: the default (1,000 messages a client) would drop
# orders on the bridge and reports on otaserve's connection under a burst.
mosquitto_conf() {
	cat >"$1" <<-EOF
		user $(id -un)
		listener $2
		allow_anonymous true
		persistence false
		max_queued_messages 0
		max_inflight_messages 1000
		set_tcp_nodelay true
		log_dest stderr
	EOF
	[ $# -gt 2 ] || return 0
	cat >>"$1" <<-EOF
		connection_messages false
		log_type error
		log_type warning
		connection hub
		address 127.0.0.1:$3
		remote_clientid $4
		cleansession true
		notifications false
		bridge_protocol_version mqttv311
		topic /ota/device/upgrade/$5/# in 1
		topic /otaport/+/$5 in 1
		topic /ota/device/inform/# out 1
		topic /ota/device/progress/# out 1
		topic /ota/device/request/# out 1
	EOF
}

# Sampling without forks: the script polls many processes twice a second.
declare -A peak cpu
# sample PID...: record each process's VmHWM (KiB) and CPU ticks.
sample() {
	local p k v rest f
	for p in "$@"; do
		while read -r k v rest; do
			[ "$k" = VmHWM: ] && { [ "$v" -gt "${peak[$p]:-0}" ] && peak[$p]=$v; break; }
		done 2>/dev/null <"/proc/$p/status" || continue
		read -r -a f 2>/dev/null <"/proc/$p/stat" || continue
		cpu[$p]=$((f[13] + f[14]))
	done
}
# pg_sample: PostgreSQL's memory, the sum of its processes' proportional
# set sizes (Pss: shared buffers counted once, not once a process), and its
# CPU ticks (live processes and the exited ones the postmaster reaped).
pg_pss_peak=0
pg_sample() {
	local p k v rest f sum=0 ticks=0
	for p in "$pg" $(ps -o pid= --ppid "$pg" 2>/dev/null); do
		while read -r k v rest; do
			[ "$k" = Pss: ] && { sum=$((sum + v)); break; }
		done 2>/dev/null <"/proc/$p/smaps_rollup" || continue
		read -r -a f 2>/dev/null <"/proc/$p/stat" || continue
		ticks=$((ticks + f[13] + f[14] + (p == pg ? f[15] + f[16] : 0)))
	done
	[ "$sum" -gt "$pg_pss_peak" ] && pg_pss_peak=$sum
	pg_ticks=$ticks
}
sum_of() { local s=0 p; for p in "$@"; do s=$((s + ${peak[$p]:-0})); done; echo "$s"; }
ticks_of() { local s=0 p; for p in "$@"; do s=$((s + ${cpu[$p]:-0})); done; echo "$s"; }
mib() { awk -v k="$1" 'BEGIN {printf "%.1f", k / 1024}'; }
per() { awk -v k="$1" -v n="$2" 'BEGIN {printf "%.1f", k / n}'; }
secs() { awk -v t="$1" -v hz="$hz" 'BEGIN {printf "%.0f", t / hz}'; }

# run_mosquitto N: PostgreSQL, a hub and E edges, R replicas, S simulators.
run_mosquitto() {
	local n=$1 i j r
	layout "$n"
	local run="$work/run-$n"
	mkdir -p "$run"
	echo "== N = $n, --broker mosquitto: $E edges, $S simulators, $R otaserve replicas on PostgreSQL"
	local db=fleet${n}_$RANDOM
	"$pgbin/createdb" -h 127.0.0.1 -p "$pgport" -U postgres "$db"
	local dburl="postgres://postgres@127.0.0.1:$pgport/$db?sslmode=disable"

	local hubport edgeport brokers=() edgeps=() srvs=() simps=() urls=()
	hubport=$(free_port) edgeport=$(free_port)
	mosquitto_conf "$run/hub.conf" "$hubport 127.0.0.1"
	"$mosquitto" -c "$run/hub.conf" >"$run/hub.log" 2>&1 &
	brokers+=($!) started+=($!)
	for ((i = 0; i < E; i++)); do
		mosquitto_conf "$run/edge$i.conf" "$edgeport 127.0.0.$((10 + i))" "$hubport" "edge-$i" "fleet-e$i"
		"$mosquitto" -c "$run/edge$i.conf" >"$run/edge$i.log" 2>&1 &
		brokers+=($!) edgeps+=($!) started+=($!)
	done
	# Every edge's bridge is up before a device connects: a report sent
	# before would wait in the edge.
	for _ in $(seq 300); do
		[ "$(grep -c 'connected from .* as edge-' "$run/hub.log" || true)" -ge "$E" ] && break
		sleep 0.1
	done
	[ "$(grep -c 'connected from .* as edge-' "$run/hub.log" || true)" -ge "$E" ] ||
		{ echo "the edges' bridges did not connect to the hub:" >&2; tail -n 5 "$run"/*.log >&2; exit 1; }

	# Replica 1 makes the data directory's keys (order key, fleet CA,
	# token); the others run on copies of it, as the replicas of a
	# deployment share one directory.
	local brokerURL="tcp://otaserve:unused@127.0.0.1:$hubport"
	for ((r = 1; r <= R; r++)); do
		local data="$run/data$r"
		if [ "$r" -gt 1 ]; then cp -a "$run/data1" "$data" && rm -f "$data/url"; fi
		"$bin/otaserve" run --data "$data" --db "$dburl" --broker "$brokerURL" --replica "r$r" \
			--http "127.0.0.1:$(free_port)" --key "$work/pub.pem" >"$run/otaserve$r.log" 2>&1 &
		srvs+=($!) started+=($!)
		for _ in $(seq 600); do [ -f "$data/url" ] && break; kill -0 "${srvs[-1]}" 2>/dev/null || break; sleep 0.1; done
		[ -f "$data/url" ] || { echo "otaserve replica $r did not start:" >&2; tail -n 20 "$run/otaserve$r.log" >&2; exit 1; }
		urls+=("$(cat "$data/url")")
	done
	"$bin/otaserve" order-key --data "$run/data1" -o "$run/order.pub" >/dev/null

	local t_start
	t_start=$(date +%s%N)
	local cpu0_srv=0 p
	sample "${srvs[@]}" "${brokers[@]}"; pg_sample
	cpu0_srv=$(ticks_of "${srvs[@]}")
	local cpu0_brokers cpu0_pg=$pg_ticks
	cpu0_brokers=$(ticks_of "${brokers[@]}")
	for ((j = 0; j < S; j++)); do
		"$bin/otafleet-sim" --server "${urls[j % R]}" --token "$(cat "$run/data1/token")" \
			--mqtt "tcp://127.0.0.$((10 + j % E)):$edgeport" --ca "$run/data1/ca.pem" --order-key "$run/order.pub" \
			--key "$work/pub.pem" --v1 "$work/v1.img" --campaign=false --product "fleet-e$((j % E))" --group fleet -n "${sim_n[j]}" --first "${sim_first[j]}" \
			--ready "$run/ready$j" --times "$run/times$j" --timeout "${TIMEOUT:-60m}" >"$run/sim$j.log" 2>&1 &
		simps+=($!) started+=($!)
	done
	# Every simulator has all its devices connected, or one has failed.
	local ready
	while :; do
		ready=0
		for ((j = 0; j < S; j++)); do
			[ -f "$run/ready$j" ] && ready=$((ready + 1)) && continue
			kill -0 "${simps[j]}" 2>/dev/null || { echo "simulator $j ended before its devices connected:" >&2; tail -n 20 "$run/sim$j.log" >&2; exit 1; }
		done
		[ "$ready" -lt "$S" ] || break
		sample "${simps[@]}" "${srvs[@]}" "${brokers[@]}"
		sleep 2 # VmHWM is a high-water mark: polling often adds nothing but load
	done
	local t_conn
	t_conn=$(date +%s%N)
	echo "registered, provisioned and connected $n devices in $(((t_conn - t_start) / 1000000)) ms (the simulators' connects took $(grep -h '^connected' "$run"/sim*.log | sed 's/.* in //' | paste -sd, - | sed 's/,/, /g'))"

	# One campaign for every simulator's devices, on replica 1 (it started
	# first and holds the campaigns' lease). The clock starts before the
	# request, which returns once every order is stored and published.
	local img out t0 t_created
	out=$("$bin/otaserve" image upload --data "$run/data1" --board b-l475e-iot01a "$work/v2.img")
	img=$(sed -n 's/^image \([0-9]*\):.*/\1/p' <<<"$out")
	t0=$(date +%s%N)
	"$bin/otaserve" campaign create --data "$run/data1" --image "$img" --target group=fleet --waves 100% --success 100 >"$run/campaign.log" 2>&1 &
	local create=$! created=""
	local status=0 left ended=()
	while :; do
		left=0
		for ((j = 0; j < S; j++)); do
			[ -z "${ended[j]:-}" ] || continue
			if kill -0 "${simps[j]}" 2>/dev/null; then left=$((left + 1)); continue; fi
			ended[j]=1
			wait "${simps[j]}" || { status=$?; break 2; }
		done
		if [ -z "$created" ] && ! kill -0 "$create" 2>/dev/null; then
			t_created=$(date +%s%N) created=1
			wait "$create" || { echo "campaign create failed:" >&2; cat "$run/campaign.log" >&2; exit 1; }
		fi
		[ "$left" -gt 0 ] || break
		sample "${simps[@]}" "${srvs[@]}" "${brokers[@]}"; pg_sample
		sleep 2
	done
	if [ -z "$created" ]; then wait "$create" || true; t_created=$(date +%s%N); fi
	sample "${srvs[@]}" "${brokers[@]}"; pg_sample
	if [ "$status" -ne 0 ]; then
		echo "N = $n failed"
		for ((j = 0; j < S; j++)); do echo "-- simulator $j"; tail -n 5 "$run/sim$j.log"; done
		tail -n 20 "$run/otaserve1.log"
		exit "$status"
	fi

	# Every device's order and confirm, from every simulator.
	local confirmed
	confirmed=$(cat "$run"/times* | awk '$3 > 0' | wc -l)
	echo "$confirmed of $n devices confirmed v2 (the campaign request took $(((t_created - t0) / 1000000)) ms)"
	cat "$run"/times* | awk -v t0="$t0" -v n="$n" '
		NR == 1 { first = $2; lastorder = $2 }
		{ if ($3 > last) last = $3; if ($2 < first) first = $2; if ($2 > lastorder) lastorder = $2; printf "%.0f\n", $3 - $2 }
		END {
			printf "time to the last confirm:   %.3f s\ndevices upgraded per second: %.1f\n", (last - t0) / 1e9, n / ((last - t0) / 1e9) > "/dev/stderr"
			printf "orders received from %.3f s to %.3f s after the campaign request began\n", (first - t0) / 1e9, (lastorder - t0) / 1e9 > "/dev/stderr"
		}' \
		2>"$run/summary" | sort -n >"$run/per"
	cat "$run/summary"
	awk '{ d[NR] = $1 } END {
		split("50 90 99", ps, " ")
		for (k = 1; k <= 3; k++) { i = int((NR * ps[k] + 99) / 100); if (i < 1) i = 1; v[k] = d[i] / 1e9 }
		printf "order to confirm, per device: p50 %.3f s  p90 %.3f s  p99 %.3f s  max %.3f s\n", v[1], v[2], v[3], d[NR] / 1e9 }' "$run/per"

	# Memory: each simulator reports its own peak (it ends before a poll
	# could see its last moments); the rest were polled twice a second.
	local simk=0 k
	for ((j = 0; j < S; j++)); do
		k=$(sed -n 's/^simulator peak RSS: \([0-9]*\) KiB.*/\1/p' "$run/sim$j.log")
		simk=$((simk + ${k:-${peak[${simps[j]}]:-0}}))
	done
	local srvk brokk hubk edgek=""
	srvk=$(sum_of "${srvs[@]}") brokk=$(sum_of "${brokers[@]}") hubk=${peak[${brokers[0]}]:-0}
	for ((i = 0; i < E; i++)); do
		edgek+="${edgek:+, }$(mib "${peak[${edgeps[i]}]:-0}") MiB for ${edge_n[i]} ($(per "${peak[${edgeps[i]}]:-0}" "${edge_n[i]}") KiB per client)"
	done
	echo "peak RSS: simulators $(mib "$simk") MiB ($(per "$simk" "$n") KiB per device, sum of $S), otaserve $(mib "$srvk") MiB ($(per "$srvk" "$n") KiB per device, sum of $R), brokers $(mib "$brokk") MiB ($(per "$brokk" "$n") KiB per device, hub $(mib "$hubk") MiB and $E edges), PostgreSQL $(mib "$pg_pss_peak") MiB ($(per "$pg_pss_peak" "$n") KiB per device, peak of the sum of its processes' Pss)"
	echo "edges: $edgek"
	local simt
	simt=$(sed -n 's/^simulator peak RSS: .*CPU time \([0-9.]*\) s$/\1/p' "$run"/sim*.log | awk '{ s += $1 } END { printf "%.0f", s }')
	echo "CPU time over the whole run: simulators $simt s, otaserve $(secs $(($(ticks_of "${srvs[@]}") - cpu0_srv))) s, brokers $(secs $(($(ticks_of "${brokers[@]}") - cpu0_brokers))) s, PostgreSQL $(secs $((pg_ticks - cpu0_pg))) s"

	local t
	t=$(date +%s%N)
	for p in "${srvs[@]}"; do kill -INT "$p" 2>/dev/null || true; done
	for p in "${srvs[@]}"; do wait "$p" 2>/dev/null || true; done
	echo "otaserve replicas stopped $(((($(date +%s%N) - t)) / 1000000)) ms after SIGINT"
	for p in "${brokers[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
	for p in "${brokers[@]}"; do wait "$p" 2>/dev/null || true; done
	started=()
	"$pgbin/dropdb" -h 127.0.0.1 -p "$pgport" -U postgres --force "$db" || true
}

for n in "${counts[@]}"; do run_mosquitto "$n"; done
