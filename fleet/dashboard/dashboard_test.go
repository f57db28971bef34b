package dashboard_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/otaport/otaport/fleet/api"
	"github.com/otaport/otaport/fleet/campaign"
	"github.com/otaport/otaport/fleet/dashboard"
	"github.com/otaport/otaport/fleet/firmware"
	"github.com/otaport/otaport/fleet/store"
)

// clock is a test's time, moved by hand.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

const token = "operator-token-for-tests"

// fixture is the dashboard over a real store, campaign service and API on
// a loopback server, with an admin token (token) in its tokens.
type fixture struct {
	d      *dashboard.Dashboard
	srv    *httptest.Server
	clk    *clock
	st     *store.Store
	tokens *api.Tokens
	svc    *campaign.Service
}

func setup(t *testing.T) *fixture {
	t.Helper()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	dir := t.TempDir()
	st, err := store.Open(filepath.Join(dir, "fleet.db"))
	must(err)
	t.Cleanup(func() { st.Close() })
	blobs, err := firmware.NewStore(filepath.Join(dir, "firmware"))
	must(err)
	svc, err := campaign.NewService(campaign.Config{Store: st, FirmwareURL: func(store.Image) string { return "" }})
	must(err)
	clk := &clock{now: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	toks := &api.Tokens{Store: st, Now: clk.Now}
	_, err = toks.Put("ops", api.ScopeAdmin, token, time.Time{})
	must(err)
	h, err := api.New(api.Config{Store: st, Firmware: blobs, Campaigns: svc, Tokens: toks})
	must(err)
	d, err := dashboard.New(dashboard.Config{Store: st, Campaigns: svc, API: h, Tokens: toks, Now: clk.Now})
	must(err)
	srv := httptest.NewServer(d)
	t.Cleanup(srv.Close)
	return &fixture{d: d, srv: srv, clk: clk, st: st, tokens: toks, svc: svc}
}

// serve runs the dashboard (see setup).
func serve(t *testing.T) (*dashboard.Dashboard, *httptest.Server, *clock) {
	f := setup(t)
	return f.d, f.srv, f.clk
}

func serveStore(t *testing.T) (*dashboard.Dashboard, *httptest.Server, *clock, *store.Store) {
	f := setup(t)
	return f.d, f.srv, f.clk, f.st
}

// linkFor makes a sign-in link as an operator does, through the API route
// with a token's secret, and returns its path ("/?login=...").
func linkFor(t *testing.T, srv *httptest.Server, secret string) string {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, srv.URL+dashboard.LinkPath, nil)
	req.Header.Set("Authorization", "Bearer "+secret)
	resp, body := do(t, http.DefaultClient, req)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("POST %s: %d %s", dashboard.LinkPath, resp.StatusCode, body)
	}
	return strings.TrimPrefix(strings.TrimSpace(body), srv.URL)
}

// browser is an HTTP client with cookies that does not follow redirects.
func browser(t *testing.T) *http.Client {
	jar, _ := cookiejar.New(nil)
	return &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

func do(t *testing.T, c *http.Client, req *http.Request) (*http.Response, string) {
	t.Helper()
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func get(t *testing.T, c *http.Client, u string) (*http.Response, string) {
	req, _ := http.NewRequest(http.MethodGet, u, nil)
	return do(t, c, req)
}

// TestSignIn_LinkIsSingleUseAndExpires: a link opens one session, with a
// cookie the page's scripts cannot read and other sites cannot send; the
// same link again, an expired one or an unknown one is refused.
func TestSignIn_LinkIsSingleUseAndExpires(t *testing.T) {
	_, srv, clk := serve(t)
	c := browser(t)
	if resp, _ := get(t, c, srv.URL+"/"); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("the fleet without a session: %d, want 401", resp.StatusCode)
	}
	link := linkFor(t, srv, token)
	resp, _ := get(t, c, srv.URL+link)
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/" {
		t.Fatalf("sign-in: %d to %q, want 303 to /", resp.StatusCode, resp.Header.Get("Location"))
	}
	cookies := resp.Cookies()
	if len(cookies) != 1 || cookies[0].Name != dashboard.CookieName || !cookies[0].HttpOnly || cookies[0].SameSite != http.SameSiteStrictMode {
		t.Fatalf("session cookie: %+v, want one HttpOnly SameSite=Strict %s", cookies, dashboard.CookieName)
	}
	if resp, body := get(t, c, srv.URL+"/"); resp.StatusCode != 200 || !strings.Contains(body, "<h1>Fleet</h1>") {
		t.Fatalf("the fleet with the session: %d", resp.StatusCode)
	}

	expired := linkFor(t, srv, token)
	for _, c := range []struct {
		name, link string
		later      time.Duration // how long after the link was made
	}{
		{"the same link again", link, 0},
		{"an unknown link", "/?login=0123456789abcdef", 0},
		{"an expired link", expired, 5*time.Minute + time.Second},
	} {
		t.Run(c.name, func(t *testing.T) {
			clk.add(c.later)
			resp, body := get(t, browser(t), srv.URL+c.link)
			if resp.StatusCode != http.StatusUnauthorized || len(resp.Cookies()) != 0 || !strings.Contains(body, "used already or has expired") {
				t.Errorf("%d, cookies %v, want 401 saying the link was used or expired", resp.StatusCode, resp.Cookies())
			}
		})
	}
}

// TestSignIn_SessionOnEveryReplica: two dashboards on one database, as two
// replicas behind a load balancer are. A link made on one opens a session
// on the other, once; the session works on both, with its CSRF token; a
// sign-out on one ends it on both. Before, links and sessions were each
// process's own: the link was unknown to the other replica.
func TestSignIn_SessionOnEveryReplica(t *testing.T) {
	f := setup(t)
	h, err := api.New(api.Config{Store: f.st, Firmware: nil, Campaigns: f.svc, Tokens: f.tokens})
	if err != nil {
		t.Fatal(err)
	}
	d2, err := dashboard.New(dashboard.Config{Store: f.st, Campaigns: f.svc, API: h, Tokens: f.tokens, Now: f.clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	srv2 := httptest.NewServer(d2)
	t.Cleanup(srv2.Close)

	link := linkFor(t, f.srv, token)
	c := browser(t)
	if resp, body := get(t, c, srv2.URL+link); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("a link made on one replica, opened on the other: %d %s, want 303", resp.StatusCode, body)
	}
	if resp, _ := get(t, browser(t), f.srv.URL+link); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("the same link again on the replica that made it: %d, want 401", resp.StatusCode)
	}
	var csrf string
	for _, srv := range []*httptest.Server{f.srv, srv2} {
		resp, page := get(t, c, srv.URL+"/campaigns")
		m := csrfField.FindStringSubmatch(page)
		if resp.StatusCode != http.StatusOK || m == nil {
			t.Fatalf("the campaigns page on %s with the session: %d", srv.URL, resp.StatusCode)
		}
		if csrf != "" && m[1] != csrf {
			t.Errorf("CSRF token %s on one replica, %s on the other; want the session's one", csrf, m[1])
		}
		csrf = m[1]
	}
	u, _ := url.Parse(srv2.URL)
	cookies := c.Jar.Cookies(u)
	req, _ := http.NewRequest(http.MethodPost, f.srv.URL+"/logout", strings.NewReader(url.Values{"csrf": {csrf}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if resp, _ := do(t, c, req); resp.StatusCode != http.StatusOK {
		t.Fatalf("sign out: %d", resp.StatusCode)
	}
	// The cookie as the browser had it before, on the other replica.
	req, _ = http.NewRequest(http.MethodGet, srv2.URL+"/campaigns", nil)
	for _, ck := range cookies {
		req.AddCookie(ck)
	}
	if resp, _ := do(t, browser(t), req); len(cookies) != 1 || resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("the session's cookie on the other replica after signing out: %d (%d cookies), want 401", resp.StatusCode, len(cookies))
	}
}

// TestSignIn_LinkOfARevokedToken: a link whose token was revoked after it
// was made opens no session, and the page says why.
func TestSignIn_LinkOfARevokedToken(t *testing.T) {
	f := setup(t)
	if _, err := f.tokens.Put("oncall", api.ScopeOperator, "oncall-secret", time.Time{}); err != nil {
		t.Fatal(err)
	}
	link := linkFor(t, f.srv, "oncall-secret")
	if _, err := f.st.RevokeToken("oncall", f.clk.Now()); err != nil {
		t.Fatal(err)
	}
	resp, body := get(t, browser(t), f.srv.URL+link)
	if resp.StatusCode != http.StatusUnauthorized || len(resp.Cookies()) != 0 || !strings.Contains(body, "no longer signs in") || !strings.Contains(body, "revoked") {
		t.Errorf("a link of a revoked token: %d, cookies %v; want 401 saying the token was revoked", resp.StatusCode, resp.Cookies())
	}
}

// unreachable is the Holder of a replica without the campaigns' lease whose
// holder cannot be reached: it reads the form it would send on, then fails.
type unreachable struct{ body string }

func (u *unreachable) Forward(w http.ResponseWriter, r *http.Request, route string, fail func(http.ResponseWriter, error)) bool {
	b, _ := io.ReadAll(r.Body)
	u.body = string(b)
	fail(w, fmt.Errorf("%s needs the holder of the campaigns' lease, replica a, and this replica cannot reach it", route))
	return true
}

// TestCampaign_HolderUnreachableSaysWhy: a campaign button on a replica
// without the lease hands the form on whole (signedIn read it for the CSRF
// token), and when the holder cannot be reached the page says why.
func TestCampaign_HolderUnreachableSaysWhy(t *testing.T) {
	f := setup(t)
	holder := &unreachable{}
	h, err := api.New(api.Config{Store: f.st, Campaigns: f.svc, Tokens: f.tokens})
	if err != nil {
		t.Fatal(err)
	}
	d2, err := dashboard.New(dashboard.Config{Store: f.st, Campaigns: f.svc, API: h, Tokens: f.tokens, Now: f.clk.Now, Holder: holder})
	if err != nil {
		t.Fatal(err)
	}
	srv2 := httptest.NewServer(d2)
	t.Cleanup(srv2.Close)
	c, csrf := signIn(t, f.d, f.srv)
	form := url.Values{"csrf": {csrf}}.Encode()
	req, _ := http.NewRequest(http.MethodPost, srv2.URL+"/campaigns/7/pause", strings.NewReader(form))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, _ := do(t, c, req)
	loc, _ := url.Parse(resp.Header.Get("Location"))
	if resp.StatusCode != http.StatusSeeOther || loc.Path != "/campaigns/7" || !strings.Contains(loc.Query().Get("err"), "cannot reach it") {
		t.Errorf("pause with the holder unreachable: %d to %q; want 303 back to /campaigns/7 saying why", resp.StatusCode, resp.Header.Get("Location"))
	}
	if holder.body != form {
		t.Errorf("the form handed on: %q, want %q as the browser sent it", holder.body, form)
	}
}

var csrfField = regexp.MustCompile(`name="csrf" value="([0-9a-f]+)"`)

// TestPost_NeedsTheSessionsCSRFToken: a signed-in browser's POST without
// the session's CSRF token, or from another origin, changes nothing.
func TestPost_NeedsTheSessionsCSRFToken(t *testing.T) {
	d, srv, _ := serve(t)
	c, csrf := signIn(t, d, srv)
	post := func(form url.Values, origin string) int {
		req, _ := http.NewRequest(http.MethodPost, srv.URL+"/campaigns", strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if origin != "" {
			req.Header.Set("Origin", origin)
		}
		resp, _ := do(t, c, req)
		return resp.StatusCode
	}
	campaign := url.Values{"image": {"1"}, "target_kind": {"group"}, "target": {"lab"}, "waves": {"100%"}}
	withToken := func(tok string) url.Values {
		f := url.Values{"csrf": {tok}}
		for k, v := range campaign {
			f[k] = v
		}
		return f
	}
	for _, tc := range []struct {
		name   string
		form   url.Values
		origin string
		want   int
	}{
		{"no token", campaign, "", http.StatusForbidden},
		{"another token", withToken(strings.Repeat("0", len(csrf))), "", http.StatusForbidden},
		{"another origin", withToken(csrf), "https://evil.example", http.StatusForbidden},
		{"opaque origin", withToken(csrf), "null", http.StatusForbidden},
		// Accepted, then refused by the API (no image 1): back to the page.
		{"the session's token", withToken(csrf), srv.URL, http.StatusSeeOther},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := post(tc.form, tc.origin); got != tc.want {
				t.Errorf("POST /campaigns: %d, want %d", got, tc.want)
			}
		})
	}
}

// TestLoginLinkAPI: a new sign-in link for the bearer of the operator
// token, and none without it.
func TestLoginLinkAPI(t *testing.T) {
	_, srv, _ := serve(t)
	for _, tc := range []struct {
		name, auth string
		want       int
	}{
		{"no token", "", http.StatusUnauthorized},
		{"wrong token", "Bearer nope", http.StatusUnauthorized},
		{"operator token", "Bearer " + token, http.StatusOK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodPost, srv.URL+dashboard.LinkPath, nil)
			if tc.auth != "" {
				req.Header.Set("Authorization", tc.auth)
			}
			resp, body := do(t, http.DefaultClient, req)
			if resp.StatusCode != tc.want {
				t.Fatalf("POST %s: %d, want %d", dashboard.LinkPath, resp.StatusCode, tc.want)
			}
			if tc.want != http.StatusOK {
				return
			}
			link := strings.TrimSpace(body)
			if !strings.HasPrefix(link, srv.URL+"/?login=") {
				t.Fatalf("link %q", link)
			}
			if resp, _ := get(t, browser(t), link); resp.StatusCode != http.StatusSeeOther {
				t.Errorf("the new link: %d, want 303", resp.StatusCode)
			}
		})
	}
}

// TestStatic_NeedsNoSession: the sign-in page itself loads htmx and the
// style sheet, embedded in the binary.
func TestStatic_NeedsNoSession(t *testing.T) {
	_, srv, _ := serve(t)
	for _, p := range []string{"/static/htmx.min.js", "/static/style.css"} {
		resp, body := get(t, browser(t), srv.URL+p)
		if resp.StatusCode != 200 || len(body) < 100 {
			t.Errorf("GET %s: %d, %d bytes", p, resp.StatusCode, len(body))
		}
	}
}

// signIn returns a signed-in browser and its session's CSRF token.
func signIn(t *testing.T, d *dashboard.Dashboard, srv *httptest.Server) (*http.Client, string) {
	t.Helper()
	c := browser(t)
	get(t, c, srv.URL+linkFor(t, srv, token))
	_, page := get(t, c, srv.URL+"/campaigns")
	m := csrfField.FindStringSubmatch(page)
	if m == nil {
		t.Fatal("no csrf field in the campaigns page")
	}
	return c, m[1]
}

var deviceRow = regexp.MustCompile(`data-device="([^"]+)"`)

// TestFleet_Filters: each filter and the search keep the devices that
// match and only those.
func TestFleet_Filters(t *testing.T) {
	d, srv, _, st := serveStore(t)
	for _, dev := range []store.Device{
		{ProductKey: "pk", DeviceName: "a1", Board: "nucleo-h743zi", Group: "lab", Version: "1.0.0+0", State: store.DeviceIdle},
		{ProductKey: "pk", DeviceName: "a2", Board: "nucleo-h743zi", Group: "field", Version: "1.1.0+0", State: store.DeviceFailed, LastError: "sensor bus timeout"},
		{ProductKey: "pk", DeviceName: "b1", Board: "stm32f407-disco", Group: "lab", Version: "1.1.0+0", State: store.DeviceRegistered},
	} {
		if err := st.AddDevice(dev); err != nil {
			t.Fatal(err)
		}
	}
	c, _ := signIn(t, d, srv)
	for _, tc := range []struct{ query, want string }{
		{"", "pk/a1 pk/a2 pk/b1"},
		{"board=nucleo-h743zi", "pk/a1 pk/a2"},
		{"group=lab", "pk/a1 pk/b1"},
		{"version=1.1.0%2B0", "pk/a2 pk/b1"},
		{"state=failed", "pk/a2"},
		{"state=offline", "pk/a1 pk/a2 pk/b1"},
		{"state=online", ""},
		{"q=TIMEOUT", "pk/a2"},
		{"q=b1", "pk/b1"},
		{"board=nucleo-h743zi&group=lab", "pk/a1"},
	} {
		t.Run(tc.query, func(t *testing.T) {
			resp, body := get(t, c, srv.URL+"/?"+tc.query)
			if resp.StatusCode != 200 {
				t.Fatalf("GET /?%s: %d", tc.query, resp.StatusCode)
			}
			var got []string
			for _, m := range deviceRow.FindAllStringSubmatch(body, -1) {
				got = append(got, m[1])
			}
			if strings.Join(got, " ") != tc.want {
				t.Errorf("devices %v, want %s", got, tc.want)
			}
		})
	}
}

// TestCampaign_PauseResumeCancelFromThePage: the page's forms create a
// campaign and pause, resume and cancel it through the API; an action the
// campaign's state refuses comes back as the API's error.
func TestCampaign_PauseResumeCancelFromThePage(t *testing.T) {
	d, srv, _, st := serveStore(t)
	for _, n := range []string{"a", "b"} {
		if err := st.AddDevice(store.Device{ProductKey: "pk", DeviceName: n, Board: "b", Group: "lab", Version: "1.0.0+0", State: store.DeviceIdle}); err != nil {
			t.Fatal(err)
		}
	}
	// Recorded as an upload would record it; the devices never download it.
	img, err := st.AddImage(store.Image{Version: "2.0.0+0", Board: "b", Size: 1000, SHA256: strings.Repeat("ab", 32), Uploaded: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	c, csrf := signIn(t, d, srv)
	post := func(path string, form url.Values) (string, string) {
		t.Helper()
		form.Set("csrf", csrf)
		req, _ := http.NewRequest(http.MethodPost, srv.URL+path, strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		resp, _ := do(t, c, req)
		if resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("POST %s: %d, want 303", path, resp.StatusCode)
		}
		loc := resp.Header.Get("Location")
		_, body := get(t, c, srv.URL+loc)
		return loc, body
	}
	loc, _ := post("/campaigns", url.Values{"image": {fmt.Sprint(img.ID)}, "target_kind": {"group"}, "target": {"lab"},
		"waves": {"1,100%"}, "success": {"100"}, "error": {"0"}})
	if loc != "/campaigns/1" {
		t.Fatalf("create: sent to %s, want /campaigns/1", loc)
	}
	state := regexp.MustCompile(`id="campaign-state">([a-z]+)<`)
	for _, tc := range []struct{ action, want, err string }{
		{"pause", "paused", ""},
		{"pause", "paused", "paused"}, // twice: the API refuses, the page says why
		{"resume", "running", ""},
		{"cancel", "canceled", ""},
	} {
		_, body := post("/campaigns/1/"+tc.action, url.Values{})
		m := state.FindStringSubmatch(body)
		if m == nil || m[1] != tc.want {
			t.Errorf("after %s: state %v, want %s", tc.action, m, tc.want)
		}
		if tc.err != "" && !strings.Contains(body, `id="error"`) {
			t.Errorf("after a refused %s: no error on the page", tc.action)
		}
	}
	if _, body := post("/campaigns", url.Values{"image": {"99"}, "target_kind": {"group"}, "target": {"lab"}}); !strings.Contains(body, "campaign refused") {
		t.Errorf("a campaign for a missing image: the page does not say it was refused")
	}
}

// TestDevice_ShowsEachModule: the fleet page and a device's page show the
// version of each module of a device of several.
func TestDevice_ShowsEachModule(t *testing.T) {
	d, srv, _, st := serveStore(t)
	dev := store.Device{ProductKey: "pk", DeviceName: "combo", Board: "nucleo-h743zi", Version: "1.0.0+0", State: store.DeviceIdle,
		Modules: []store.Module{{Name: "wifi", Board: "esp32-devkitc", Version: "2.1.0+0", State: store.DeviceIdle}}}
	if err := st.AddDevice(dev); err != nil {
		t.Fatal(err)
	}
	c, _ := signIn(t, d, srv)
	_, fleet := get(t, c, srv.URL+"/")
	if !strings.Contains(fleet, `<span title="idle">wifi 2.1.0&#43;0</span>`) {
		t.Errorf("the fleet page does not show the wifi module's version:\n%s", fleet)
	}
	resp, page := get(t, c, srv.URL+"/devices/pk/combo")
	if resp.StatusCode != 200 {
		t.Fatalf("device page: %d %s", resp.StatusCode, page)
	}
	for _, want := range []string{
		`<tr data-module="default"><td>default</td><td>nucleo-h743zi</td><td class="version">1.0.0&#43;0</td>`,
		`<tr data-module="wifi"><td>wifi</td><td>esp32-devkitc</td><td class="version">2.1.0&#43;0</td>`,
	} {
		if !strings.Contains(page, want) {
			t.Errorf("the device page lacks %s", want)
		}
	}
}

// TestSession_BoundToItsTokensScope: a session has the scope of the token
// whose link opened it. A read session sees every page but no form that
// changes the fleet, and its POSTs are refused with 403; an operator
// session runs a campaign's actions. A session ends when its token
// expires, even before its own time is up, and when the token is revoked.
func TestSession_BoundToItsTokensScope(t *testing.T) {
	f := setup(t)
	if err := f.st.AddDevice(store.Device{ProductKey: "pk", DeviceName: "a", Board: "b", Group: "lab", Version: "1.0.0+0", State: store.DeviceIdle}); err != nil {
		t.Fatal(err)
	}
	img, err := f.st.AddImage(store.Image{Version: "2.0.0+0", Board: "b", Size: 1000, SHA256: strings.Repeat("ab", 32), Uploaded: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	admin, adminCSRF := signIn(t, f.d, f.srv)
	postAs := func(c *http.Client, csrf, path string, form url.Values) (int, string) {
		t.Helper()
		form.Set("csrf", csrf)
		req, _ := http.NewRequest(http.MethodPost, f.srv.URL+path, strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		resp, body := do(t, c, req)
		return resp.StatusCode, body
	}
	if code, _ := postAs(admin, adminCSRF, "/campaigns", url.Values{"image": {fmt.Sprint(img.ID)}, "target_kind": {"group"}, "target": {"lab"},
		"waves": {"1,100%"}, "success": {"100"}, "error": {"0"}}); code != http.StatusSeeOther {
		t.Fatalf("an admin session creates a campaign: %d", code)
	}
	if _, err := f.st.Campaign(1); err != nil {
		t.Fatalf("the admin session's campaign: %v", err)
	}
	session := func(name string, scope api.Scope, ttl time.Duration) (*http.Client, string) {
		t.Helper()
		secret, _, err := f.tokens.Create(name, scope, ttl)
		if err != nil {
			t.Fatal(err)
		}
		c := browser(t)
		resp, _ := get(t, c, f.srv.URL+linkFor(t, f.srv, secret))
		if len(resp.Cookies()) != 1 {
			t.Fatalf("%s: no session cookie", name)
		}
		if max := time.Duration(resp.Cookies()[0].MaxAge) * time.Second; max > ttl {
			t.Errorf("%s: the cookie lasts %v, past its token's %v", name, max, ttl)
		}
		_, page := get(t, c, f.srv.URL+"/")
		m := csrfField.FindStringSubmatch(page)
		if m == nil {
			t.Fatalf("%s: no csrf field on the fleet page", name)
		}
		return c, m[1]
	}
	viewer, viewerCSRF := session("viewer", api.ScopeRead, time.Hour)
	oncall, oncallCSRF := session("oncall", api.ScopeOperator, 2*time.Hour)

	forms := []string{`action="/images?csrf=`, `id="create"`, `action="/campaigns/1/pause"`}
	for _, c := range []struct {
		name   string
		client *http.Client
		offers bool
	}{{"read", viewer, false}, {"operator", oncall, true}} {
		for _, page := range []string{"/", "/images", "/campaigns", "/campaigns/1", "/devices/pk/a"} {
			resp, body := get(t, c.client, f.srv.URL+page)
			if resp.StatusCode != http.StatusOK {
				t.Errorf("%s session, GET %s: %d", c.name, page, resp.StatusCode)
			}
			for _, form := range forms {
				if strings.Contains(body, form) && !c.offers {
					t.Errorf("a %s session is offered %s on %s", c.name, form, page)
				}
			}
		}
	}
	_, page := get(t, viewer, f.srv.URL+"/campaigns/1")
	if !strings.Contains(page, "viewer (read: read only)") {
		t.Error("the page does not say the session is read only")
	}
	_, page = get(t, oncall, f.srv.URL+"/campaigns/1")
	if !strings.Contains(page, `action="/campaigns/1/pause"`) {
		t.Error("an operator session is not offered Pause")
	}

	for _, path := range []string{"/campaigns/1/pause", "/campaigns", "/images"} {
		code, body := postAs(viewer, viewerCSRF, path, url.Values{})
		if code != http.StatusForbidden || !strings.Contains(body, `token "viewer", of scope read; this needs scope operator`) {
			t.Errorf("a read session's POST %s: %d %q, want 403 naming scope operator", path, code, body)
		}
	}
	if c, _ := f.st.Campaign(1); c.State != store.CampaignRunning {
		t.Fatalf("after a read session's pause the campaign is %s", c.State)
	}
	if code, _ := postAs(oncall, oncallCSRF, "/campaigns/1/pause", url.Values{}); code != http.StatusSeeOther {
		t.Errorf("an operator session's pause: %d, want 303", code)
	}
	if c, _ := f.st.Campaign(1); c.State != store.CampaignPaused {
		t.Errorf("after an operator session's pause the campaign is %s", c.State)
	}

	// The read token expires after an hour: its session with it, though
	// sessions last 12 hours; the operator's goes on.
	f.clk.add(time.Hour + time.Second)
	if resp, _ := get(t, viewer, f.srv.URL+"/"); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("the read session after its token expired: %d, want 401", resp.StatusCode)
	}
	if resp, _ := get(t, oncall, f.srv.URL+"/"); resp.StatusCode != http.StatusOK {
		t.Errorf("the operator session before its token expires: %d, want 200", resp.StatusCode)
	}
	if _, err := f.st.RevokeToken("oncall", f.clk.Now()); err != nil {
		t.Fatal(err)
	}
	if resp, body := get(t, oncall, f.srv.URL+"/"); resp.StatusCode != http.StatusUnauthorized || !strings.Contains(body, "was revoked") {
		t.Errorf("the operator session after its token was revoked: %d, want 401 saying so", resp.StatusCode)
	}
}

// TestCampaign_ShowsDeltaBytes: a campaign whose devices are sent a delta
// image says what its orders carry against full images, and counts a
// confirmed device's bytes at the delta's size.
func TestCampaign_ShowsDeltaBytes(t *testing.T) {
	f := setup(t)
	hash := strings.Repeat("a1", 32)
	for _, n := range []string{"a", "b"} {
		if err := f.st.AddDevice(store.Device{ProductKey: "pk", DeviceName: n, Board: "b", Group: "lab", Version: "1.0.0+0", State: store.DeviceIdle}); err != nil {
			t.Fatal(err)
		}
	}
	ctx := context.Background()
	img, err := f.svc.AddImage(ctx, store.Image{Version: "2.0.0+0", Board: "b", Size: 1 << 20, SHA256: strings.Repeat("ab", 32), MD5: strings.Repeat("cd", 16)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.svc.AddImage(ctx, store.Image{Version: "2.0.0+0", Board: "b", Size: 1 << 10, SHA256: strings.Repeat("ef", 32), MD5: strings.Repeat("01", 16),
		DeltaTarget: img.ID, DeltaBaseHash: hash}); err != nil {
		t.Fatal(err)
	}
	if err := f.svc.HandleMessage("/ota/device/inform/pk/a", []byte(`{"id":1,"params":{"version":"1.0.0+0","imageHash":"`+hash+`"}}`)); err != nil {
		t.Fatal(err)
	}
	if _, err := f.svc.Create(ctx, campaign.CreateRequest{ImageIDs: []uint64{img.ID}, Target: store.Target{Group: "lab"}, Waves: "100%", SuccessPercent: 100}); err != nil {
		t.Fatal(err)
	}
	if err := f.svc.HandleMessage("/ota/device/inform/pk/a", []byte(`{"id":2,"params":{"version":"2.0.0+0"}}`)); err != nil {
		t.Fatal(err)
	}
	c, _ := signIn(t, f.d, f.srv)
	_, body := get(t, c, f.srv.URL+"/campaigns/1")
	if !strings.Contains(body, `<span id="delta-bytes">Orders carry 1.0 MiB where full images are 2.0 MiB: 1 devices on delta images.</span>`) {
		t.Errorf("the campaign page does not compare the bytes:\n%s", body)
	}
	if !strings.Contains(body, "about 1.0 KiB sent") {
		t.Errorf("the confirmed device on the delta does not count at the delta's size:\n%s", body)
	}
}
