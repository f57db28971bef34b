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
// An encrypted image (imgtool -E) carries its payload AES-CTR encrypted
// and the AES key wrapped for the device's key in an ENC_* TLV, as
// MCUboot's docs/encrypted_images.md defines it: Sign encrypts, UnwrapKey
// and PayloadCipher decrypt, and VerifyWith checks the hash and signature
// over the plain payload they cover. The stream verifier is given the
// payload decrypted (SetDecrypted): the key TLV comes at the end of the
// stream, so its caller reads it ahead.
//
// The package verifies SHA-256
// images signed with ed25519, ECDSA P-256 or RSA-PSS 2048/3072 only: the
// signature types otaport's boards use. Other images parse but fail to
// verify with ErrUnsupported.
package image
