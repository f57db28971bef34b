package api

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/otaport/otaport/core/image"
	"github.com/otaport/otaport/fleet/store"
)

// TestUpload_DeltaImage: a delta image is checked by its signature and
// linked to the full images it goes between, which must be uploaded
// first; the images' files are readable through the API, with Range.
func TestUpload_DeltaImage(t *testing.T) {
	e := newEnv(t)
	full := func(version string) ([]byte, *image.Image) {
		b := e.signed(version, e.key)
		parsed, err := image.Parse(bytes.NewReader(b), int64(len(b)))
		if err != nil {
			t.Fatal(err)
		}
		return b, parsed
	}
	oldB, oldImg := full("1.0.0")
	newB, newImg := full("1.1.0")
	delta, err := image.SignDelta(oldImg, newImg, bytes.Repeat([]byte{3}, 400), e.key, image.SignOptions{HeaderSize: 0x20})
	if err != nil {
		t.Fatal(err)
	}
	upload := func(b []byte) (Image, int, string) {
		var img Image
		var apiErr Error
		code := e.do(http.MethodPost, "/images?board=b1", "application/octet-stream", bytes.NewReader(b), &img)
		if code != http.StatusCreated {
			e.do(http.MethodPost, "/images?board=b1", "application/octet-stream", bytes.NewReader(b), &apiErr)
		}
		return img, code, apiErr.Error
	}
	// Neither full image is uploaded yet, then only the target.
	if _, code, msg := upload(delta); code != http.StatusUnprocessableEntity || !strings.Contains(msg, "upload the full image first") {
		t.Errorf("a delta before its target: %d %q, want 422 asking for the full image", code, msg)
	}
	target, code, _ := upload(newB)
	if code != http.StatusCreated || target.Hash == "" || target.DeltaTarget != 0 {
		t.Fatalf("the target: %d %+v", code, target)
	}
	if _, code, msg := upload(delta); code != http.StatusUnprocessableEntity || !strings.Contains(msg, "upload the base image first") {
		t.Errorf("a delta before its base: %d %q, want 422 asking for the base image", code, msg)
	}
	base, _, _ := upload(oldB)
	d, code, msg := upload(delta)
	if code != http.StatusCreated {
		t.Fatalf("the delta: %d %s", code, msg)
	}
	if d.DeltaTarget != target.ID || d.DeltaBase != base.ID || d.DeltaBaseHash != base.Hash || d.Version != target.Version || d.Size != int64(len(delta)) {
		t.Errorf("the delta = %+v; want it linked to base %d (hash %s) and target %d", d, base.ID, base.Hash, target.ID)
	}
	// The base's file, as a client reads it to make a delta; resumable.
	req, _ := http.NewRequest(http.MethodGet, e.srv.URL+Prefix+"/images/"+strconv.FormatUint(base.ID, 10)+"/file", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Range", "bytes=100-")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusPartialContent || !bytes.Equal(got, oldB[100:]) || resp.Header.Get("ETag") != `"`+base.SHA256+`"` {
		t.Errorf("GET the base's file from byte 100: %s, %d bytes, ETag %s", resp.Status, len(got), resp.Header.Get("ETag"))
	}
	// The full images cannot go while the delta links them.
	if code := e.do(http.MethodDelete, "/images/"+strconv.FormatUint(target.ID, 10), "", nil, nil); code != http.StatusConflict {
		t.Errorf("delete the delta's target: %d, want 409", code)
	}
	if code := e.do(http.MethodDelete, "/images/"+strconv.FormatUint(d.ID, 10), "", nil, nil); code != http.StatusNoContent {
		t.Errorf("delete the delta: %d, want 204", code)
	}
	if code := e.do(http.MethodDelete, "/images/"+strconv.FormatUint(target.ID, 10), "", nil, nil); code != http.StatusNoContent {
		t.Errorf("delete the target once the delta is gone: %d, want 204", code)
	}
}

// TestUpload_DeltaOfALegacyImage: a full image recorded before records kept
// its hash is recognised as a delta's base by its file.
func TestUpload_DeltaOfALegacyImage(t *testing.T) {
	e := newEnv(t)
	parse := func(b []byte) *image.Image {
		img, err := image.Parse(bytes.NewReader(b), int64(len(b)))
		if err != nil {
			t.Fatal(err)
		}
		return img
	}
	oldB, newB := e.signed("1.0.0", e.key), e.signed("1.1.0", e.key)
	// The base as an earlier otaserve stored it: the file, a record without
	// its hash.
	blob, err := e.cfg.Firmware.Put(context.Background(), bytes.NewReader(oldB), 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	base, err := e.st.AddImage(store.Image{Version: "1.0.0+0", Board: "b1", Size: blob.Size, SHA256: blob.SHA256, MD5: blob.MD5, Path: blob.Path})
	if err != nil {
		t.Fatal(err)
	}
	if code := e.do(http.MethodPost, "/images?board=b1", "application/octet-stream", bytes.NewReader(newB), nil); code != http.StatusCreated {
		t.Fatalf("upload the target: %d", code)
	}
	delta, err := image.SignDelta(parse(oldB), parse(newB), []byte{1, 2, 3}, e.key, image.SignOptions{HeaderSize: 0x20})
	if err != nil {
		t.Fatal(err)
	}
	var d Image
	if code := e.do(http.MethodPost, "/images?board=b1", "application/octet-stream", bytes.NewReader(delta), &d); code != http.StatusCreated || d.DeltaBase != base.ID {
		t.Errorf("the delta of a legacy base: %d %+v, want it linked to image %d", code, d, base.ID)
	}
}
