#!/usr/bin/env bash
# The fleet benchmark: one otaserve (embedded broker) and N simulated devices
# in one otafleet-sim process (the real device agent over emulated flash in
# memory, no plugin processes), upgraded by one campaign. Prints devices
# upgraded per second, the time to the last confirm, per-device percentiles,
# peak memory per device and the CPU time of each side (which shows the side
# that limits the run). Usage: bench/fleet.sh [N...] (default 1000 10000)
set -euo pipefail
cd "$(dirname "$0")/.."
counts=("$@")
[ ${#counts[@]} -gt 0 ] || counts=(1000 10000)
bin=${BIN:-bin}
go build -o "$bin/" ./cmd/otaserve ./cmd/otaimg ./cmd/otafleet-sim
# Every device is a TCP connection on both sides.
ulimit -n 1048576 2>/dev/null || ulimit -n "$(ulimit -Hn)"
for n in "${counts[@]}"; do
	# Beyond the devices' connections each side keeps a few hundred
	# descriptors: HTTP connections, the database, the listeners.
	if [ "$(ulimit -n)" != unlimited ] && [ $((n + 1000)) -gt "$(ulimit -n)" ]; then
		echo "N = $n needs about $((n + 1000)) open files per process; this shell allows $(ulimit -n) (hard limit $(ulimit -Hn)): raise it (ulimit -Hn, or LimitNOFILE in a service) or use N <= $(($(ulimit -n) - 1000))" >&2
		exit 2
	fi
done

work=$(mktemp -d "${TMPDIR:-/tmp}/otaport-fleet.XXXXXX")
srv=""
cleanup() {
	[ -n "$srv" ] && kill -INT "$srv" 2>/dev/null && wait "$srv" 2>/dev/null || true
	rm -rf "$work"
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

for n in "${counts[@]}"; do
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
done
