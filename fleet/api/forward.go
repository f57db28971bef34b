package api

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"time"

	"github.com/otaport/otaport/fleet/store"
)

// Several otaserve replicas share one database behind any HTTP load
// balancer, and one of them holds the campaigns' lease (docs/scaling.md).
// A request for a route marked Holder that reaches another replica is sent
// on to the holder, at the URL it recorded in the lease, and its answer
// comes back unchanged: the caller never needs to know which replica runs
// the campaigns.

// ForwardedHeader marks a request one replica forwarded to another; its
// value names the replica that forwarded it. A replica never forwards a
// request that carries it, so a request makes one hop at most, whatever the
// lease does meanwhile: the holder that lost the lease just after the
// lookup answers 503, as a replica with no holder to send to does.
const ForwardedHeader = "X-Otaserve-Forwarded-By"

// Replica is what the API needs of a process that is one of several on a
// database (fleet/campaign.Replica).
type Replica interface {
	// ID names the replica in the lease table and the logs.
	ID() string
	// Holds reports whether this replica holds the campaigns' lease now.
	Holds() bool
	// Holder reads who holds the campaigns' lease, where it is reached
	// and for how long, as the database says now.
	Holder(ctx context.Context) (store.LeaseState, error)
}

// holderLookup bounds the read of the lease row, so that a database that
// does not answer turns into a 503 rather than a hung request.
const holderLookup = 5 * time.Second

// forwarder sends the Holder routes to the holder of the campaigns' lease.
type forwarder struct {
	rep       Replica
	transport http.RoundTripper
	cfg       Config
}

func newForwarder(cfg Config) *forwarder {
	return &forwarder{rep: cfg.Replica, cfg: cfg, transport: &http.Transport{
		// The holder is a peer on the replicas' network: no proxy of
		// the environment stands between them.
		Proxy:               nil,
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSClientConfig:     cfg.ForwardTLS,
		TLSHandshakeTimeout: 10 * time.Second,
		ForceAttemptHTTP2:   true,
		MaxIdleConnsPerHost: 4,
		IdleConnTimeout:     90 * time.Second,
		// Creating a campaign of 100,000 devices takes under a minute
		// on the holder (docs/benchmarks.md); a holder that takes the
		// request and then stops answering (paused, not dead, so the
		// lease holds) must not hold the caller for ever.
		ResponseHeaderTimeout: 5 * time.Minute,
	}}
}

// unavailable is why a request cannot reach the holder: answered 503, with
// Retry-After.
type unavailable struct {
	result string // the metric's result label
	retry  time.Duration
	err    error
}

// Forwarder sends a request that stands for a Holder route without being
// the API's own (a dashboard form that runs one) to the campaigns' lease
// holder, as the API forwards its own: the same lookup, hop, checks and
// counts, under the route it stands for. The holder serves it at the same
// path.
type Forwarder struct{ f *forwarder }

// NewForwarder returns the Forwarder of cfg's replica, nil when cfg has no
// Replica: one process serves everything itself.
func NewForwarder(cfg Config) *Forwarder {
	if cfg.Replica == nil {
		return nil
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Forwarder{newForwarder(cfg)}
}

// Forward reports false when this replica serves r itself: route (as
// Route.String gives it) is not one only the campaigns' lease holder
// serves, or this replica holds the lease. Otherwise it sends r to the
// holder, whose answer comes back unchanged, or calls fail with why it
// cannot (Retry-After is set on w), and reports true.
func (f *Forwarder) Forward(w http.ResponseWriter, r *http.Request, route string, fail func(http.ResponseWriter, error)) bool {
	if f == nil || f.f.rep.Holds() {
		return false
	}
	for _, rt := range Routes() {
		if rt.String() == route && rt.Holder {
			f.f.forward(w, r, rt, fail)
			return true
		}
	}
	return false
}

// forward sends r to the holder of the campaigns' lease, or answers with
// fail why it cannot, and when to try again (Retry-After).
func (f *forwarder) forward(w http.ResponseWriter, r *http.Request, rt Route, fail func(http.ResponseWriter, error)) {
	log := f.cfg.Logger.With("route", rt.String(), "replica", f.rep.ID())
	target, st, why := f.target(r)
	if why != nil {
		f.count(rt, why.result)
		log.Warn("request for the campaigns' lease holder not forwarded", "holder", st.Holder, "url", st.URL, "err", why.err)
		w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(why.retry.Seconds()))))
		fail(w, why.err)
		return
	}
	start := time.Now()
	proxy := &httputil.ReverseProxy{
		Transport: f.transport,
		Rewrite: func(pr *httputil.ProxyRequest) {
			// The path and query stay the caller's, under the
			// holder's base; the Authorization header is passed on
			// as it came, and the holder checks the token again.
			pr.SetURL(target)
			// The host the caller asked, which the holder's
			// dashboard compares a form's Origin with.
			pr.Out.Host = pr.In.Host
			pr.SetXForwarded()
			pr.Out.Header.Set(ForwardedHeader, f.rep.ID())
		},
		// Counted before the answer goes back, so that whoever reads the
		// metrics after it sees the request counted.
		ModifyResponse: func(resp *http.Response) error {
			f.count(rt, "forwarded")
			log.Info("request forwarded to the campaigns' lease holder", "holder", st.Holder, "url", st.URL,
				"status", resp.StatusCode, "duration", time.Since(start).Round(time.Millisecond))
			return nil
		},
		ErrorHandler: func(w http.ResponseWriter, _ *http.Request, err error) {
			f.count(rt, "unreachable")
			log.Warn("the campaigns' lease holder is unreachable", "holder", st.Holder, "url", st.URL, "err", err)
			w.Header().Set("Retry-After", strconv.Itoa(retryAfter(st)))
			fail(w, fmt.Errorf("%s needs the holder of the campaigns' lease, replica %s at %s, and this replica (%s) cannot reach it: %v; if it died, another replica takes the lease within %s",
				rt, st.Holder, st.URL, f.rep.ID(), err, time.Duration(retryAfter(st))*time.Second))
		},
	}
	proxy.ServeHTTP(w, r)
}

// target is where r goes: the holder's URL, or why it cannot go there.
func (f *forwarder) target(r *http.Request) (*url.URL, store.LeaseState, *unavailable) {
	ctx, cancel := context.WithTimeout(r.Context(), holderLookup)
	defer cancel()
	st, err := f.rep.Holder(ctx)
	me := f.rep.ID()
	switch {
	case errors.Is(err, store.ErrNotFound):
		return nil, st, &unavailable{"no_holder", time.Second, fmt.Errorf("no replica holds the campaigns' lease yet, which this request needs: one takes it within a second of starting (%v)", err)}
	case err != nil:
		return nil, st, &unavailable{"no_holder", time.Second, fmt.Errorf("this replica (%s) cannot read which replica holds the campaigns' lease, which this request needs: %w", me, err)}
	}
	if by := r.Header.Get(ForwardedHeader); by != "" {
		// Sent here by the replica that read this one as the holder:
		// the lease moved since, and a second hop could loop.
		return nil, st, &unavailable{"loop", time.Second, fmt.Errorf("forwarded by replica %s to this replica (%s), which does not hold the campaigns' lease (%s): a request is not forwarded twice; retry",
			by, me, describe(st))}
	}
	if _, inProcess := CallerFrom(r.Context()); inProcess && r.Header.Get("Authorization") == "" {
		// The dashboard's call of the API in process (see ServeHTTP),
		// with no token to pass on: the dashboard forwards the form
		// itself (Forwarder), and gets here only when the lease moved
		// between its look and this one.
		return nil, st, &unavailable{"no_holder", time.Second, fmt.Errorf("this replica (%s) no longer holds the campaigns' lease (%s): send the form again, and it goes to the holder", me, describe(st))}
	}
	switch {
	case st.Left <= 0:
		return nil, st, &unavailable{"no_holder", time.Second, fmt.Errorf("no replica holds the campaigns' lease now, which this request needs: %s; another replica takes it within a second", describe(st))}
	case st.Holder == me:
		// The row still names this replica, which has stepped down
		// (or not yet finished taking over).
		return nil, st, &unavailable{"no_holder", time.Duration(retryAfter(st)) * time.Second, fmt.Errorf("this replica (%s) is giving up or taking over the campaigns' lease (%s); retry", me, describe(st))}
	case st.URL == "":
		return nil, st, &unavailable{"no_holder", time.Duration(retryAfter(st)) * time.Second, fmt.Errorf("replica %s holds the campaigns' lease, which this request needs, but advertises no URL to forward to: it listens on a wildcard address without --advertise-url; restart it with --advertise-url https://HOST:PORT, or send the request to it", st.Holder)}
	}
	u, err := url.Parse(st.URL)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return nil, st, &unavailable{"no_holder", time.Duration(retryAfter(st)) * time.Second, fmt.Errorf("replica %s holds the campaigns' lease but advertises %q, not an http(s) URL: restart it with --advertise-url https://HOST:PORT", st.Holder, st.URL)}
	}
	return u, st, nil
}

// describe says who holds the lease and until when, for a message.
func describe(st store.LeaseState) string {
	if st.Holder == "" {
		return "nobody has taken it"
	}
	at := ""
	if st.URL != "" {
		at = " at " + st.URL
	}
	if st.Left <= 0 {
		return fmt.Sprintf("replica %s%s held it until %s ago", st.Holder, at, (-st.Left).Round(100*time.Millisecond))
	}
	return fmt.Sprintf("replica %s%s holds it, for %s more unless renewed", st.Holder, at, st.Left.Round(100*time.Millisecond))
}

// retryAfter is the seconds after which the lease will have moved if its
// holder is gone: what is left of it, and a second for the takeover.
func retryAfter(st store.LeaseState) int {
	return max(1, int(math.Ceil(st.Left.Seconds()))+1)
}

func (f *forwarder) count(rt Route, result string) {
	if f.cfg.Forwarded != nil {
		f.cfg.Forwarded(rt.String(), result)
	}
}
