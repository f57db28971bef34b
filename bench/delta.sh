#!/usr/bin/env bash
# The delta benchmark: for every pair of firmware builds in the corpus, the
# size of otaport's patch (core/delta, the raw patch without the delta
# image's header and TLVs) beside bsdiff, xdelta3 -9, zstd -19 --patch-from
# and xz -9e of the whole new image, as bytes and as a share of the new
# image; the ratio of ours to the best other; the diff and apply times; the
# apply peak memory (maximum resident set of the applying process, and for
# ours the decoder's fixed state and the largest checkpoint too). Every
# apply is checked against the new image.
#
# Usage: bench/delta.sh [CORPUS]   (or DELTA_CORPUS=...; default ../shared/corpus)
# A pair is a directory of the corpus holding two .bin files; the lower
# version (sort -V) is the old one. The Debian packages bsdiff, xdelta3,
# zstd, xz-utils and time are installed when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
corpus=${1:-${DELTA_CORPUS:-../shared/corpus}}
[ -d "$corpus" ] || { echo "delta.sh: corpus $corpus not found: give its directory as the argument or in DELTA_CORPUS" >&2; exit 2; }

need=()
for p in bsdiff:bsdiff xdelta3:xdelta3 zstd:zstd xz:xz-utils /usr/bin/time:time; do
	command -v "${p%%:*}" >/dev/null || need+=("${p#*:}")
done
if [ ${#need[@]} -gt 0 ]; then
	sudo=""
	[ "$(id -u)" = 0 ] || sudo="sudo"
	$sudo apt-get install -y "${need[@]}" >/dev/null
fi

bin=${BIN:-bin}
go build -o "$bin/" ./bench/otadelta
work=$(mktemp -d "${TMPDIR:-/tmp}/otaport-delta.XXXXXX")
trap 'rm -rf "$work"' EXIT

# timed OUT CMD...: runs CMD, appends "seconds max-rss-KiB" to OUT.
timed() {
	local out=$1
	shift
	/usr/bin/time -f '%e %M' -o "$work/time" "$@" >/dev/null
	cat "$work/time" >>"$out"
}

echo "| pair | new image | tool | patch | share | diff s | apply s | apply peak RSS |"
echo "|---|---|---|---|---|---|---|---|"
summary=()
for dir in "$corpus"/*/; do
	mapfile -t bins < <(cd "$dir" && ls -1 -- *.bin 2>/dev/null | sort -V)
	[ ${#bins[@]} -eq 2 ] || continue
	pair=$(basename "$dir")
	old=$dir${bins[0]} new=$dir${bins[1]}
	size=$(stat -c %s "$new")
	best="" bestsize=0
	row() { # tool patch-file diff-time-file apply-time-file
		local bytes share
		bytes=$(stat -c %s "$2")
		share=$(awk -v b="$bytes" -v s="$size" 'BEGIN { printf "%.2f %%", 100 * b / s }')
		read -r dt _ <"$3"
		read -r at am <"$4"
		echo "| $pair | $size | $1 | $bytes | $share | $dt | $at | $am KiB |"
	}
	check() { cmp -s "$1" "$new" || { echo "delta.sh: $2 on $pair did not rebuild the new image" >&2; exit 1; }; }
	others() {
		local bytes
		bytes=$(stat -c %s "$2")
		if [ -z "$best" ] || [ "$bytes" -lt "$bestsize" ]; then best=$1 bestsize=$bytes; fi
	}

	: >"$work/d" ; : >"$work/a"
	timed "$work/d" "$bin/otadelta" diff "$old" "$new" "$work/ours"
	"$bin/otadelta" apply "$old" "$work/ours" "$work/out" >"$work/ours.apply"
	timed "$work/a" "$bin/otadelta" apply "$old" "$work/ours" "$work/out"
	check "$work/out" otaport
	read -r _ heap state cp <"$work/ours.apply"
	row "otaport" "$work/ours" "$work/d" "$work/a"
	oursize=$(stat -c %s "$work/ours")

	: >"$work/d" ; : >"$work/a"
	timed "$work/d" bsdiff "$old" "$new" "$work/bsdiff"
	timed "$work/a" bspatch "$old" "$work/out" "$work/bsdiff"
	check "$work/out" bsdiff
	row bsdiff "$work/bsdiff" "$work/d" "$work/a"; others bsdiff "$work/bsdiff"

	: >"$work/d" ; : >"$work/a"
	timed "$work/d" xdelta3 -9 -e -f -s "$old" "$new" "$work/xdelta3"
	timed "$work/a" xdelta3 -d -f -s "$old" "$work/xdelta3" "$work/out"
	check "$work/out" xdelta3
	row "xdelta3 -9" "$work/xdelta3" "$work/d" "$work/a"; others "xdelta3 -9" "$work/xdelta3"

	: >"$work/d" ; : >"$work/a"
	# zstd prints tuning advice on stderr at -19 with --patch-from.
	timed "$work/d" sh -c 'zstd -q -f -19 --patch-from="$1" "$2" -o "$3" 2>/dev/null' zstd "$old" "$new" "$work/zstd"
	timed "$work/a" zstd -q -f -d --patch-from="$old" "$work/zstd" -o "$work/out"
	check "$work/out" zstd
	row "zstd -19 --patch-from" "$work/zstd" "$work/d" "$work/a"; others "zstd -19 --patch-from" "$work/zstd"

	: >"$work/d" ; : >"$work/a"
	timed "$work/d" sh -c 'xz -9e -c "$1" >"$2"' xz "$new" "$work/xz"
	timed "$work/a" sh -c 'xz -d -c "$1" >"$2"' xz "$work/xz" "$work/out"
	check "$work/out" xz
	row "xz -9e (whole image)" "$work/xz" "$work/d" "$work/a"; others "xz -9e" "$work/xz"

	summary+=("$(awk -v p="$pair" -v o="$oursize" -v b="$bestsize" -v n="$best" -v h="$heap" -v s="$state" -v c="$cp" \
		'BEGIN { printf "| %s | %d | %s, %d | %.3f | %d | %d | %d |", p, o, n, b, o / b, s, h, c }')")
done
echo
echo "| pair | otaport patch | best other | ours / best | decoder state (B) | heap allocated by the apply (B) | largest checkpoint (B) |"
echo "|---|---|---|---|---|---|---|"
printf '%s\n' "${summary[@]}"
