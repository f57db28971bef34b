package firmware

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
)

func testBlob(t *testing.T) (*Store, Blob, []byte) {
	t.Helper()
	s, err := NewStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	data := make([]byte, 10000)
	for i := range data {
		data[i] = byte(i * 7)
	}
	b, err := s.Put(context.Background(), bytes.NewReader(data), 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	return s, b, data
}

func get(t *testing.T, url string, hdr map[string]string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, body
}

func TestHandler_Ranges(t *testing.T) {
	s, b, data := testBlob(t)
	srv := httptest.NewServer(http.StripPrefix("/firmware", Handler(s)))
	defer srv.Close()
	url := srv.URL + "/firmware/" + b.SHA256
	etag := `"` + b.SHA256 + `"`

	tests := []struct {
		name      string
		hdr       map[string]string
		status    int
		body      []byte
		contRange string
	}{
		{"whole file", nil, 200, data, ""},
		{"range", map[string]string{"Range": "bytes=100-199"}, 206, data[100:200], "bytes 100-199/10000"},
		{"resume to the end", map[string]string{"Range": "bytes=9000-"}, 206, data[9000:], "bytes 9000-9999/10000"},
		{"suffix", map[string]string{"Range": "bytes=-10"}, 206, data[9990:], "bytes 9990-9999/10000"},
		{"unsatisfiable", map[string]string{"Range": "bytes=10000-"}, 416, nil, "bytes */10000"},
		{"if-range with the etag resumes", map[string]string{"Range": "bytes=5000-", "If-Range": etag}, 206, data[5000:], "bytes 5000-9999/10000"},
		{"if-range with another etag sends it all", map[string]string{"Range": "bytes=5000-", "If-Range": `"0000"`}, 200, data, ""},
		{"if-none-match", map[string]string{"If-None-Match": etag}, 304, []byte{}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := get(t, url, tt.hdr)
			if resp.StatusCode != tt.status {
				t.Fatalf("status = %d, want %d", resp.StatusCode, tt.status)
			}
			if tt.body != nil && !bytes.Equal(body, tt.body) {
				t.Errorf("body = %d bytes, want %d bytes of the file", len(body), len(tt.body))
			}
			if got := resp.Header.Get("Content-Range"); got != tt.contRange {
				t.Errorf("Content-Range = %q, want %q", got, tt.contRange)
			}
			if resp.StatusCode != 416 && resp.Header.Get("ETag") != etag {
				t.Errorf("ETag = %q, want %q", resp.Header.Get("ETag"), etag)
			}
		})
	}
}

// TestHandler_ResumeAfterDrop downloads in pieces as a device does after its
// connection drops, and checks the reassembled file hashes to the name.
func TestHandler_ResumeAfterDrop(t *testing.T) {
	s, b, _ := testBlob(t)
	srv := httptest.NewServer(Handler(s))
	defer srv.Close()
	var got []byte
	for len(got) < int(b.Size) {
		end := min(len(got)+3333, int(b.Size)) - 1
		resp, body := get(t, srv.URL+"/"+b.SHA256, map[string]string{
			"Range": fmt.Sprintf("bytes=%d-%d", len(got), end), "If-Range": `"` + b.SHA256 + `"`,
		})
		if resp.StatusCode != http.StatusPartialContent {
			t.Fatalf("at %d: status %d", len(got), resp.StatusCode)
		}
		got = append(got, body...)
	}
	sum := sha256.Sum256(got)
	if hex.EncodeToString(sum[:]) != b.SHA256 {
		t.Fatal("reassembled download does not hash to its name")
	}
}

func TestHandler_NotFound(t *testing.T) {
	s, _, _ := testBlob(t)
	srv := httptest.NewServer(Handler(s))
	defer srv.Close()
	for _, p := range []string{"/" + strings.Repeat("0", 64), "/../secret", "/ABCDEF", "/"} {
		resp, _ := get(t, srv.URL+p, nil)
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("%s: status %d, want 404", p, resp.StatusCode)
		}
	}
}

func TestPut(t *testing.T) {
	s, b, data := testBlob(t)
	if b.Size != int64(len(data)) {
		t.Errorf("size = %d", b.Size)
	}
	f, err := s.Open(b.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	onDisk, _ := io.ReadAll(f)
	f.Close()
	if !bytes.Equal(onDisk, data) {
		t.Error("stored bytes differ")
	}
	// A refused upload leaves nothing behind.
	refused := errors.New("refused")
	_, err = s.Put(context.Background(), strings.NewReader("other"), 0, func(*os.File, int64) error { return refused })
	if !errors.Is(err, refused) {
		t.Fatalf("err = %v", err)
	}
	if _, err := s.Put(context.Background(), bytes.NewReader(data), 100, nil); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("oversize err = %v", err)
	}
	ents, _ := os.ReadDir(s.dir)
	if len(ents) != 1 {
		t.Errorf("store holds %d files after refused uploads, want 1", len(ents))
	}
}
