package engine_test

// Tests of the download threats of docs/security.md that TestHTTP_Faults
// does not already cover: a server that sends without end when neither the
// order nor the server announces a size, and one that never answers.

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

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
