package engine_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/otaport/otaport/core/engine"
	"github.com/otaport/otaport/core/event"
	"github.com/otaport/otaport/core/flash"
	"github.com/otaport/otaport/core/hal"
)

// faultServer serves one file over a real loopback HTTP server, with Range
// and If-Range, and the faults a firmware server shows in the field.
type faultServer struct {
	t  testing.TB
	mu sync.Mutex

	content []byte
	etag    string

	dropAt     []int64 // close the connection once at each of these offsets
	truncateAt int64   // close every response at this offset (0: never)
	statuses   []int   // answer these statuses first, one a request
	always     int     // answer this status to every request (0: none)
	lenDelta   int64   // added to the Content-Length announced
	chunked    bool    // no Content-Length
	extra      []byte  // sent after the content (with chunked)
	stallAt    int64   // stop sending at this offset until the client goes
	rangeSkew  int64   // added to the first byte of a Content-Range
	ignoreRng  bool    // answer 200 with the whole file to a Range request
	noETag     bool    // send no ETag (and, as before, no Last-Modified)

	served   int64    // body bytes sent, over all requests
	requests []string // "GET range=... if-range=..."
	onServe  func(s *faultServer, n int)
}

func newFaultServer(t testing.TB, content []byte) (*faultServer, *httptest.Server) {
	s := &faultServer{t: t}
	s.setContent(content)
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	return s, srv
}

func (s *faultServer) setContent(b []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sum := sha256.Sum256(b)
	s.content, s.etag = b, `"`+hex.EncodeToString(sum[:8])+`"`
}

func (s *faultServer) bytesServed() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.served
}

func (s *faultServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.requests = append(s.requests, fmt.Sprintf("GET range=%q if-range=%q", r.Header.Get("Range"), r.Header.Get("If-Range")))
	if len(s.statuses) > 0 || s.always != 0 {
		code := s.always
		if len(s.statuses) > 0 {
			code, s.statuses = s.statuses[0], s.statuses[1:]
		}
		s.mu.Unlock()
		http.Error(w, "firmware server busy", code)
		return
	}
	content, etag := s.content, s.etag
	start := int64(0)
	partial := false
	if rg := r.Header.Get("Range"); rg != "" && !s.ignoreRng {
		n, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimPrefix(rg, "bytes="), "-"), 10, 64)
		if err != nil || n >= int64(len(content)) {
			s.mu.Unlock()
			w.Header().Set("Content-Range", fmt.Sprintf("bytes */%d", len(content)))
			http.Error(w, "bad range", http.StatusRequestedRangeNotSatisfiable)
			return
		}
		if ir := r.Header.Get("If-Range"); ir == "" || ir == etag {
			start, partial = n, true
		}
	}
	h := w.Header()
	if !s.noETag {
		h.Set("ETag", etag)
	}
	if !s.chunked {
		h.Set("Content-Length", strconv.FormatInt(int64(len(content))-start+s.lenDelta, 10))
	}
	body := content[start:]
	if s.lenDelta < 0 {
		// A server that announces less sends what it announced.
		body = body[:int64(len(body))+s.lenDelta]
	}
	if s.chunked {
		body = append(append([]byte(nil), body...), s.extra...)
	}
	status := http.StatusOK
	if partial {
		status = http.StatusPartialContent
		h.Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", start+s.rangeSkew, len(content)-1, len(content)))
	}
	w.WriteHeader(status)
	s.mu.Unlock()

	pos := start
	for len(body) > 0 {
		n := min(len(body), 8<<10)
		s.mu.Lock()
		cut := int64(-1)
		for i, d := range s.dropAt {
			if d > pos && d <= pos+int64(n) {
				cut = d
				s.dropAt = append(s.dropAt[:i:i], s.dropAt[i+1:]...)
				break
			}
		}
		if s.truncateAt > 0 && s.truncateAt >= pos && s.truncateAt <= pos+int64(n) {
			cut = s.truncateAt
		}
		stall := s.stallAt > 0 && s.stallAt >= pos && s.stallAt <= pos+int64(n)
		s.mu.Unlock()
		if stall {
			n = int(s.stallAt - pos)
		}
		if cut >= 0 {
			n = int(cut - pos)
		}
		if _, err := w.Write(body[:n]); err != nil {
			return
		}
		s.mu.Lock()
		s.served += int64(n)
		cb := s.onServe
		s.mu.Unlock()
		if cb != nil {
			cb(s, n)
		}
		body, pos = body[n:], pos+int64(n)
		if cut >= 0 {
			// Drop the connection mid-body, as a broken link does.
			w.(http.Flusher).Flush()
			conn, _, err := w.(http.Hijacker).Hijack()
			if err == nil {
				conn.Close()
			}
			return
		}
		if stall {
			w.(http.Flusher).Flush()
			<-r.Context().Done()
			return
		}
	}
}

// httpCase sets up a device running 1.0.0 and a server with image 1.1.0.
func httpCase(t *testing.T, board string, payloadSize int) (*device, []byte, *faultServer, string) {
	t.Helper()
	d := newDevice(t, board, boardKeys(t, board))
	d.factory("1.0.0", 8<<10)
	img := signed(t, d.keys.priv, "1.1.0", payloadSize, 2)
	s, srv := newFaultServer(t, img)
	return d, img, s, srv.URL + "/fw/1.1.0.img"
}

var fastOpts = engine.Options{ChunkSize: 16 << 10, CheckpointEvery: 64 << 10, Retries: 3, RetryBackoff: 1}

func TestHTTP_DroppedConnectionsResumeWithoutResending(t *testing.T) {
	d, img, s, url := httpCase(t, "stm32f769i-disco", 400<<10)
	s.dropAt = []int64{1, 100, 8 << 10, 100001, 250000, int64(len(img)) - 1}
	if err := d.engine(fastOpts).Install(context.Background(), engine.Source{URL: url}); err != nil {
		t.Fatalf("install: %v", err)
	}
	if got := s.bytesServed(); got != int64(len(img)) {
		t.Errorf("served %d bytes for an image of %d: a resume sent bytes again", got, len(img))
	}
	if n := len(s.requests); n != 7 {
		t.Errorf("%d requests, want 7 (1 + one per drop): %v", n, s.requests)
	}
	for _, r := range s.requests[1:] {
		if !strings.Contains(r, "bytes=") || !strings.Contains(r, `if-range="\"`) {
			t.Errorf("resume request %s lacks Range or If-Range", r)
		}
	}
	if st := d.expectRuns("1.1.0+0"); st.State != engine.Testing {
		t.Fatalf("state %s", st.State)
	}
}

func TestHTTP_ServerErrorsAreRetried(t *testing.T) {
	d, _, s, url := httpCase(t, "esp32-devkitc", 20<<10)
	s.statuses = []int{503, 500, 503}
	if err := d.engine(fastOpts).Install(context.Background(), engine.Source{URL: url}); err != nil {
		t.Fatalf("install after 3 server errors with 3 retries: %v", err)
	}
	d.expectRuns("1.1.0+0")
}

// TestHTTP_Faults: each fault ends in a clear error, the old image still
// boots, and the next good upgrade succeeds.
func TestHTTP_Faults(t *testing.T) {
	cases := []struct {
		name  string
		setup func(s *faultServer, img []byte)
		src   func(img []byte, url string) engine.Source
		want  error
		say   string
		state engine.State
	}{
		// Stopped before the first byte was written: the state stays
		// what it was (the factory image, confirmed).
		{"500 every time", func(s *faultServer, _ []byte) { s.always = 500 }, nil,
			engine.ErrDownload, "500 Internal Server Error (firmware server busy) (gave up after 3 retries)", engine.Confirmed},
		{"404", func(s *faultServer, _ []byte) { s.always = 404 }, nil,
			engine.ErrDownload, "404 Not Found", engine.Confirmed},
		{"truncated body every time", func(s *faultServer, img []byte) { s.truncateAt = int64(len(img)) / 2 }, nil,
			engine.ErrDownload, "transfer broke at byte", engine.Downloading},
		{"tampered body", func(s *faultServer, img []byte) {
			bad := append([]byte(nil), img...)
			bad[0x200+1000] ^= 0xff
			s.setContent(bad)
		}, nil, engine.ErrVerify, "hash mismatch", engine.Failed},
		{"Content-Length too large", func(s *faultServer, _ []byte) { s.lenDelta = 4096 }, nil,
			engine.ErrDownload, "fewer than announced", engine.Failed},
		{"Content-Length too small", func(s *faultServer, _ []byte) { s.lenDelta = -4096 }, nil,
			engine.ErrVerify, "truncated", engine.Failed},
		{"Content-Range at another offset", func(s *faultServer, img []byte) {
			s.dropAt = []int64{int64(len(img)) / 3}
			s.rangeSkew = 512
		}, nil, engine.ErrDownload, "does not keep to the request", engine.Downloading},
		{"more bytes than the order announced", func(s *faultServer, _ []byte) {
			s.chunked, s.extra = true, make([]byte, 64<<10)
		}, func(img []byte, url string) engine.Source { return engine.Source{URL: url, Size: int64(len(img))} },
			engine.ErrDownload, "sent more than the", engine.Failed},
		{"stalled transfer", func(s *faultServer, img []byte) { s.stallAt = int64(len(img)) / 2 }, nil,
			engine.ErrStalled, "stalled", engine.Downloading},
		{"digest of the old file after a change", func(s *faultServer, img []byte) {
			// The server's file changes between attempts; the order's
			// digest is the first file's.
			s.dropAt = []int64{int64(len(img)) / 2}
			s.onServe = func(s *faultServer, _ int) {
				if len(s.dropAt) == 0 && s.etag != "changed" {
					bad := append([]byte(nil), img...)
					bad[len(bad)-300] ^= 1
					s.content, s.etag = bad, "changed"
				}
			}
		}, func(img []byte, url string) engine.Source {
			sum := sha256.Sum256(img)
			return engine.Source{URL: url, Digest: "sha256:" + hex.EncodeToString(sum[:])}
		}, engine.ErrVerify, "the order announced", engine.Failed},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ctx := context.Background()
			d, img, s, url := httpCase(t, "esp32-devkitc", 100<<10)
			c.setup(s, img)
			src := engine.Source{URL: url}
			if c.src != nil {
				src = c.src(img, url)
			}
			opts := fastOpts
			opts.ReadTimeout = 100e6
			err := d.engine(opts).Install(ctx, src)
			wantIs(t, err, c.want)
			if !strings.Contains(err.Error(), c.say) {
				t.Errorf("error %q does not say %q", err, c.say)
			}
			st := d.status()
			if st.State != c.state {
				t.Errorf("state %s (%s), want %s", st.State, st.LastError, c.state)
			}
			if st.LastError == "" && st.State != engine.Confirmed {
				t.Errorf("status has no last error")
			}
			d.expectRuns("1.0.0+0")

			good := signed(t, d.keys.priv, "1.2.0", 30<<10, 3)
			_, srv := newFaultServer(t, good)
			if err := d.engine(fastOpts).Install(ctx, engine.Source{URL: srv.URL + "/good.img"}); err != nil {
				t.Fatalf("next good install: %v", err)
			}
			d.expectRuns("1.2.0+0")
		})
	}
}

func TestHTTP_ChangedFileStartsOver(t *testing.T) {
	d, img, s, url := httpCase(t, "esp32-devkitc", 100<<10)
	newer := signed(t, d.keys.priv, "1.1.1", 90<<10, 2)
	s.dropAt = []int64{int64(len(img)) / 2}
	s.onServe = func(s *faultServer, _ int) {
		if len(s.dropAt) == 0 && s.etag != "v2" {
			s.content, s.etag = newer, "v2"
		}
	}
	rec := &events{}
	opts := fastOpts
	opts.Observer = rec
	if err := d.engine(opts).Install(context.Background(), engine.Source{URL: url}); err != nil {
		t.Fatalf("install: %v", err)
	}
	started := 0
	for _, ev := range rec.ev {
		if ev.Kind == event.State && strings.Contains(ev.Message, "starting over") {
			started++
		}
	}
	if started != 1 {
		t.Errorf("%d start-overs announced, want 1", started)
	}
	d.expectRuns("1.1.1+0")
}

// TestHTTP_StallingServerWithoutValidatorsIsNamed: a server that stalls,
// ignores Range and sends neither ETag nor Last-Modified cannot be resumed;
// the error says that, not that its validators differ (issue 9, item 7).
func TestHTTP_StallingServerWithoutValidatorsIsNamed(t *testing.T) {
	d, img, s, url := httpCase(t, "esp32-devkitc", 100<<10)
	s.stallAt, s.ignoreRng, s.noETag = int64(len(img))/2, true, true
	opts := fastOpts
	opts.ReadTimeout = 100e6
	err := d.engine(opts).Install(context.Background(), engine.Source{URL: url})
	wantIs(t, err, engine.ErrDownload)
	t.Log(err)
	for _, no := range []string{"differ", "keeps changing"} {
		if strings.Contains(err.Error(), no) {
			t.Errorf("error %q says %q: the server sent no validators", err, no)
		}
	}
	for _, say := range []string{"ignores Range", "no ETag or Last-Modified", "stalled"} {
		if !strings.Contains(err.Error(), say) {
			t.Errorf("error %q does not say %q", err, say)
		}
	}
	d.expectRuns("1.0.0+0")
}

func TestHTTP_ServerIgnoringRangeIsSkipped(t *testing.T) {
	d, img, s, url := httpCase(t, "esp32-devkitc", 100<<10)
	s.dropAt = []int64{int64(len(img)) / 2}
	s.ignoreRng = true
	if err := d.engine(fastOpts).Install(context.Background(), engine.Source{URL: url}); err != nil {
		t.Fatalf("install: %v", err)
	}
	d.expectRuns("1.1.0+0")
}

func TestHTTP_ImageTooLargeRefusedFromItsHeader(t *testing.T) {
	// A chunked response announces no size: the header's sizes tell.
	d := newDevice(t, "esp32-devkitc", newKeys(t))
	d.factory("1.0.0", 8<<10)
	ota, _ := d.layout.Partition(hal.PartOTA)
	img := signed(t, d.keys.priv, "1.1.0", int(ota.Size)+4096, 2)
	s, srv := newFaultServer(t, img)
	s.chunked = true
	before := d.region(hal.PartApp)
	err := d.engine(fastOpts).Install(context.Background(), engine.Source{URL: srv.URL})
	wantIs(t, err, engine.ErrRefused)
	if !strings.Contains(err.Error(), "does not fit the update slot") {
		t.Errorf("error %q", err)
	}
	if !equalBytes(before, d.region(hal.PartApp)) {
		t.Errorf("the update slot was written before the image was refused")
	}
	d.expectRuns("1.0.0+0")
}

// TestHTTP_ResumeAfterPowerCut: the power goes in the middle of a download;
// after the power-on, Resume continues from the last checkpoint and sends
// at most a checkpoint interval (plus the chunks in flight) again.
func TestHTTP_ResumeAfterPowerCut(t *testing.T) {
	ctx := context.Background()
	d, img, s, url := httpCase(t, "stm32f769i-disco", 600<<10)
	opts := fastOpts
	var cutAt int64
	opts.Observer = engine.ObserverFunc(func(ev engine.Event) {
		if ev.Kind == event.Progress && ev.Offset >= 300<<10 && cutAt == 0 {
			cutAt = ev.Offset
			d.dev.SetCut(flash.Cut{At: 1})
		}
	})
	err := d.engine(opts).Install(ctx, engine.Source{URL: url})
	wantIs(t, err, flash.ErrPowerCut)
	s.mu.Lock()
	s.requests = nil
	s.mu.Unlock()

	d.powerOn(d.dev.Clone())
	res, st := d.recover()
	if res.Version != "1.0.0+0" || st.State != engine.Downloading || st.Offset == 0 {
		t.Fatalf("after the power cut: %s runs, state %s at %d", res.Version, st.State, st.Offset)
	}
	if err := d.engine(fastOpts).Resume(ctx); err != nil {
		t.Fatalf("resume: %v", err)
	}
	// The bytes written before the cut, less the checkpoint the resume
	// starts from, are what it sends again.
	resent := cutAt - st.Offset
	bound := fastOpts.CheckpointEvery + int64(fastOpts.ChunkSize)
	if resent < 0 || resent > bound {
		t.Errorf("cut at %d, resumed from %d: %d bytes sent again, want at most %d", cutAt, st.Offset, resent, bound)
	}
	if want := fmt.Sprintf("GET range=%q", fmt.Sprintf("bytes=%d-", st.Offset)); len(s.requests) == 0 || !strings.HasPrefix(s.requests[0], want) {
		t.Errorf("resume requests %v, want the first to start %s", s.requests, want)
	}
	_ = img
	d.expectRuns("1.1.0+0")
}

func TestHTTP_TLSWithCAFile(t *testing.T) {
	d := newDevice(t, "esp32-devkitc", newKeys(t))
	d.factory("1.0.0", 8<<10)
	img := signed(t, d.keys.priv, "1.1.0", 20<<10, 2)
	s := &faultServer{t: t}
	s.setContent(img)
	srv := httptest.NewTLSServer(s)
	defer srv.Close()

	// Without the CA the server is not trusted.
	opts := fastOpts
	opts.Retries = -1
	err := d.engine(opts).Install(context.Background(), engine.Source{URL: srv.URL})
	if err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("install from an untrusted server: %v, want a certificate error", err)
	}

	caFile := filepath.Join(t.TempDir(), "ca.pem")
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	if err := os.WriteFile(caFile, pemBytes, 0o600); err != nil {
		t.Fatal(err)
	}
	ca, _ := os.ReadFile(caFile)
	client, err := engine.NewHTTPClient(ca)
	if err != nil {
		t.Fatal(err)
	}
	opts.HTTPClient = client
	if err := d.engine(opts).Install(context.Background(), engine.Source{URL: srv.URL}); err != nil {
		t.Fatalf("install over TLS with the CA: %v", err)
	}
	d.expectRuns("1.1.0+0")

	if _, err := engine.NewHTTPClient([]byte("not a pem")); err == nil {
		t.Fatal("a CA file without a certificate was accepted")
	}
}

// TestHTTP_NoChunkBufferWhileTheServerIsSilent: the engine opens the source
// before it makes a chunk buffer, so that a device waiting for a server that
// has not answered yet (thousands of them in a fleet simulator, behind a
// firmware server that takes them in turn) holds no buffer meanwhile. The
// chunk is 16 MiB, so that one buffer stands out of what the rest of the
// install allocates before the request (records, the HTTP client).
func TestHTTP_NoChunkBufferWhileTheServerIsSilent(t *testing.T) {
	const chunk = 16 << 20
	d := newDevice(t, "esp32-devkitc", boardKeys(t, "esp32-devkitc"))
	d.factory("1.0.0", 8<<10)
	img := signed(t, d.keys.priv, "1.1.0", 20<<10, 2)
	asked := make(chan struct{}, 1)
	answer := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case asked <- struct{}{}:
		default:
		}
		select {
		case <-answer:
		case <-r.Context().Done():
			return
		}
		w.Header().Set("Content-Length", strconv.Itoa(len(img)))
		w.Write(img)
	}))
	defer srv.Close()
	opts := fastOpts
	opts.ChunkSize = chunk
	e := d.engine(opts)

	var before, during runtime.MemStats
	runtime.ReadMemStats(&before)
	done := make(chan error, 1)
	go func() { done <- e.Install(context.Background(), engine.Source{URL: srv.URL + "/fw.img"}) }()
	select {
	case <-asked:
	case err := <-done:
		t.Fatalf("install ended before its request reached the server: %v", err)
	}
	// The request is at the server, which keeps silent; give the engine
	// time to make anything it would make before the answer.
	time.Sleep(200 * time.Millisecond)
	runtime.ReadMemStats(&during)
	close(answer)
	if err := <-done; err != nil {
		t.Fatalf("install once the server answered: %v", err)
	}
	if got := during.TotalAlloc - before.TotalAlloc; got >= chunk {
		t.Errorf("while the server was silent the install allocated %d bytes, a %d-byte chunk buffer among them; want none before the server answers", got, chunk)
	}
	d.expectRuns("1.1.0+0")
}
