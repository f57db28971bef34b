// Package image reads, writes, signs and verifies firmware images in the
// MCUboot format, so that an image otaport installs is one MCUboot's
// bootloader and its imgtool accept, and the reverse.
//
// An image is a 32-byte header, the payload at the header's size, a
// protected TLV area covered by the hash (security counter), and an
// unprotected TLV area holding the SHA-256 of everything before it, the hash
// of the signing key and the signature. docs/image-format.md has the byte
// layout.
//
// Parse checks structure only; Verify and StreamVerifier also check the hash
// and the signature. StreamVerifier exists for the download path, where the
// image arrives in chunks that go to flash as they come and must not be read
// back a second time.
//
// A compressed image (imgtool --compression lzma2 or lzma2armthumb) carries
// a raw LZMA2 payload, optionally ARM-Thumb filtered, and DECOMP_* TLVs
// describing the plain image the bootloader rebuilds from it: Sign makes
// them, Verify checks both images, Decompress and PayloadReader rebuild the
// plain one. The stream verifier checks the compressed image only: the
// plain image's hash starts with a header built from TLVs at the end of
// the stream, so it is checked once the plain image is written (the engine
// reads it back).
//
// The package does not decrypt payloads, and verifies SHA-256
// images signed with ed25519, ECDSA P-256 or RSA-PSS 2048/3072 only: the
// signature types otaport's boards use. Other images parse but fail to
// verify with ErrUnsupported.
package image
