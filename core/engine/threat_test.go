package engine_test

// Tests of the download threats of docs/security.md that TestHTTP_Faults
// does not already cover: a server that sends without end when neither the
// order nor the server announces a size, and one that never answers.

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/otaport/otaport/core/engine"
	"github.com/otaport/otaport/core/hal"
)

// TestHTTP_EndlessDataWithoutASizeIsCutOff: Uptane's endless data when
// nothing announces a size (no size in the order, a chunked answer): a
// server that sends a valid image and then never stops is cut off once the
// bytes exceed what the update slot takes, and the device keeps its image.
func TestHTTP_EndlessDataWithoutASizeIsCutOff(t *testing.T) {
	d := newDevice(t, "esp32-devkitc", newKeys(t))
	d.factory("1.0.0", 8<<10)
	ota, _ := d.layout.Partition(hal.PartOTA)
	img := signed(t, d.keys.priv, "1.1.0", 30<<10, 2)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// No Content-Length: the body ends only when the client goes.
		_, err := w.Write(img)
		fill := make([]byte, 16<<10)
		for err == nil && r.Context().Err() == nil {
			_, err = w.Write(fill)
		}
	}))
	t.Cleanup(srv.Close)

	err := d.engine(fastOpts).Install(context.Background(), engine.Source{URL: srv.URL + "/endless.img"})
	wantIs(t, err, engine.ErrRefused)
	if want := fmt.Sprintf("sent more than the %d bytes the update slot takes", ota.Size); !strings.Contains(err.Error(), want) {
		t.Errorf("error %q does not say %q", err, want)
	}
	d.expectRuns("1.0.0+0")
}

// TestHTTP_ServerThatNeverAnswersStalls: Uptane's slow retrieval in its
// simplest form: the server takes the connection and sends nothing, not
// even the headers. The read timeout ends the transfer with ErrStalled,
// and the device keeps its image.
func TestHTTP_ServerThatNeverAnswersStalls(t *testing.T) {
	d := newDevice(t, "esp32-devkitc", newKeys(t))
	d.factory("1.0.0", 8<<10)
	var requests atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		<-r.Context().Done()
	}))
	t.Cleanup(srv.Close)
	opts := fastOpts
	opts.ReadTimeout = 100e6
	err := d.engine(opts).Install(context.Background(), engine.Source{URL: srv.URL + "/silent.img"})
	wantIs(t, err, engine.ErrStalled)
	if !strings.Contains(err.Error(), "no data for 100ms") {
		t.Errorf("error %q does not say how long nothing came", err)
	}
	// Each attempt stalled and was retried, then the engine gave up.
	if got := requests.Load(); got != int64(opts.Retries)+1 {
		t.Errorf("%d requests, want %d (the first and %d retries)", got, opts.Retries+1, opts.Retries)
	}
	d.expectRuns("1.0.0+0")
}

// TestHTTP_TricklingServerIsCutAsTooSlow: Uptane's slow retrieval as an
// attacker plays it: a byte just often enough to keep the read timeout
// from firing, forever. Each attempt is cut once it averages less than
// MinRate over a window, the retries too, and the device keeps its image.
// A server at a fair rate under the same options completes.
func TestHTTP_TricklingServerIsCutAsTooSlow(t *testing.T) {
	d := newDevice(t, "esp32-devkitc", newKeys(t))
	d.factory("1.0.0", 8<<10)
	img := signed(t, d.keys.priv, "1.1.0", 30<<10, 2)
	var requests atomic.Int64
	trickle := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// A well-behaved server in every way (Range, a strong ETag) but
		// its pace: each attempt resumes where the last was cut.
		requests.Add(1)
		w.Header().Set("ETag", `"trickle"`)
		from := 0
		if _, err := fmt.Sscanf(r.Header.Get("Range"), "bytes=%d-", &from); err == nil && r.Header.Get("If-Range") == `"trickle"` {
			w.Header().Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", from, len(img)-1, len(img)))
			w.Header().Set("Content-Length", fmt.Sprint(len(img)-from))
			w.WriteHeader(http.StatusPartialContent)
		} else {
			from = 0
			w.Header().Set("Content-Length", fmt.Sprint(len(img)))
		}
		for i := from; i < len(img); i++ {
			select {
			case <-r.Context().Done():
				return
			case <-time.After(5 * time.Millisecond):
			}
			if _, err := w.Write(img[i : i+1]); err != nil {
				return
			}
			w.(http.Flusher).Flush()
		}
	}))
	t.Cleanup(trickle.Close)
	opts := fastOpts
	opts.ReadTimeout = 5e9 // never reached: a byte comes every few milliseconds
	opts.MinRate, opts.RateWindow = 10<<10, 100*time.Millisecond
	err := d.engine(opts).Install(context.Background(), engine.Source{URL: trickle.URL + "/trickle.img", Size: int64(len(img))})
	wantIs(t, err, engine.ErrTooSlow)
	if !strings.Contains(err.Error(), "less than the 10240 bytes/s the device requires") {
		t.Errorf("error %q does not say what rate was required", err)
	}
	if got := requests.Load(); got != int64(opts.Retries)+1 {
		t.Errorf("%d requests, want %d (the first and %d retries)", got, opts.Retries+1, opts.Retries)
	}
	d.expectRuns("1.0.0+0")

	fair := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.ServeContent(w, r, "fair.img", time.Time{}, bytes.NewReader(img))
	}))
	t.Cleanup(fair.Close)
	if err := d.engine(opts).Install(context.Background(), engine.Source{URL: fair.URL + "/fair.img", Size: int64(len(img))}); err != nil {
		t.Fatalf("a server at a fair rate: %v", err)
	}
}
