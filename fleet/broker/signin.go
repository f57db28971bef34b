package broker

import (
	"fmt"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/otaport/otaport/core/cloud"
)

// SignInPolicy is what the broker asks of a device's sign-in beyond a
// signature made with its secret. The zero value is the strict default.
type SignInPolicy struct {
	// Window bounds how far the signed timestamp may lie from the broker's
	// clock, either way: a captured sign-in works for that long and no
	// longer. 0 means DefaultSignInWindow.
	Window time.Duration
	// Timeless lists the products whose devices may sign in without a
	// timestamp that says when they signed: the C SDK v3 signs a fixed one
	// (cloud.SDKTimestamp) and the platform's documented form may leave it
	// out. Such a sign-in can be replayed for as long as the device secret
	// lasts: allow it only for products whose devices cannot do better.
	Timeless []string
	// MaxFailures is how many failed sign-ins one device may make within
	// FailureWindow, and one address ten times as many (devices behind
	// one carrier NAT share an address); past it, their sign-ins are
	// refused unchecked until the window ends. Operators who sign in
	// right are never held to it. 0 means DefaultMaxFailures.
	MaxFailures int
	// FailureWindow is the span failures are counted over; 0 means
	// DefaultFailureWindow.
	FailureWindow time.Duration
	// Now is the broker's clock; nil means time.Now.
	Now func() time.Time
}

// Defaults of SignInPolicy.
const (
	// DefaultSignInWindow: devices keep their clock by NTP or the
	// platform's time service; fifteen minutes covers their drift and a
	// slow start, and bounds a replay to a quarter of an hour.
	DefaultSignInWindow = 15 * time.Minute
	// DefaultMaxFailures failed sign-ins per DefaultFailureWindow: a device
	// that retries every few seconds with a stale secret stays under it.
	DefaultMaxFailures   = 10
	DefaultFailureWindow = time.Minute
)

func (p SignInPolicy) withDefaults() SignInPolicy {
	if p.Window <= 0 {
		p.Window = DefaultSignInWindow
	}
	if p.MaxFailures <= 0 {
		p.MaxFailures = DefaultMaxFailures
	}
	if p.FailureWindow <= 0 {
		p.FailureWindow = DefaultFailureWindow
	}
	if p.Now == nil {
		p.Now = time.Now
	}
	p.Timeless = slices.Clone(p.Timeless)
	return p
}

// check judges a verified sign-in that came over tls (the listener's
// transport): the transport it claims, then the freshness of what it signed.
func (p SignInPolicy) check(s cloud.SignedIn, tls bool) error {
	switch {
	case s.TLS && !tls:
		return fmt.Errorf("claims securemode=2 (TLS) on a plain TCP listener")
	case !s.TLS && tls:
		return fmt.Errorf("claims securemode=3 (plain TCP) on a TLS listener")
	}
	t, ok := s.Time()
	if !ok {
		if slices.Contains(p.Timeless, s.ProductKey) {
			return nil
		}
		what := "no timestamp"
		if s.Timestamp != "" {
			what = "the C SDK's fixed timestamp " + s.Timestamp
		}
		return fmt.Errorf("signed %s, which says nothing of when; product %s is not allowed timeless sign-ins (otaserve run --allow-timeless %s)", what, s.ProductKey, s.ProductKey)
	}
	if d := p.Now().Sub(t); d > p.Window || d < -p.Window {
		return fmt.Errorf("signed at %s, %s from the broker's clock, outside the %s window: set the device's clock", t.UTC().Format(time.RFC3339), d.Round(time.Second).Abs(), p.Window)
	}
	return nil
}

// failures counts failed sign-ins per key (an address, or a device) in
// fixed windows, to refuse a key that fails too often without checking it.
type failures struct {
	max    int
	window time.Duration
	now    func() time.Time

	mu sync.Mutex
	m  map[string]*failCount
}

type failCount struct {
	start time.Time
	n     int
	// pending are attempts being checked (acquire), each a failure to come
	// until release says otherwise.
	pending int
}

// maxFailureKeys bounds the memory a flood from many addresses can take:
// past it, expired entries go first, then any.
const maxFailureKeys = 1 << 16

func newFailures(max int, p SignInPolicy) *failures {
	return &failures{max: max, window: p.FailureWindow, now: p.Now, m: map[string]*failCount{}}
}

// addressFactor is how many more failures an address may make than a
// device: an address may be a NAT in front of many devices.
const addressFactor = 10

// acquire reports whether key may have an attempt checked now: its
// failures, with the attempts being checked counted as failures, are below
// the limit. The attempt holds its place until release. Checking and
// counting in one step keeps a flood of concurrent attempts, each checked
// before any is counted, from running past the limit.
func (f *failures) acquire(key string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	now := f.now()
	c, ok := f.m[key]
	if !ok {
		if len(f.m) >= maxFailureKeys {
			f.evict(now)
		}
		c = &failCount{start: now}
		f.m[key] = c
	} else if now.Sub(c.start) >= f.window {
		c.start, c.n = now, 0
	}
	if c.n+c.pending >= f.max {
		return false
	}
	c.pending++
	return true
}

// release ends an attempt acquire let through, counting it if it failed.
// Its place and its failure change hands in one step: between the two, a
// concurrent acquire would see neither and be let through past the count.
func (f *failures) release(key string, failed bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	c, ok := f.m[key]
	if ok && c.pending > 0 {
		c.pending--
	}
	if failed {
		f.failLocked(key)
	}
}

// failLocked counts a failure of key; f.mu is held.
func (f *failures) failLocked(key string) {
	now := f.now()
	c, ok := f.m[key]
	if ok && now.Sub(c.start) < f.window {
		c.n++
		return
	}
	if !ok && len(f.m) >= maxFailureKeys {
		f.evict(now)
	}
	f.m[key] = &failCount{start: now, n: 1}
}

// forget drops the failures of key: a device that signed in is not held to
// the mistakes of its earlier attempts.
func (f *failures) forget(key string) {
	f.mu.Lock()
	delete(f.m, key)
	f.mu.Unlock()
}

func (f *failures) evict(now time.Time) {
	for k, c := range f.m {
		if now.Sub(c.start) >= f.window && c.pending == 0 {
			delete(f.m, k)
		}
	}
	for k := range f.m {
		if len(f.m) < maxFailureKeys {
			break
		}
		delete(f.m, k)
	}
}

// addressKey is the failure key of a remote address: its host, so that a
// client cannot reset its count by changing its port.
func addressKey(remote string) string {
	if h, _, err := net.SplitHostPort(remote); err == nil {
		return "addr " + h
	}
	return "addr " + remote
}

func deviceKey(pk, dn string) string { return "device " + pk + "/" + dn }
