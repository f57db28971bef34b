#!/bin/sh
# Regenerates the imgtool-signed images in this folder (see ../README.md).
# IMGTOOL is the command that runs MCUboot's imgtool, for example
#   IMGTOOL="python3 path/to/mcuboot/scripts/imgtool.py" sh make.sh
set -eu
cd "$(dirname "$0")"
: "${IMGTOOL:?set IMGTOOL to the imgtool command}"
K=../keys
S="sign -H 0x200 --pad-header -S 0x10000"
$IMGTOOL $S -k $K/ed25519.pem    -v 1.2.3+4   payload.bin ed25519.img
$IMGTOOL $S -k $K/ed25519.pem    -v 1.2.3+4 -s 7 payload.bin ed25519-sec.img
$IMGTOOL $S -k $K/ed25519.pem    -v 1.2.3+4 -s 7 -d "(1,2.0.0+0),(2,0.3.1+9)" payload.bin ed25519-dep.img
$IMGTOOL $S -k $K/ecdsa-p256.pem -v 2.0.1 -s auto payload.bin ecdsa-p256.img
$IMGTOOL $S -k $K/ecdsa-p256.pem -v 1.0.0 --public-key-format full payload.bin ecdsa-p256-pubkey.img
$IMGTOOL $S -k $K/rsa-2048.pem   -v 0.9.0+77  payload.bin rsa-2048.img
$IMGTOOL $S -k $K/rsa-3072.pem   -v 3.1.4+15 -s 42 payload.bin rsa-3072.img
$IMGTOOL $S -k $K/ed25519.pem    -v 1.0.0 -L 0x20000000 payload.bin ed25519-ramload.img
$IMGTOOL sign -H 0x20 --pad-header -S 0x10000 -v 1.0.0 payload.bin unsigned.img
$IMGTOOL sign -H 0x200 -S 0x10000 -k $K/ed25519.pem -v 1.2.3 payload-hdr.bin ed25519-hdr.img
$IMGTOOL sign -H 0x200 --pad-header -k $K/ed25519.pem -v 1.2.3 -s 5 --pad -S 0x2000 --align 4 payload.bin ed25519-pad.img
$IMGTOOL sign -H 0x200 --pad-header -k $K/ed25519.pem -v 1.2.3 --confirm -S 0x2000 --align 8 --max-align 16 payload.bin ed25519-confirm.img
$IMGTOOL sign -H 0x200 --pad-header -k $K/ed25519.pem -v 1.2.3 --pad --overwrite-only -S 0x2000 payload.bin ed25519-overwrite.img
# Compressed images, and the plain images they decompress to.
T="sign -H 0x200 --pad-header -S 0x10000 -k $K/ed25519.pem -v 1.3.0"
$IMGTOOL $T payload-thumb.bin ed25519-thumb.img
$IMGTOOL $T --compression lzma2 payload-thumb.bin ed25519-lzma2.img
$IMGTOOL $T -s 3 payload-thumb.bin ed25519-thumb-sec.img
$IMGTOOL $T -s 3 --compression lzma2armthumb payload-thumb.bin ed25519-lzma2armthumb.img
$IMGTOOL sign -H 0x200 -S 0x10000 -k $K/ecdsa-p256.pem -v 2.1.0 --compression lzma2armthumb payload-thumb-hdr.bin ecdsa-p256-lzma2armthumb-hdr.img
$IMGTOOL sign -H 0x200 --pad-header -S 0x10000 -v 1.3.0 --compression lzma2 payload-thumb.bin unsigned-lzma2.img
# Encrypted images (-E), for the encryption keys in ../keys: X25519, and the
# P-256 and RSA-2048 signing keys, whose type imgtool wants to match the
# signature's.
E="sign -H 0x200 --pad-header -S 0x10000 -v 1.4.0"
$IMGTOOL $E -k $K/ed25519.pem -E $K/enc-x25519.pub.pem payload.bin ed25519-enc-x25519.img
$IMGTOOL $E -k $K/ed25519.pem -E $K/enc-x25519.pub.pem --encrypt-keylen 256 --hmac-sha 512 payload.bin ed25519-enc-x25519-sha512-aes256.img
$IMGTOOL $E -k $K/ecdsa-p256.pem -E $K/ecdsa-p256.pub.pem -s 9 payload.bin ecdsa-p256-enc-ec256.img
$IMGTOOL $E -k $K/ecdsa-p256.pem -E $K/ecdsa-p256.pub.pem --encrypt-keylen 256 payload.bin ecdsa-p256-enc-ec256-aes256.img
$IMGTOOL $E -k $K/rsa-2048.pem -E $K/rsa-2048.pub.pem payload.bin rsa-2048-enc-rsa.img
$IMGTOOL $E -k $K/ed25519.pem -E $K/enc-x25519.pub.pem --pad -S 0x2000 --align 4 payload.bin ed25519-enc-x25519-pad.img
$IMGTOOL $E -k $K/ed25519.pem -E $K/enc-x25519.pub.pem --compression lzma2armthumb payload-thumb.bin ed25519-lzma2armthumb-enc-x25519.img
$IMGTOOL sign -H 0x28 --pad-header -S 0x10000 -v 1.4.0 -k $K/ed25519.pem -E $K/enc-x25519.pub.pem payload.bin ed25519-enc-x25519-h28.img
