#!/usr/bin/env bash
# Install benchmark: a signed image served over HTTP on loopback, installed
# through a real port plugin whose flash is a file, against the baseline of
# fetching the same file with curl and hashing it with sha256sum.
#
#   bench/install.sh              # 64 MiB, 5 runs
#   SIZE_MIB=16 RUNS=9 bench/install.sh
#   COMPARE_PLUGIN=/tmp/old/otaport-bench RUNS=11 bench/install.sh
#
# The install is the whole of `otarun install --digest sha256:...`: plugin
# start, HTTP, the order's digest and the image's SHA-256 as the bytes
# arrive, the writes through the plugin into the emulated flash, the
# read-back and its verification with the signature, and SetBoot (where the
# simulated bootloader checks the slot once more). The baseline does one
# download and one hash, so it is a bound the install cannot reach; the
# ratio says how close it comes. Each run times the baseline and then the
# install, back to back, so a run's ratio is measured under one load: on a
# shared machine the median of those ratios is the figure to compare, the
# best times of each side are printed beside it. docs/benchmarks.md
# records the figures.
#
# COMPARE_PLUGIN names another build of bench/otaport-bench (from an older
# tree, say): each run then also installs through it, with its own flash
# file, in alternating order with this tree's plugin, so that a change is
# measured against what it replaces under the same load.
set -euo pipefail
cd "$(dirname "$0")/.."

size_mib=${SIZE_MIB:-64}
runs=${RUNS:-5}
work=$(mktemp -d)
srv=
cleanup() {
  if [ -n "$srv" ]; then kill "$srv" 2>/dev/null || true; wait "$srv" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

echo "== build"
go build -o "$work/bin/" ./cmd/otarun ./cmd/otaimg ./bench/otaport-bench
bin=$work/bin

echo "== a ${size_mib} MiB payload, signed"
mkdir -p "$work/www"
head -c $((size_mib << 20)) /dev/urandom >"$work/app.bin"
# The bench board is rpi4-b's layout, which takes rsa-3072 images only.
"$bin/otaimg" keygen --type rsa-3072 -o "$work/key.pem" >/dev/null
"$bin/otaimg" getpub --key "$work/key.pem" -o "$work/pub.pem"
"$bin/otaimg" sign --key "$work/key.pem" --version 1.0.0 --pad-header "$work/app.bin" "$work/www/fw.img" >/dev/null
echo "factory image" >"$work/factory.bin"
"$bin/otaimg" sign --key "$work/key.pem" --version 0.9.0 --pad-header "$work/factory.bin" "$work/factory.img" >/dev/null
rm "$work/app.bin" "$work/factory.bin"
img_bytes=$(stat -c %s "$work/www/fw.img")
digest=$(sha256sum "$work/www/fw.img" | cut -d' ' -f1)

echo "== serve it on loopback (python3 -m http.server)"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')
python3 -m http.server --bind 127.0.0.1 --directory "$work/www" "$port" >/dev/null 2>&1 &
srv=$!
url=http://127.0.0.1:$port/fw.img
for _ in $(seq 50); do
  curl -sf -o /dev/null -r 0-0 "$url" && break
  sleep 0.1
done

compare=${COMPARE_PLUGIN:-}
if [ -n "$compare" ]; then
  cp "$compare" "$bin/otaport-bench-compare"
fi
# Make the devices once, outside the timings (only provision creates a
# flash file): each runs 0.9.0, and every timed install of 1.0.0 is an
# upgrade that overwrites the last one's pending request.
"$bin/otarun" --plugin "$bin/otaport-bench" --flash "$work/device.flash" provision --key "$work/pub.pem" "$work/factory.img" >/dev/null 2>&1
if [ -n "$compare" ]; then
  "$bin/otarun" --plugin "$bin/otaport-bench-compare" --flash "$work/compare.flash" provision --key "$work/pub.pem" "$work/factory.img" >/dev/null 2>&1
fi

# timed_install PLUGIN FLASH: one timed install, its time in ns on stdout.
timed_install() {
  local t0 t1
  t0=$(now)
  OTAPORT_FLASH=$2 "$bin/otarun" --plugin "$1" install --key "$work/pub.pem" --digest "sha256:$digest" "$url" >/dev/null 2>"$work/install.err" || {
    cat "$work/install.err" >&2
    return 1
  }
  t1=$(now)
  echo $((t1 - t0))
}

now() { date +%s%N; }
best_base=0
best_inst=0
ratios=()
cratios=()
for i in $(seq "$runs"); do
  t0=$(now)
  curl -s "$url" -o "$work/download.img"
  sha256sum "$work/download.img" >/dev/null
  t1=$(now)
  rm -f "$work/download.img"
  base=$((t1 - t0))
  cmp=
  if [ -n "$compare" ] && [ $((i % 2)) -eq 1 ]; then
    cmp=$(timed_install "$bin/otaport-bench-compare" "$work/compare.flash")
  fi
  inst=$(timed_install "$bin/otaport-bench" "$work/device.flash")
  if [ -n "$compare" ] && [ $((i % 2)) -eq 0 ]; then
    cmp=$(timed_install "$bin/otaport-bench-compare" "$work/compare.flash")
  fi
  line=$(awk -v i="$i" -v b="$base" -v n="$inst" 'BEGIN { printf "run %d: baseline %.3f s, install %.3f s, ratio %.2f", i, b / 1e9, n / 1e9, b / n }')
  if [ -n "$cmp" ]; then
    line+=$(awk -v b="$base" -v n="$cmp" 'BEGIN { printf "; compare %.3f s, ratio %.2f", n / 1e9, b / n }')
    cratios+=("$(awk -v b="$base" -v n="$cmp" 'BEGIN { printf "%.4f", b / n }')")
  fi
  echo "$line"
  ratios+=("$(awk -v b="$base" -v n="$inst" 'BEGIN { printf "%.4f", b / n }')")
  if [ "$best_base" -eq 0 ] || [ "$base" -lt "$best_base" ]; then best_base=$base; fi
  if [ "$best_inst" -eq 0 ] || [ "$inst" -lt "$best_inst" ]; then best_inst=$inst; fi
done

mbps() { awk -v n="$img_bytes" -v t="$1" 'BEGIN { printf "%.1f", n / (t / 1e9) / 1e6 }'; }
echo
median_of() { printf '%s\n' "$@" | sort -g | awk '{ r[NR] = $1 } END { if (NR % 2) print r[(NR + 1) / 2]; else print (r[NR / 2] + r[NR / 2 + 1]) / 2 }'; }
median=$(median_of "${ratios[@]}")
echo "image:     $img_bytes bytes, $runs runs"
echo "baseline:  $(mbps "$best_base") MB/s best  (curl -s URL -o file && sha256sum file)"
echo "install:   $(mbps "$best_inst") MB/s best  (otarun install --digest, through the plugin)"
echo "ratio:     $(awk -v m="$median" 'BEGIN { printf "%.2f", m }') median of the runs' ratios, $(awk -v b="$best_base" -v n="$best_inst" 'BEGIN { printf "%.2f", b / n }') best against best  (install throughput / baseline throughput)"
if [ -n "$compare" ]; then
  echo "compare:   $(awk -v m="$(median_of "${cratios[@]}")" 'BEGIN { printf "%.2f", m }') median of the runs' ratios with COMPARE_PLUGIN=$compare"
fi
