package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"

	"github.com/otaport/otaport/core/delta"
	"github.com/otaport/otaport/core/image"
	"github.com/otaport/otaport/fleet/api"
)

// A delta image is signed with the image key, and otaserve holds only the
// public halves of its keys (--key PUB.pem): it checks images, it never
// signs one. So `image upload --delta-from` makes the delta here, where
// the operator's private key is, from the base image otaserve stores,
// and uploads it as any delta image; the server checks its signature
// and links it to its base and target by hash.

// deltaHeaderSize is the header room of the delta images made here, as
// otaimg diff makes them: a patch never runs in place, so it needs no
// vector-table alignment.
const deltaHeaderSize = 0x20

// uploadWithDelta uploads the full image in file (unless otaserve has it
// already) and a delta image that rebuilds it from the stored image of
// board and version from, signed with keyPath's key.
func (c *conn) uploadWithDelta(file, board, version, from, keyPath string) error {
	key, err := image.ReadPrivateKey(keyPath)
	if err != nil {
		return fmt.Errorf("--key: %w", err)
	}
	newData, newImg, err := fullImage(file, os.ReadFile)
	if err != nil {
		return err
	}
	var imgs []api.Image
	if err := c.call(http.MethodGet, "/images", "", nil, &imgs); err != nil {
		return err
	}
	base, err := baseImage(imgs, board, from)
	if err != nil {
		return err
	}
	baseData, baseImg, err := fullImage(fmt.Sprintf("image %d", base.ID), func(string) ([]byte, error) { return c.download(base) })
	if err != nil {
		return err
	}
	target, err := c.uploadOnce(imgs, file, newData, newImg, board, version)
	if err != nil {
		return err
	}
	patch, err := delta.Encode(baseData, newData, delta.Options{})
	if err != nil {
		return fmt.Errorf("diff image %d and %s: %w", base.ID, file, err)
	}
	d, err := image.SignDelta(baseImg, newImg, patch, key, image.SignOptions{HeaderSize: deltaHeaderSize})
	if err != nil {
		return fmt.Errorf("sign the delta image with %s: %w", keyPath, err)
	}
	var di api.Image
	q := url.Values{"board": {board}}
	if err := c.call(http.MethodPost, "/images?"+q.Encode(), "application/octet-stream", bytes.NewReader(d), &di); err != nil {
		return fmt.Errorf("upload the delta image from %s: %w", base.Version, err)
	}
	if c.json {
		return c.printJSON([]api.Image{target, di})
	}
	printImage(c.out, target)
	printImage(c.out, di)
	return nil
}

// fullImage reads a full image with read and returns its bytes up to its
// end (without a padded image's padding) and what it says.
func fullImage(name string, read func(string) ([]byte, error)) ([]byte, *image.Image, error) {
	data, err := read(name)
	if err != nil {
		return nil, nil, err
	}
	img, err := image.Parse(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", name, err)
	}
	if img.Delta != nil {
		return nil, nil, fmt.Errorf("%s is a delta image: --delta-from goes between full images", name)
	}
	return data[:img.TotalSize], img, nil
}

// baseImage finds the stored full image of board and version from, the
// latest uploaded when there are several.
func baseImage(imgs []api.Image, board, from string) (api.Image, error) {
	var base api.Image
	var have []string
	for _, img := range imgs {
		if img.Board != board || img.DeltaTarget != 0 {
			continue
		}
		have = append(have, img.Version)
		if image.SameVersion(img.Version, from) {
			base = img
		}
	}
	if base.ID == 0 {
		return base, fmt.Errorf("--delta-from %s: otaserve has no full image of version %s for board %s (it has %v): upload it first, or name one of those", from, from, board, have)
	}
	return base, nil
}

// download reads a stored image's file and checks it against its SHA-256.
func (c *conn) download(img api.Image) ([]byte, error) {
	req, err := http.NewRequest(http.MethodGet, c.base+api.Prefix+"/images/"+strconv.FormatUint(img.ID, 10)+"/file", nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("reach otaserve at %s (--server): %w", c.base, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("download image %d: %s", img.ID, resp.Status)
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, img.Size+1))
	if err != nil {
		return nil, fmt.Errorf("download image %d: %w", img.ID, err)
	}
	if sum := sha256.Sum256(data); hex.EncodeToString(sum[:]) != img.SHA256 {
		return nil, fmt.Errorf("download image %d: its file does not have the SHA-256 %s otaserve lists", img.ID, img.SHA256)
	}
	return data, nil
}

// uploadOnce uploads a full image unless otaserve has one of board with
// its hash already, and returns otaserve's record of it.
func (c *conn) uploadOnce(imgs []api.Image, file string, data []byte, img *image.Image, board, version string) (api.Image, error) {
	hash := hex.EncodeToString(img.Hash)
	for _, have := range imgs {
		if have.Board == board && have.DeltaTarget == 0 && have.Hash == hash {
			return have, nil
		}
	}
	return c.upload(file, bytes.NewReader(data), board, version)
}

// upload sends an image file to otaserve.
func (c *conn) upload(file string, r io.Reader, board, version string) (api.Image, error) {
	q := url.Values{"board": {board}}
	if version != "" {
		q.Set("version", version)
	}
	var img api.Image
	if err := c.call(http.MethodPost, "/images?"+q.Encode(), "application/octet-stream", r, &img); err != nil {
		return api.Image{}, fmt.Errorf("upload %s: %w", file, err)
	}
	return img, nil
}

// printImage says what otaserve stored: a full image, or a delta image and
// the share of its target's size it sends.
func printImage(w io.Writer, img api.Image) {
	if img.DeltaTarget == 0 {
		fmt.Fprintf(w, "image %d: %s for %s, %d bytes, sha256 %s, signed %s\n", img.ID, img.Version, img.Board, img.Size, img.SHA256, img.SignatureType)
		return
	}
	fmt.Fprintf(w, "image %d: delta image from image %d to image %d (%s) for %s, %d bytes, sha256 %s, signed %s\n",
		img.ID, img.DeltaBase, img.DeltaTarget, img.Version, img.Board, img.Size, img.SHA256, img.SignatureType)
}
