package api

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/otaport/otaport/fleet/campaign"
	"github.com/otaport/otaport/fleet/store"
)

// fakeReplica is a replica whose lease the test sets.
type fakeReplica struct {
	id    string
	holds bool
	st    store.LeaseState
	err   error
}

func (f *fakeReplica) ID() string  { return f.id }
func (f *fakeReplica) Holds() bool { return f.holds }
func (f *fakeReplica) Holder(context.Context) (store.LeaseState, error) {
	return f.st, f.err
}

// seen is what the fake holder received.
type seen struct {
	mu   sync.Mutex
	reqs []*http.Request
	body []string
}

func (s *seen) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.reqs)
}

// counted is what Config.Forwarded was told.
type counted struct {
	mu      sync.Mutex
	results []string
}

func (c *counted) add(route, result string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.results = append(c.results, route+" "+result)
}

func (c *counted) get() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.results...)
}

// standby serves the API as a replica without the lease, in front of a
// fake holder over TLS that answers 201 to everything; it returns the
// standby's URL, what the holder saw, the counted results and the handler.
func standby(t *testing.T, rep *fakeReplica, trust bool) (string, *seen, *counted, http.Handler) {
	t.Helper()
	e := newEnv(t)
	got := &seen{}
	holder := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got.mu.Lock()
		got.reqs = append(got.reqs, r)
		got.body = append(got.body, string(b))
		got.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		io.WriteString(w, `{"id":7}`)
	}))
	t.Cleanup(holder.Close)
	if rep.st.URL == "holder" {
		rep.st.URL = holder.URL
	}
	roots := x509.NewCertPool()
	if trust {
		roots.AddCert(holder.Certificate())
	}
	results := &counted{}
	cfg := e.cfg
	cfg.Replica, cfg.ForwardTLS, cfg.Forwarded = rep, &tls.Config{RootCAs: roots}, results.add
	h, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv.URL, got, results, h
}

func send(t *testing.T, method, url, auth string, body string, hdr ...string) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	if auth != "" {
		req.Header.Set("Authorization", "Bearer "+auth)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func held(url string) store.LeaseState {
	return store.LeaseState{Lease: store.Lease{Name: "campaigns", Holder: "a", Epoch: 3, URL: url}, Expires: time.Now().Add(4 * time.Second), Left: 4 * time.Second}
}

// TestForward_SendsHolderRoutesToTheHolder: a Holder route reaching a
// replica without the lease goes to the holder's URL, path, query, body
// and token unchanged, with the marker naming the replica; the holder's
// answer comes back as it was. A route every replica serves stays here.
func TestForward_SendsHolderRoutesToTheHolder(t *testing.T) {
	base, got, results, _ := standby(t, &fakeReplica{id: "b", st: held("holder")}, true)
	resp, body := send(t, http.MethodPost, base+Prefix+"/campaigns?x=1", token, `{"image_id":1}`)
	if resp.StatusCode != http.StatusCreated || body != `{"id":7}` {
		t.Fatalf("forwarded create: %d %s, want the holder's 201", resp.StatusCode, body)
	}
	if got.count() != 1 {
		t.Fatalf("the holder got %d requests, want 1", got.count())
	}
	r := got.reqs[0]
	if r.Method != http.MethodPost || r.URL.Path != Prefix+"/campaigns" || r.URL.RawQuery != "x=1" || got.body[0] != `{"image_id":1}` {
		t.Errorf("the holder got %s %s?%s %q", r.Method, r.URL.Path, r.URL.RawQuery, got.body[0])
	}
	if r.Header.Get("Authorization") != "Bearer "+token || r.Header.Get(ForwardedHeader) != "b" {
		t.Errorf("the holder got Authorization %q, %s %q; want the caller's token and the marker b", r.Header.Get("Authorization"), ForwardedHeader, r.Header.Get(ForwardedHeader))
	}
	if r := results.get(); len(r) != 1 || r[0] != "POST /api/v1/campaigns forwarded" {
		t.Errorf("counted %v", r)
	}
	if resp, _ := send(t, http.MethodGet, base+Prefix+"/campaigns", token, ""); resp.StatusCode != http.StatusOK || got.count() != 1 {
		t.Errorf("a read: %d, %d requests at the holder; want it served here", resp.StatusCode, got.count())
	}
}

// TestForward_RefusedWithoutAHop: what the replica itself refuses (no
// token, a wrong one, a scope too small) is refused before any hop, and a
// request that was forwarded once already is not forwarded again.
func TestForward_RefusedWithoutAHop(t *testing.T) {
	base, got, _, h := standby(t, &fakeReplica{id: "b", st: held("holder")}, true)
	if resp, _ := send(t, http.MethodPost, base+Prefix+"/campaigns", "wrong", `{}`); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("a wrong token: %d, want 401", resp.StatusCode)
	}
	if resp, _ := send(t, http.MethodPost, base+Prefix+"/campaigns", "", `{}`); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("no token: %d, want 401", resp.StatusCode)
	}
	resp, body := send(t, http.MethodPost, base+Prefix+"/campaigns/1/pause", token, "", ForwardedHeader, "c")
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") != "1" || !strings.Contains(body, "not forwarded twice") || !strings.Contains(body, "replica a") {
		t.Errorf("a request forwarded once already: %d Retry-After %q %s; want 503 naming the holder", resp.StatusCode, resp.Header.Get("Retry-After"), body)
	}
	// The dashboard's call in process, with no token to pass: it forwards
	// its form itself (Forwarder), and gets here only when the lease moved
	// between its look and the API's.
	req := httptest.NewRequest(http.MethodPost, Prefix+"/campaigns/1/pause", nil)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req.WithContext(WithCaller(req.Context(), Caller{Token: "session", Scope: ScopeAdmin})))
	if rec.Code != http.StatusServiceUnavailable || !strings.Contains(rec.Body.String(), "send the form again") {
		t.Errorf("the dashboard's action: %d %s, want 503 asking to send it again", rec.Code, rec.Body)
	}
	if got.count() != 0 {
		t.Errorf("the holder got %d requests, want none", got.count())
	}
}

// TestForward_503WhenTheHolderCannotBeReached: no holder, an expired one,
// one that advertises no URL, one whose certificate the fleet CA did not
// sign, one that does not answer: each is a 503 with Retry-After and a
// message naming the holder and the cause.
func TestForward_503WhenTheHolderCannotBeReached(t *testing.T) {
	expired := held("holder")
	expired.Left = -2 * time.Second
	cases := []struct {
		name  string
		rep   *fakeReplica
		trust bool
		retry string
		want  []string
	}{
		{"none", &fakeReplica{id: "b", err: store.ErrNotFound}, true, "1", []string{"no replica holds the campaigns' lease yet"}},
		{"expired", &fakeReplica{id: "b", st: expired}, true, "1", []string{"no replica holds the campaigns' lease now", "replica a at https://", "until 2s ago"}},
		{"no URL", &fakeReplica{id: "b", st: held("")}, true, "5", []string{"replica a holds", "--advertise-url"}},
		{"untrusted", &fakeReplica{id: "b", st: held("holder")}, false, "5", []string{"replica a", "cannot reach it", "certificate"}},
		{"dead", &fakeReplica{id: "b", st: held("https://127.0.0.1:1")}, true, "5", []string{"a at https://127.0.0.1:1", "cannot reach it", "refused"}},
		{"itself", &fakeReplica{id: "a", st: held("holder")}, true, "5", []string{"this replica (a) is giving up or taking over"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			base, got, results, _ := standby(t, c.rep, c.trust)
			resp, body := send(t, http.MethodDelete, base+Prefix+"/campaigns/1", token, "")
			if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") != c.retry {
				t.Errorf("%d Retry-After %q %s; want 503, Retry-After %s", resp.StatusCode, resp.Header.Get("Retry-After"), body, c.retry)
			}
			for _, w := range c.want {
				if !strings.Contains(body, w) {
					t.Errorf("%s: want %q in it", body, w)
				}
			}
			if got.count() != 0 {
				t.Errorf("the holder served it")
			}
			if r := results.get(); len(r) != 1 {
				t.Errorf("counted %v, want one result", r)
			}
		})
	}
}

// TestForward_TheHolderServesItself: on the holder a Holder route runs
// here, and so does every route on a process that is no replica.
func TestForward_TheHolderServesItself(t *testing.T) {
	base, got, _, _ := standby(t, &fakeReplica{id: "a", holds: true, st: held("holder")}, true)
	if resp, body := send(t, http.MethodPost, base+Prefix+"/campaigns/9/pause", token, "", ForwardedHeader, "b"); resp.StatusCode != http.StatusNotFound || got.count() != 0 {
		t.Errorf("pause of a campaign the holder does not have: %d %s, %d at the fake holder; want 404 from here", resp.StatusCode, body, got.count())
	}
}

// TestRoutes_HolderMarksTheCampaignChanges: the route table marks the
// routes that change what the campaign service runs, and only those.
func TestRoutes_HolderMarksTheCampaignChanges(t *testing.T) {
	want := map[string]bool{
		"DELETE /api/v1/devices/{pk}/{dn}":     true,
		"DELETE /api/v1/images/{id}":           true,
		"POST /api/v1/campaigns":               true,
		"DELETE /api/v1/campaigns/{id}":        true,
		"POST /api/v1/campaigns/{id}/{action}": true,
	}
	for _, r := range Routes() {
		if r.Holder != want[r.String()] {
			t.Errorf("%s: Holder %v", r, r.Holder)
		}
	}
}

// TestNotHolder_RetryAfter: the fenced write stays the last guard; the
// change it refuses (the lease moved under it) answers 503 with the time a
// takeover takes.
func TestNotHolder_RetryAfter(t *testing.T) {
	err := fmt.Errorf("pause campaign 1: %w", campaign.ErrNotHolder)
	rec := httptest.NewRecorder()
	writeError(rec, statusOf(err), err)
	if rec.Code != http.StatusServiceUnavailable || rec.Header().Get("Retry-After") != "5" {
		t.Errorf("%d Retry-After %q, want 503 and 5", rec.Code, rec.Header().Get("Retry-After"))
	}
}
