package engine

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"
)

// Source is what to install: an order, as the cloud sends it or a person
// types it.
type Source struct {
	// URL is an http:// or https:// URL, a file:// URL or a file path.
	URL string
	// Digest, optional, is the hash of the whole file the order announces:
	// "sha256:HEX" or "md5:HEX".
	Digest string
	// Size, optional, is the size of the file the order announces; a
	// server that announces or sends another size is refused.
	Size int64
	// Version, optional, is the version the order announces; an image of
	// another version is refused.
	Version string
	// Permanent makes the bootloader boot the new image for good, without
	// a trial (factory provisioning, or a board that cannot roll back
	// anyway). The default is a trial the new image must confirm.
	Permanent bool
}

// validators identify one version of a remote file (HTTP's ETag and
// Last-Modified; size and modification time for a local file).
type validators struct {
	etag, lastModified string
}

func (v validators) empty() bool { return v.etag == "" && v.lastModified == "" }

// stream is an open transfer of the file from offset start on.
type stream struct {
	body io.ReadCloser
	// start is where body begins: the offset asked for, or 0 when the file
	// changed and the source starts it over.
	start int64
	// total is the size of the whole file, -1 when unknown.
	total int64
	v     validators
	// restart says why the source starts the file over (start 0 where a
	// later offset was asked for).
	restart string
}

// changed describes how the validators of a file differ from was.
func (v validators) changed(was validators) string {
	var d []string
	if v.etag != was.etag {
		d = append(d, fmt.Sprintf("ETag %q, was %q", v.etag, was.etag))
	}
	if v.lastModified != was.lastModified {
		d = append(d, fmt.Sprintf("Last-Modified %q, was %q", v.lastModified, was.lastModified))
	}
	return strings.Join(d, "; ")
}

// opener opens a source at an offset. An error wrapped in transient may
// succeed if tried again.
type opener interface {
	open(ctx context.Context, off int64, v validators) (*stream, error)
	String() string
}

// transient marks an error worth a retry (a dropped connection, a 5xx).
type transient struct{ err error }

func (t transient) Error() string { return t.err.Error() }
func (t transient) Unwrap() error { return t.err }

func isTransient(err error) bool {
	var t transient
	return errors.As(err, &t)
}

// ErrStalled is the cause of a transfer cancelled because no byte arrived
// for Options.ReadTimeout.
var ErrStalled = errors.New("transfer stalled")

// ErrTooSlow is the cause of a transfer cancelled because it averaged less
// than Options.MinRate over a RateWindow.
var ErrTooSlow = errors.New("transfer too slow")

// newOpener returns the opener of src.
func (e *Engine) newOpener(src string) (opener, error) {
	switch {
	case strings.HasPrefix(src, "http://"), strings.HasPrefix(src, "https://"):
		u, err := url.Parse(src)
		if err != nil || u.Host == "" {
			return nil, fmt.Errorf("source %q: not a valid URL", src)
		}
		return &httpOpener{url: src, client: e.http, timeout: e.opts.ReadTimeout, minRate: e.opts.MinRate, window: e.opts.RateWindow}, nil
	case strings.HasPrefix(src, "file://"):
		u, err := url.Parse(src)
		if err != nil {
			return nil, fmt.Errorf("source %q: %w", src, err)
		}
		return fileOpener{path: u.Path}, nil
	case strings.Contains(src, "://"):
		return nil, fmt.Errorf("source %q: scheme not supported: give an http(s):// URL or a file path", src)
	case src == "":
		return nil, fmt.Errorf("no source: give an http(s):// URL or a file path")
	}
	return fileOpener{path: src}, nil
}

// fileOpener reads a local file. Its validators are the size and the
// modification time, so a file replaced between attempts starts over.
type fileOpener struct{ path string }

func (f fileOpener) String() string { return f.path }

func (f fileOpener) open(ctx context.Context, off int64, v validators) (*stream, error) {
	fh, err := os.Open(f.path)
	if err != nil {
		return nil, fmt.Errorf("%w: source %w", ErrDownload, err)
	}
	st, err := fh.Stat()
	if err != nil {
		fh.Close()
		return nil, fmt.Errorf("%w: source %s: %w", ErrDownload, f.path, err)
	}
	if !st.Mode().IsRegular() {
		fh.Close()
		return nil, fmt.Errorf("%w: source %s is not a regular file", ErrDownload, f.path)
	}
	cur := validators{etag: fmt.Sprintf("%x-%x", st.Size(), st.ModTime().UnixNano())}
	restart := ""
	if off > 0 && !v.empty() && v != cur {
		off, restart = 0, fmt.Sprintf("%s changed since byte %d was read (its size or modification time differ)", f.path, off)
	}
	if off > st.Size() {
		off, restart = 0, fmt.Sprintf("%s is %d bytes, shorter than the %d already read", f.path, st.Size(), off)
	}
	if _, err := fh.Seek(off, io.SeekStart); err != nil {
		fh.Close()
		return nil, fmt.Errorf("%w: source %s: seek to %d: %w", ErrDownload, f.path, off, err)
	}
	return &stream{body: fh, start: off, total: st.Size(), v: cur, restart: restart}, nil
}

// httpOpener fetches over HTTP(S) with Range requests.
type httpOpener struct {
	url     string
	client  *http.Client
	timeout time.Duration
	// minRate bytes per second over each window, or the transfer is cut;
	// minRate < 0: no minimum.
	minRate int64
	window  time.Duration
}

func (h *httpOpener) String() string { return h.url }

// open sends GET, with "Range: bytes=off-" and If-Range when resuming, and
// checks the answer against the request: a 206 must start at off, a 200 to
// a resume means the file changed (its validators differ: start over from
// 0) or the server ignores ranges (skip to off). The whole transfer,
// connection and headers included, is cancelled when no byte arrives for
// h.timeout.
func (h *httpOpener) open(ctx context.Context, off int64, v validators) (*stream, error) {
	ctx, cancel := context.WithCancelCause(ctx)
	watch := newStallWatch(h.timeout, cancel)
	fail := func(err error) (*stream, error) {
		watch.stop()
		cancel(nil)
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, h.url, nil)
	if err != nil {
		return fail(fmt.Errorf("%w: %s: %w", ErrDownload, h.url, err))
	}
	if off > 0 {
		req.Header.Set("Range", fmt.Sprintf("bytes=%d-", off))
		if v.etag != "" {
			req.Header.Set("If-Range", v.etag)
		} else if v.lastModified != "" {
			req.Header.Set("If-Range", v.lastModified)
		}
	}
	resp, err := h.client.Do(req)
	if err != nil {
		if cause := context.Cause(ctx); errors.Is(cause, ErrStalled) {
			err = cause
		}
		if ctx.Err() != nil && !errors.Is(context.Cause(ctx), ErrStalled) {
			return fail(err)
		}
		return fail(transient{fmt.Errorf("%w: GET %s: %w", ErrDownload, h.url, err)})
	}
	s := &stream{
		body: &watchedBody{rc: resp.Body, watch: watch, ctx: ctx, cancel: cancel,
			minRate: h.minRate, window: h.window, since: time.Now()},
		total: -1,
		v:     validators{etag: resp.Header.Get("ETag"), lastModified: resp.Header.Get("Last-Modified")},
	}
	drop := func(err error) (*stream, error) {
		s.body.Close()
		return nil, err
	}
	switch {
	case resp.StatusCode == http.StatusPartialContent:
		first, total, err := parseContentRange(resp.Header.Get("Content-Range"))
		if err != nil {
			return drop(fmt.Errorf("%w: GET %s with Range bytes=%d-: %w", ErrDownload, h.url, off, err))
		}
		if first != off {
			return drop(transient{fmt.Errorf("%w: GET %s asked for bytes from %d, the server answered Content-Range %q: it does not keep to the request",
				ErrDownload, h.url, off, resp.Header.Get("Content-Range"))})
		}
		s.start, s.total = off, total
		if s.v.empty() {
			// A 206 carries the validators only sometimes; it is the
			// same file by If-Range.
			s.v = v
		}
	case resp.StatusCode == http.StatusOK:
		s.total = resp.ContentLength
		if off > 0 && (v.empty() || s.v != v) {
			// The file changed (or cannot be told apart): start over.
			s.start = 0
			switch {
			case v.empty() && s.v.empty():
				s.restart = fmt.Sprintf("GET %s ignores Range (it answered 200 with the whole file to a request for the bytes from %d on) and sends no ETag or Last-Modified to tell whether it is the same file: a download from it cannot resume", h.url, off)
			case v.empty():
				s.restart = fmt.Sprintf("GET %s ignores Range (it answered 200 to a request for the bytes from %d on) and sent no ETag or Last-Modified before, so it cannot be told whether the file is the same", h.url, off)
			default:
				s.restart = fmt.Sprintf("%s changed since byte %d was received (%s)", h.url, off, s.v.changed(v))
			}
			break
		}
		if off > 0 {
			// Same file, but the server ignores ranges: skip what is
			// already written.
			if _, err := io.CopyN(io.Discard, s.body, off); err != nil {
				return drop(transient{fmt.Errorf("%w: GET %s: skip the first %d bytes (the server ignores Range): %w", ErrDownload, h.url, off, err)})
			}
			s.start = off
		}
	case resp.StatusCode == http.StatusRequestedRangeNotSatisfiable && off > 0:
		// RFC 9110 15.5.17: the Content-Range of a 416 gives the size.
		size := "fewer bytes"
		if _, n, ok := strings.Cut(resp.Header.Get("Content-Range"), "/"); ok {
			size = n + " bytes"
		}
		return drop(fmt.Errorf("%w: GET %s: asked for the bytes from %d on, the server answered %s: the file has %s, fewer than announced (a Content-Length that was wrong, or a file that shrank)",
			ErrDownload, h.url, off, resp.Status, size))
	default:
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 200))
		err := fmt.Errorf("%w: GET %s: server answered %s%s", ErrDownload, h.url, resp.Status, bodyHint(body))
		if resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusRequestTimeout {
			err = transient{err}
		}
		return drop(err)
	}
	return s, nil
}

func bodyHint(b []byte) string {
	s := strings.TrimSpace(string(b))
	if s == "" || strings.ContainsFunc(s, func(r rune) bool { return r < ' ' && r != '\n' }) {
		return ""
	}
	return " (" + strings.ReplaceAll(s, "\n", " ") + ")"
}

// parseContentRange reads "bytes FIRST-LAST/TOTAL" (TOTAL may be *).
func parseContentRange(s string) (first, total int64, err error) {
	rest, ok := strings.CutPrefix(s, "bytes ")
	if !ok {
		return 0, 0, fmt.Errorf("Content-Range %q: want bytes FIRST-LAST/TOTAL", s)
	}
	rng, tot, ok := strings.Cut(rest, "/")
	a, b, ok2 := strings.Cut(rng, "-")
	if !ok || !ok2 {
		return 0, 0, fmt.Errorf("Content-Range %q: want bytes FIRST-LAST/TOTAL", s)
	}
	first, err1 := strconv.ParseInt(a, 10, 64)
	last, err2 := strconv.ParseInt(b, 10, 64)
	if err1 != nil || err2 != nil || first < 0 || last < first {
		return 0, 0, fmt.Errorf("Content-Range %q: bad range", s)
	}
	total = -1
	if tot != "*" {
		total, err = strconv.ParseInt(tot, 10, 64)
		if err != nil || total <= last {
			return 0, 0, fmt.Errorf("Content-Range %q: bad total", s)
		}
	}
	return first, total, nil
}

// stallWatch cancels a transfer when it is not kicked for d.
type stallWatch struct {
	t *time.Timer
	d time.Duration
}

func newStallWatch(d time.Duration, cancel context.CancelCauseFunc) *stallWatch {
	return &stallWatch{d: d, t: time.AfterFunc(d, func() {
		cancel(fmt.Errorf("%w: no data for %v", ErrStalled, d))
	})}
}

func (w *stallWatch) kick() { w.t.Reset(w.d) }
func (w *stallWatch) stop() { w.t.Stop() }

// watchedBody is a response body whose reads keep the stall watch from
// firing, that is cut when it averages less than minRate over a window,
// and whose errors say "stalled" or "too slow" when that is why.
type watchedBody struct {
	rc     io.ReadCloser
	watch  *stallWatch
	ctx    context.Context
	cancel context.CancelCauseFunc

	minRate int64
	window  time.Duration
	since   time.Time // start of the current window
	got     int64     // bytes in it
}

func (b *watchedBody) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	if n > 0 {
		b.watch.kick()
		b.got += int64(n)
	}
	if b.minRate >= 0 && err == nil {
		if now := time.Now(); now.Sub(b.since) >= b.window {
			if want := int64(float64(b.minRate) * b.window.Seconds()); b.got < max(want, 1) {
				cause := fmt.Errorf("%w: %d bytes in the last %v, less than the %d bytes/s the device requires (MinRate)", ErrTooSlow, b.got, b.window, b.minRate)
				b.cancel(cause)
				return n, cause
			}
			b.since, b.got = now, 0
		}
	}
	if err != nil && err != io.EOF {
		if cause := context.Cause(b.ctx); errors.Is(cause, ErrStalled) || errors.Is(cause, ErrTooSlow) {
			err = cause
		}
	}
	return n, err
}

func (b *watchedBody) Close() error {
	b.watch.stop()
	err := b.rc.Close()
	b.cancel(nil)
	return err
}

// NewHTTPClient returns the HTTP client the engine uses by default: the
// system's roots plus the CA certificates in caPEM (a PEM bundle, for a
// private firmware server), TLS 1.2 or newer, and bounded connection and
// handshake times. Stalled transfers are the engine's to catch
// (Options.ReadTimeout).
func NewHTTPClient(caPEM []byte) (*http.Client, error) {
	tlsConf := &tls.Config{MinVersion: tls.VersionTLS12}
	if len(caPEM) > 0 {
		pool, err := x509.SystemCertPool()
		if err != nil || pool == nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(caPEM) {
			return nil, fmt.Errorf("CA file: no PEM certificate found: give the CA certificate of the firmware server in PEM")
		}
		tlsConf.RootCAs = pool
	}
	tr := &http.Transport{
		Proxy:               http.ProxyFromEnvironment,
		DialContext:         (&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSClientConfig:     tlsConf,
		TLSHandshakeTimeout: 30 * time.Second,
		MaxIdleConns:        4,
		IdleConnTimeout:     90 * time.Second,
		// Firmware is already compressed or not compressible; a gzip
		// transfer would hide the byte offsets a resume needs.
		DisableCompression: true,
		ReadBufferSize:     256 << 10,
		ForceAttemptHTTP2:  true,
	}
	return &http.Client{Transport: tr}, nil
}
