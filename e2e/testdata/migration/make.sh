#!/usr/bin/env bash
# make.sh BIN OUT: makes the old state of TestMigration with the commands of
# the release before signed orders (BIN holds its otarun, otaserve, otaimg and
# otaport-nucleo-h743zi), as that release's demo did, into the new directory
# OUT. See README.md.
set -euo pipefail
bin=$(cd "$1" && pwd)
mkdir "$2"
out=$(cd "$2" && pwd)
cd "$out"
board=nucleo-h743zi dev=dev-old
pids=()
trap 'for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done; for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done' EXIT

"$bin/otaimg" keygen --type ecdsa-p256 -o key.pem >/dev/null
"$bin/otaimg" getpub --key key.pem -o pub.pem >/dev/null
# A small application, so the flash file compresses to little.
for i in $(seq 256); do printf 'otaport migration test application, line %04d\n' "$i"; done >app.bin
for v in 1.0.0 1.1.0; do
	"$bin/otaimg" sign --key key.pem --version "$v" --pad-header app.bin "app-$v.img" >/dev/null
done
"$bin/otarun" --plugin "$bin/otaport-$board" provision --key pub.pem --flash "$dev.flash" app-1.0.0.img 2>provision.log

"$bin/otaserve" run --data data --http 127.0.0.1:0 --mqtt 127.0.0.1:0 --key pub.pem >otaserve.log 2>&1 &
pids+=($!)
for _ in $(seq 100); do
	grep -q 'MQTT on' otaserve.log && [ -f data/url ] && break
	sleep 0.1
done
mqtt=$(sed -n 's/.*MQTT on \([0-9.]*:[0-9]*\).*/\1/p' otaserve.log | head -n 1)
serve() { local g=$1 v=$2; shift 2; "$bin/otaserve" "$g" "$v" --data data "$@"; }

# As the demo of that release registers a device and writes its device.yaml.
secret=$(serve device add --product demo --name "$dev" --board "$board" --group demo | sed -n 's/^device secret (shown once): //p')
printf '%s\n' "$secret" >"$dev.secret"
cat >"$dev.yaml" <<YAML
broker: tcp://$mqtt
identity: {product_key: demo, device_name: $dev, device_secret_file: $dev.secret}
public_keys: [pub.pem]
# The demo's self-test: any 1.2.x image is "broken".
health_check:
  command: [sh, -c, 'case "\$OTARUN_VERSION" in 1.2.*) echo "self-test failed: sensor bus timeout in \$OTARUN_VERSION" >&2; exit 1;; esac']
  timeout: 5s
report_interval: 1s
YAML
"$bin/otarun" --plugin "$bin/otaport-$board" agent --config "$dev.yaml" --flash "$dev.flash" >"$dev.events" 2>"$dev.log" &
pids+=($!)
agent=$!
for _ in $(seq 300); do
	serve device list | grep -q " 1\.0\.0+0 " && break
	sleep 0.1
done
img=$(serve image upload --board "$board" app-1.1.0.img | sed -n 's/^image \([0-9]*\):.*/\1/p')
campaign=$(serve campaign create --image "$img" --target "devices=demo/$dev" | sed -n 's/^campaign \([0-9]*\):.*/\1/p')
for _ in $(seq 600); do
	serve campaign status "$campaign" | sed -n 1p | grep -q 'finished' && break
	sleep 0.1
done
serve campaign status "$campaign" | sed -n 1p
serve device list
kill -TERM "$agent"; wait "$agent" || true
kill -TERM "${pids[0]}"; wait "${pids[0]}" || true
pids=()

# The smallest faithful form: the database and the flash file compressed,
# the rest as the release left it.
gzip -9n data/fleet.db "$dev.flash"
rm -f app.bin app-1.0.0.img app-1.1.0.img otaserve.log provision.log "$dev.events" "$dev.log" data/url
