package firmware

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/otaport/otaport/fleet/store"
	"github.com/otaport/otaport/fleet/store/pgtest"
)

// pg is the package's PostgreSQL server, started by the first test that
// asks for a database.
var pg pgtest.Server

func TestMain(m *testing.M) {
	code := m.Run()
	pg.Stop()
	os.Exit(code)
}

// blobSize spans three of PostgreSQL's chunks, so ranges cross chunk
// boundaries; a directory does not care.
const blobSize = 2*store.ChunkSize + 1000

// backends runs a test with a store of each kind: blobs in the directory,
// or in PostgreSQL (with the directory for uploads in progress), read
// directly or through the local cache.
func backends(t *testing.T, test func(t *testing.T, s *Store)) {
	for _, be := range []string{"dir", "postgres", "cached"} {
		t.Run(be, func(t *testing.T) { test(t, storeOf(t, be)) })
	}
}

// storeOf makes a store of a kind: "dir", "postgres" (a database of its
// own, the directory for uploads in progress) or "cached" (postgres with a
// cache of DefaultCacheSize).
func storeOf(t testing.TB, kind string) *Store {
	t.Helper()
	if kind == "dir" {
		s, err := NewStore(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	size := int64(0)
	if kind == "cached" {
		size = DefaultCacheSize
	}
	s, err := NewSharedStore(t.TempDir(), sharedBlobs(t, pg.DB(t)), size)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// sharedBlobs opens the PostgreSQL database at url and returns its blobs.
func sharedBlobs(t testing.TB, url string) Blobs {
	t.Helper()
	db, err := store.OpenPostgres(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db.Blobs()
}

func testBlob(t *testing.T, s *Store) (Blob, []byte) {
	t.Helper()
	data := make([]byte, blobSize)
	for i := range data {
		data[i] = byte(i * 7)
	}
	b, err := s.Put(context.Background(), bytes.NewReader(data), 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	return b, data
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

func TestHandler_Ranges(t *testing.T) { backends(t, testRanges) }

func testRanges(t *testing.T, s *Store) {
	b, data := testBlob(t, s)
	srv := httptest.NewServer(http.StripPrefix("/firmware", Handler(s)))
	defer srv.Close()
	url := srv.URL + "/firmware/" + b.SHA256
	etag := `"` + b.SHA256 + `"`
	n, c := blobSize, store.ChunkSize

	tests := []struct {
		name      string
		hdr       map[string]string
		status    int
		body      []byte
		contRange string
	}{
		{"whole file", nil, 200, data, ""},
		{"range", map[string]string{"Range": "bytes=100-199"}, 206, data[100:200], fmt.Sprintf("bytes 100-199/%d", n)},
		{"range across chunks", map[string]string{"Range": fmt.Sprintf("bytes=%d-%d", c-10, 2*c+9)}, 206, data[c-10 : 2*c+10],
			fmt.Sprintf("bytes %d-%d/%d", c-10, 2*c+9, n)},
		{"resume to the end", map[string]string{"Range": "bytes=9000-"}, 206, data[9000:], fmt.Sprintf("bytes 9000-%d/%d", n-1, n)},
		{"suffix", map[string]string{"Range": "bytes=-10"}, 206, data[n-10:], fmt.Sprintf("bytes %d-%d/%d", n-10, n-1, n)},
		{"unsatisfiable", map[string]string{"Range": fmt.Sprintf("bytes=%d-", n)}, 416, nil, fmt.Sprintf("bytes */%d", n)},
		{"if-range with the etag resumes", map[string]string{"Range": "bytes=5000-", "If-Range": etag}, 206, data[5000:], fmt.Sprintf("bytes 5000-%d/%d", n-1, n)},
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
func TestHandler_ResumeAfterDrop(t *testing.T) { backends(t, testResumeAfterDrop) }

func testResumeAfterDrop(t *testing.T, s *Store) {
	b, _ := testBlob(t, s)
	srv := httptest.NewServer(Handler(s))
	defer srv.Close()
	var got []byte
	for len(got) < int(b.Size) {
		end := min(len(got)+33333, int(b.Size)) - 1
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

func TestHandler_NotFound(t *testing.T) { backends(t, testNotFound) }

func testNotFound(t *testing.T, s *Store) {
	testBlob(t, s)
	srv := httptest.NewServer(Handler(s))
	defer srv.Close()
	for _, p := range []string{"/" + strings.Repeat("0", 64), "/../secret", "/ABCDEF", "/"} {
		resp, _ := get(t, srv.URL+p, nil)
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("%s: status %d, want 404", p, resp.StatusCode)
		}
	}
}

func TestPut(t *testing.T) { backends(t, testPut) }

func testPut(t *testing.T, s *Store) {
	b, data := testBlob(t, s)
	if b.Size != int64(len(data)) {
		t.Errorf("size = %d", b.Size)
	}
	f, _, err := s.Open(context.Background(), b.SHA256)
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
	if s.cache != nil {
		ents = slices.DeleteFunc(ents, func(e os.DirEntry) bool { return e.Name() == cacheDir })
	}
	if want := map[bool]int{true: 0, false: 1}[s.shared != nil]; len(ents) != want {
		t.Errorf("the directory holds %d files after refused uploads, want %d", len(ents), want)
	}
	// The same bytes again: the same blob, still readable; removed, gone.
	if b2, err := s.Put(context.Background(), bytes.NewReader(data), 0, nil); err != nil || b2.SHA256 != b.SHA256 {
		t.Errorf("the same bytes again: %+v, %v", b2, err)
	}
	ctx := context.Background()
	if err := s.Remove(ctx, b.SHA256); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Open(ctx, b.SHA256); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("open after remove: %v, want fs.ErrNotExist", err)
	}
	if err := s.Remove(ctx, b.SHA256); err != nil {
		t.Errorf("second remove: %v", err)
	}
}
