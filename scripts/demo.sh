#!/usr/bin/env bash
# The quick-start demo: validate the catalog, show the board, and run the port
# conformance kit through the real plugin boundary on a scratch flash file.
set -euo pipefail
cd "$(dirname "$0")/.."
board=${1:-stm32f407-disco}
bin=${BIN:-bin}

echo "== otagen validate boards.yaml"
"$bin/otagen" validate boards.yaml
echo
echo "== otagen list boards.yaml"
"$bin/otagen" list boards.yaml
echo
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "== otarun info ($board)"
OTAPORT_FLASH="$work/$board.flash" "$bin/otarun" --plugin "$bin/otaport-$board" info
echo
echo "== otarun conformance ($board)"
"$bin/otarun" --plugin "$bin/otaport-$board" conformance
