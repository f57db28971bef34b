// Package delta is otaport's patch format: an encoder that turns a base image
// and a target image into a patch, and a streaming decoder that rebuilds the
// target from the patch and random access to the base, in a fixed amount of
// memory that does not grow with the images.
//
// The format is designed for a microcontroller's applier as much as for Go:
//   - the patch is a sequence of independently decodable blocks, each
//     producing a fixed span of the target (the block size), so an interrupted
//     apply resumes at the last finished block from a checkpoint of a few
//     hundred bytes (Checkpoint), re-sending at most one block;
//   - the streams are coded with an adaptive binary range coder with small
//     context models (no LZ window), so the decoder's whole state is
//     StateSize bytes whatever the image size;
//   - matching is bsdiff's: approximate matches against the base found with a
//     suffix array, carried as a byte-wise difference, and the bytes no match
//     covers carried as literals.
//
// The package knows nothing of images, signatures or flash: core/image wraps
// a patch in a signed delta image, and the engine feeds the decoder.
package delta
