#!/usr/bin/env bash
# The one-command demo (make demo): otaserve with its embedded broker, four
# simulated devices on four catalog boards (each its own port plugin
# process and flash file), a campaign to v1.1.0 that every device takes and
# confirms, then a campaign to v1.2.0, an image that fails its health check,
# from which the three dual-bank devices roll back to v1.1.0 on their own.
# The fourth device is single-bank, on an nRF5340-DK whose MCUboot is built
# overwrite-only: at the power-on MCUboot copied v1.2.0 over its primary
# slot, v1.1.0 with it, so there is no old image to return to. It reports
# the failure once, keeps v1.2.0 running and does not reset itself again,
# not even after its agent is restarted (the state loop guard persists in
# the device's params).
#
# How an image "fails its health check": the devices' health check
# (health_check in each device.yaml) is a shell command that gets the
# version now running in OTARUN_VERSION; the demo's command fails for any
# 1.2.x version, as a real self-test would fail for a broken build. The
# images differ only in their signed version.
#
# Everything runs on 127.0.0.1 in a temporary directory that is removed at
# the end, with every process the demo started (see cleanup). otaserve's
# dashboard sign-in link is printed at the start; DEMO_KEEP=1 keeps
# everything running at the end, with a fresh link, until Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${BIN:-bin}
boards=(nucleo-h743zi b-l475e-iot01a stm32f769i-disco nrf5340-dk)
devices=(dev-a dev-b dev-c dev-d)
single=3 # the index of the single-bank device (MCUboot overwrite-only)

for b in otarun otaserve otaimg "${boards[@]/#/otaport-}"; do
	if [ ! -x "$bin/$b" ]; then
		echo "demo: $bin/$b is missing: run 'make demo' (or 'make build' first)" >&2
		exit 1
	fi
done
bin=$(cd "$bin" && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/otaport-demo.XXXXXX")
pids=()

cleanup() {
	local status=$?
	trap - EXIT INT TERM
	# Agents first (SIGTERM: they save their state and stop), then otaserve.
	for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
	for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
	if [ "$status" -ne 0 ]; then
		echo "demo failed; the last lines of each log:" >&2
		for f in "$work"/*.log; do
			[ -f "$f" ] || continue
			echo "--- $(basename "$f")" >&2
			tail -n 8 "$f" >&2
		done
	fi
	rm -rf "$work"
	exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# serve GROUP VERB ARGS...: the otaserve CLI against the demo's server.
serve() {
	local group=$1 verb=$2
	shift 2
	"$bin/otaserve" "$group" "$verb" --data "$work/data" "$@"
}
step() { printf '\n== %s\n' "$*"; }

step "keys and images"
"$bin/otaimg" keygen --type ecdsa-p256 -o "$work/key.pem" >/dev/null
"$bin/otaimg" getpub --key "$work/key.pem" -o "$work/pub.pem" >/dev/null
# A 256 KiB "application"; each version is the same bytes signed anew.
head -c 262144 /dev/urandom >"$work/app.bin"
for v in 1.0.0 1.1.0 1.2.0; do
	"$bin/otaimg" sign --key "$work/key.pem" --version "$v" --pad-header "$work/app.bin" "$work/app-$v.img"
done

step "provision four devices with v1.0.0"
for i in "${!boards[@]}"; do
	"$bin/otarun" --plugin "$bin/otaport-${boards[$i]}" provision \
		--key "$work/pub.pem" --flash "$work/${devices[$i]}.flash" "$work/app-1.0.0.img" 2>>"$work/provision.log"
done

step "start otaserve (API, firmware server, embedded MQTT broker; TLS with its own CA, which devices pin)"
"$bin/otaserve" run --data "$work/data" --http 127.0.0.1:0 --mqtt 127.0.0.1:0 --key "$work/pub.pem" \
	>"$work/otaserve.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do
	grep -q 'MQTT on' "$work/otaserve.log" 2>/dev/null && [ -f "$work/data/url" ] && break
	sleep 0.1
done
mqtt=$(sed -n 's/.*MQTT on \([0-9.]*:[0-9]*\).*/\1/p' "$work/otaserve.log" | head -n 1)
[ -n "$mqtt" ] || { echo "demo: otaserve did not start" >&2; exit 1; }
echo "API and firmware on $(cat "$work/data/url"), MQTT on $mqtt"
dashboard=$(sed -n 's/.*dashboard sign-in link.*: \(http[^ ]*\)$/\1/p' "$work/otaserve.log" | head -n 1)
echo "dashboard: open $dashboard to watch (single use, valid 5 minutes; DEMO_KEEP=1 keeps the demo running at the end;"
echo "  the browser does not know otaserve's CA: import $work/data/ca.pem, or accept its warning)"

# start_agent I: the agent of device I, its events and log appended to.
start_agent() {
	local d=${devices[$1]} b=${boards[$1]}
	"$bin/otarun" --plugin "$bin/otaport-$b" agent --config "$work/$d.yaml" --flash "$work/$d.flash" \
		>>"$work/$d.events" 2>>"$work/$d.log" &
	pids+=($!)
	agent_pid[$1]=$!
}
agent_pid=()

# Orders are signed with otaserve's order key (made at its first start);
# each device checks them with its public half.
"$bin/otaserve" order-key --data "$work/data" -o "$work/order.pub"

step "register the devices and start their agents"
for i in "${!boards[@]}"; do
	d=${devices[$i]} b=${boards[$i]}
	secret=$(serve device add --product demo --name "$d" --board "$b" --group demo | sed -n 's/^device secret (shown once): //p')
	printf '%s\n' "$secret" >"$work/$d.secret"
	identity="device_secret_file: $d.secret"
	if [ "$i" -eq 1 ]; then
		# This one signs in by a certificate of otaserve's CA instead:
		# its key is made here and never leaves it.
		serve device cert "demo/$d" --key "$work/$d.key" --out "$work/$d.crt" >/dev/null
		identity="cert: $d.crt, key: $d.key"
	fi
	cat >"$work/$d.yaml" <<EOF
broker: ssl://$mqtt
ca: data/ca.pem
identity: {product_key: demo, device_name: $d, $identity}
public_keys: [pub.pem]
order_key: order.pub
# The demo's self-test: any 1.2.x image is "broken".
health_check:
  command: [sh, -c, 'case "\$OTARUN_VERSION" in 1.2.*) echo "self-test failed: sensor bus timeout in \$OTARUN_VERSION" >&2; exit 1;; esac']
  timeout: 5s
report_interval: 1s
EOF
	start_agent "$i"
	echo "$d: $b, agent pid ${agent_pid[$i]}$( [ "$i" -eq 1 ] && echo ", signed in by certificate")"
done
# wait_versions VERSION [SINGLE]: until every device reports VERSION, the
# single-bank one SINGLE if given (or 60 s).
wait_versions() {
	local want="" i
	for i in "${!devices[@]}"; do
		if [ "$i" -eq "$single" ]; then want+="${devices[$i]}=${2:-$1} "; else want+="${devices[$i]}=$1 "; fi
	done
	for _ in $(seq 600); do
		if [ "$(serve device list | awk 'NR > 1 { print $2 "=" $5 }' | sort | tr '\n' ' ')" = "$want" ]; then
			return 0
		fi
		sleep 0.1
	done
	echo "demo: the devices do not report $want:" >&2
	serve device list >&2
	return 1
}
wait_versions 1.0.0+0
serve device list

# campaign VERSION: upload the image of VERSION for each board, start one
# campaign per device (so that each device's outcome reads on its own line;
# one campaign could also take the four boards, an image each), and follow
# them until none is running.
campaign() {
	local v=$1 ids=() i id
	for i in "${!boards[@]}"; do
		id=$(serve image upload --board "${boards[$i]}" "$work/app-$v.img" | sed -n 's/^image \([0-9]*\):.*/\1/p')
		ids+=("$(serve campaign create --image "$id" --target "devices=demo/${devices[$i]}" --waves 100% \
			| sed -n 's/^campaign \([0-9]*\):.*/\1/p')")
	done
	echo "campaigns ${ids[*]} started"
	local last="" line running
	for _ in $(seq 600); do
		line="" running=0
		for id in "${ids[@]}"; do
			line+=$(serve campaign status "$id" | awk -v id="$id" '
				/^campaign / { st = $NF; sub(/:.*/, "", st); if ($0 ~ /, running$/) run = 1 }
				/^demo\// { printf "  %s %s", $1, $3; if ($4 ~ /%$/) printf " %s", $4 }
				END { if (run) print " *"; else print "" }')
		done
		running=${line//[^*]/}
		running=${#running}
		line=${line//\*/}
		if [ "$line" != "$last" ]; then
			echo "$line"
			last=$line
		fi
		[ "$running" -eq 0 ] && break
		sleep 0.2
	done
	for id in "${ids[@]}"; do serve campaign status "$id" | sed -n 1p; done
}

step "campaign 1: v1.1.0 to every device"
campaign 1.1.0
wait_versions 1.1.0+0

step "campaign 2: v1.2.0, which fails its health check"
campaign 1.2.0
wait_versions 1.1.0+0 1.2.0+0

# The single-bank device: count its resets, restart its agent, and count
# again once the new agent has reported its version.
d=${devices[$single]}
resets() { grep -c '^reboot: rebooting' "$work/$d.events" || true; }
informs() { grep -c '^inform ' "$work/$d.events" || true; }
before=$(resets) seen=$(informs)
step "restart the agent of $d (single bank, MCUboot overwrite-only, running the unhealthy v1.2.0)"
kill -TERM "${agent_pid[$single]}"
wait "${agent_pid[$single]}" 2>/dev/null || true
start_agent "$single"
for _ in $(seq 600); do
	[ "$(informs)" -gt "$seen" ] && break
	sleep 0.1
done
[ "$(informs)" -gt "$seen" ] || { echo "demo: the restarted agent of $d did not report its version" >&2; exit 1; }
after=$(( $(resets) - before ))
failed=$(grep -c '^failed ' "$work/$d.events" || true)
echo "agent of $d restarted (pid ${agent_pid[$single]}): $after reset(s) since"

step "what each device did (its agent's events)"
for d in "${devices[@]}"; do
	echo "-- $d"
	grep -E '^(order|health|reboot|confirmed|failed|refused) ' "$work/$d.events" | sed 's/^/   /'
done

step "summary"
serve device list
echo
serve campaign list
echo
echo "every dual-bank device took v1.1.0 and confirmed it, then rolled back from v1.2.0 to v1.1.0 on its own."
# "1 reset": into v1.2.0; none for the failed health check, none after the restart.
r12=$(awk '/^order .* 1\.2\.0/ { on = 1 } on && /^reboot: rebooting/ { n++ } END { print n + 0 }' "$work/$d.events")
if [ "$failed" -eq 1 ]; then reported="reported once"; else reported="reported $failed times"; fi
echo "$d (${boards[$single]}, single bank, MCUboot overwrite-only) refuses to loop: v1.2.0 failed its health check, $reported, no old image to return to, so 1.2.0+0 stays; $r12 reset for it, $after after an agent restart"

# DEMO_KEEP=1: leave the server and the agents running for the dashboard,
# with a fresh sign-in link (the first one may be spent or expired), until
# Ctrl-C.
if [ -n "${DEMO_KEEP:-}" ]; then
	link=$(curl -fsS --cacert "$work/data/ca.pem" -X POST -H "Authorization: Bearer $(cat "$work/data/token")" "$(cat "$work/data/url")/api/v1/dashboard/login-link")
	step "the dashboard"
	echo "sign in at $link (single use, valid 5 minutes); Ctrl-C stops the demo and removes everything"
	while :; do sleep 1; done
fi
