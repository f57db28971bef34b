package fleet

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/otaport/otaport/fleet/api"
	"github.com/otaport/otaport/fleet/dashboard"
	"github.com/otaport/otaport/fleet/pki"
)

// peer calls one replica over HTTPS, trusting only the data directory's
// fleet CA, as an operator's client of the load balancer would.
type peer struct {
	name, root, token string
	client            *http.Client
	proc              *replicaProc
}

// do sends a request with a bearer token and extra headers and returns the
// status, the Retry-After header and the body.
func (p *peer) do(t *testing.T, method, path, token string, body any, hdr map[string]string) (int, string, []byte) {
	t.Helper()
	var r io.Reader
	switch b := body.(type) {
	case nil:
	case []byte:
		r = bytes.NewReader(b)
	default:
		j, _ := json.Marshal(b)
		r = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, p.root+api.Prefix+path, r)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := p.client.Do(req)
	if err != nil {
		t.Fatalf("%s %s on %s: %v", method, path, p.name, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header.Get("Retry-After"), data
}

// metric reads one sample of the replica's /metrics, 0 when absent.
func (p *peer) metric(t *testing.T, sample string) float64 {
	t.Helper()
	resp, err := p.client.Get(p.root + MetricsPath)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), sample+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatal(err)
			}
			return f
		}
	}
	return 0
}

// TestReplicas_ForwardToTheHolder: two replicas over HTTPS with the
// certificates they make from the shared fleet CA. The operator's actions
// sent to the replica without the campaigns' lease are forwarded to the
// holder, which runs them (201, 200), with the caller's token checked on
// both: a wrong one is refused at once (401) and never forwarded. A request
// already forwarded once is not forwarded again (503), and a holder that
// died answers 503 naming it, with Retry-After, until the other takes the
// lease and runs the action itself. Before forwarding, every one of these
// actions was answered 503 by the replica without the lease.
func TestReplicas_ForwardToTheHolder(t *testing.T) {
	db := pg.DB(t)
	broker := startMosquitto(t)
	dir, key, env := replicaSetup(t, db, broker)
	env = append(env, "FLEET_TEST_TLS=1")

	peers := map[string]*peer{"a": {name: "a", proc: startReplica(t, "a", env)}}
	peers["b"] = &peer{name: "b", proc: startReplica(t, "b", env)}
	token, err := os.ReadFile(filepath.Join(dir, "token"))
	if err != nil {
		t.Fatal(err)
	}
	caPEM, err := os.ReadFile(filepath.Join(dir, pki.CertFile))
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(caPEM)
	for _, p := range peers {
		p.token = strings.TrimSpace(string(token))
		p.root = strings.TrimSuffix(p.proc.base, api.Prefix)
		p.client = &http.Client{Timeout: time.Minute, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}}}
	}
	waitFor(t, "a replica to take the campaigns' lease", func() bool { return holder(t, db) != "" })
	first := holder(t, db)
	owner, standby := peers[first], peers[map[string]string{"a": "b", "b": "a"}[first]]

	// What every replica serves itself.
	if st, _, body := standby.do(t, http.MethodPost, "/devices", standby.token, api.AddDevice{ProductKey: "pk", DeviceName: "d1", Board: "board-a", Group: "lab"}, nil); st != http.StatusCreated {
		t.Fatalf("add a device: %d %s", st, body)
	}
	var img api.Image
	st, _, body := standby.do(t, http.MethodPost, "/images?board=board-a&version=2.0.0", standby.token, signedImage(t, key, "2.0.0"), map[string]string{"Content-Type": "application/octet-stream"})
	if st != http.StatusCreated || json.Unmarshal(body, &img) != nil {
		t.Fatalf("upload: %d %s", st, body)
	}
	create := api.CreateCampaign{ImageID: img.ID, Target: api.Target{Group: "lab"}, Waves: "100%", SuccessPercent: 100, ErrorPercent: 50}
	const createRoute = `route="POST /api/v1/campaigns"`

	// A wrong token is refused by the replica it reaches, not forwarded.
	if st, _, body := standby.do(t, http.MethodPost, "/campaigns", "not-a-token", create, nil); st != http.StatusUnauthorized {
		t.Errorf("a wrong token on the replica without the lease: %d %s, want 401", st, body)
	}
	if n := standby.metric(t, `otaserve_api_forwarded_total{result="forwarded",`+createRoute+`}`); n != 0 {
		t.Errorf("a refused token was forwarded (%v)", n)
	}

	// Created through the replica without the lease, by the holder.
	var c api.Campaign
	st, _, body = standby.do(t, http.MethodPost, "/campaigns", standby.token, create, nil)
	if st != http.StatusCreated || json.Unmarshal(body, &c) != nil {
		t.Fatalf("create a campaign on the replica without the lease: %d %s, want 201", st, body)
	}
	if n := standby.metric(t, `otaserve_api_forwarded_total{result="forwarded",`+createRoute+`}`); n != 1 {
		t.Errorf("%s counted %v requests forwarded, want 1", standby.name, n)
	}
	if n := owner.metric(t, `otaserve_api_request_duration_seconds_count{code="201",`+createRoute+`}`); n != 1 {
		t.Errorf("the holder %s created %v campaigns, want 1", owner.name, n)
	}
	var status api.Status
	if st, _, body := owner.do(t, http.MethodGet, fmt.Sprintf("/campaigns/%d", c.ID), owner.token, nil, nil); st != http.StatusOK || json.Unmarshal(body, &status) != nil || status.Campaign.State != "running" {
		t.Errorf("the campaign on the holder: %d %s, want running", st, body)
	}
	pause := fmt.Sprintf("/campaigns/%d/pause", c.ID)
	resume := fmt.Sprintf("/campaigns/%d/resume", c.ID)
	if st, _, body := standby.do(t, http.MethodPost, pause, standby.token, nil, nil); st != http.StatusOK || !strings.Contains(string(body), `"paused"`) {
		t.Errorf("pause on the replica without the lease: %d %s, want 200 paused", st, body)
	}

	// Forwarded once already: a second hop could loop.
	st, retry, body := standby.do(t, http.MethodPost, resume, standby.token, nil, map[string]string{api.ForwardedHeader: "x"})
	if st != http.StatusServiceUnavailable || retry == "" || !strings.Contains(string(body), "not forwarded twice") || !strings.Contains(string(body), owner.name) {
		t.Errorf("a forwarded request to the replica without the lease: %d Retry-After %q %s, want 503 naming the holder, with Retry-After", st, retry, body)
	}
	if n := owner.metric(t, `otaserve_api_request_duration_seconds_count{code="200",route="POST /api/v1/campaigns/{id}/{action}"}`); n != 1 {
		t.Errorf("the holder ran %v actions, want 1 (the pause)", n)
	}

	// The dashboard: a link made on the holder opens a session on the
	// other replica, whose campaign buttons the holder runs. Before,
	// the link was unknown there, and the buttons answered 503.
	dashboardAction(t, owner, standby, c.ID, "resume", "running")
	dashboardAction(t, owner, standby, c.ID, "pause", "paused")

	// The holder dies: its lease runs on for a few seconds, at a URL
	// nothing answers.
	if err := owner.proc.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = owner.proc.cmd.Wait()
	st, retry, body = standby.do(t, http.MethodPost, resume, standby.token, nil, nil)
	if st != http.StatusServiceUnavailable || retry == "" || !strings.Contains(string(body), owner.name) || !strings.Contains(string(body), "cannot reach") {
		t.Errorf("an action while the holder is dead: %d Retry-After %q %s, want 503 naming the holder and why, with Retry-After", st, retry, body)
	}
	if s, err := strconv.Atoi(retry); err != nil || s < 1 || s > 7 {
		t.Errorf("Retry-After %q, want the seconds until the lease expires and a takeover, 1 to 7", retry)
	}
	waitFor(t, "the other replica to take the lease", func() bool { return holder(t, db) == standby.name })
	deadline := time.Now().Add(30 * time.Second)
	for {
		st, _, body = standby.do(t, http.MethodPost, resume, standby.token, nil, nil)
		if st != http.StatusServiceUnavailable || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond) // the new holder loads the campaigns
	}
	if st != http.StatusOK || !strings.Contains(string(body), `"running"`) {
		t.Errorf("resume on the new holder: %d %s, want 200 running", st, body)
	}
}

// dashboardAction signs in to the dashboard of the replica without the
// lease with a link the holder made, presses the campaign page's button
// for action there, as a browser does (its CSRF token, its Origin), and
// checks that the holder ran it: the campaign is then in state want.
func dashboardAction(t *testing.T, owner, standby *peer, id uint64, action, want string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, owner.root+dashboard.LinkPath, nil)
	req.Header.Set("Authorization", "Bearer "+owner.token)
	resp, err := owner.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	link, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	_, secret, ok := strings.Cut(strings.TrimSpace(string(link)), "/?login=")
	if resp.StatusCode != http.StatusOK || !ok {
		t.Fatalf("a sign-in link from the holder: %d %s", resp.StatusCode, link)
	}
	browser := &http.Client{Transport: standby.client.Transport, Timeout: time.Minute,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	send := func(method, path string, form url.Values, cookies []*http.Cookie) (*http.Response, string) {
		var body io.Reader
		if form != nil {
			body = strings.NewReader(form.Encode())
		}
		req, _ := http.NewRequest(method, standby.root+path, body)
		if form != nil {
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			req.Header.Set("Origin", standby.root)
		}
		for _, c := range cookies {
			req.AddCookie(c)
		}
		resp, err := browser.Do(req)
		if err != nil {
			t.Fatalf("%s %s on %s: %v", method, path, standby.name, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b)
	}
	resp, body := send(http.MethodGet, "/?login="+secret, nil, nil)
	cookies := resp.Cookies()
	if resp.StatusCode != http.StatusSeeOther || len(cookies) != 1 {
		t.Fatalf("the holder's link opened on %s: %d, %d cookies, %s; want 303 and a session cookie", standby.name, resp.StatusCode, len(cookies), body)
	}
	page := fmt.Sprintf("/campaigns/%d", id)
	resp, body = send(http.MethodGet, page, nil, cookies)
	m := regexp.MustCompile(`name="csrf" value="([0-9a-f]+)"`).FindStringSubmatch(body)
	if resp.StatusCode != http.StatusOK || m == nil {
		t.Fatalf("the campaign page on %s: %d, CSRF token found: %v", standby.name, resp.StatusCode, m != nil)
	}
	const counted = `otaserve_api_forwarded_total{result="forwarded",route="POST /api/v1/campaigns/{id}/{action}"}`
	before := standby.metric(t, counted)
	resp, body = send(http.MethodPost, page+"/"+action, url.Values{"csrf": {m[1]}}, cookies)
	if loc := resp.Header.Get("Location"); resp.StatusCode != http.StatusSeeOther || loc != page {
		t.Fatalf("%s from the dashboard of %s: %d to %q %s; want 303 back to %s, with no error", action, standby.name, resp.StatusCode, loc, body, page)
	}
	if n := standby.metric(t, counted); n != before+1 {
		t.Errorf("%s from the dashboard of %s counted %v forwards, want %v: under the API route it stands for", action, standby.name, n, before+1)
	}
	var status api.Status
	if st, _, b := owner.do(t, http.MethodGet, page, owner.token, nil, nil); st != http.StatusOK || json.Unmarshal(b, &status) != nil || status.Campaign.State != want {
		t.Errorf("after %s from the dashboard of %s the holder has the campaign: %d %s, want %s", action, standby.name, st, b, want)
	}
}

// TestReplicas_AdvertiseURL: the URL a replica records in the campaigns'
// lease is --advertise-url, checked, or the scheme and address of a --http
// that names a host (the port it got, for port 0). On a wildcard address
// there is none, and the start says so in the log.
func TestReplicas_AdvertiseURL(t *testing.T) {
	db := pg.DB(t)
	cases := []struct {
		name, http, advertise string
		tls                   bool
		want, warn, err       string
	}{
		{name: "derived", http: "127.0.0.1:0", want: `^http://127\.0\.0\.1:[1-9][0-9]*$`},
		{name: "derived TLS", http: "127.0.0.1:0", tls: true, want: `^https://127\.0\.0\.1:[1-9][0-9]*$`},
		{name: "given", http: "127.0.0.1:0", tls: true, advertise: "https://otaserve-b.internal:8443/", want: `^https://otaserve-b\.internal:8443$`},
		{name: "wildcard", http: ":0", want: `^$`, warn: "cannot be forwarded to it and are answered 503"},
		{name: "not a URL", http: "127.0.0.1:0", advertise: "10.0.0.5:8443", err: "--advertise-url \"10.0.0.5:8443\": want the URL the other replicas reach this one at"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var log strings.Builder
			srv, err := New(Config{DataDir: t.TempDir(), DB: db, BrokerURL: "tcp://127.0.0.1:1", ReplicaID: "r", HTTPAddr: c.http,
				AdvertiseURL: c.advertise, AutoTLS: c.tls, Logger: slog.New(slog.NewTextHandler(&syncWriter{w: &log}, nil))})
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Errorf("New: %v, want %q", err, c.err)
				}
				if srv != nil {
					srv.Close()
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer srv.Close()
			if got := srv.AdvertiseURL(); !regexp.MustCompile(c.want).MatchString(got) {
				t.Errorf("advertised %q, want %s", got, c.want)
			}
			if c.warn != "" && !strings.Contains(log.String(), c.warn) {
				t.Errorf("the log says nothing of it:\n%s", log.String())
			}
			if c.advertise != "" && c.tls && !slices.Contains(srv.TLSHosts(), "otaserve-b.internal") {
				t.Errorf("the certificate names %v, not the advertised host the others verify", srv.TLSHosts())
			}
		})
	}
}

// syncWriter serializes the log's writes.
type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}
