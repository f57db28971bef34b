package api

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
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

// send makes one request with a bearer secret and returns the status and
// the error message of the answer, if any.
func (e *env) send(secret, method, path string, body any) (int, string) {
	e.t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, e.srv.URL+path, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+secret)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	var msg Error
	data, _ := io.ReadAll(resp.Body)
	json.Unmarshal(data, &msg)
	return resp.StatusCode, msg.Error
}

// TestRoutes_EveryRouteHasAScope: the route table gives each route one of
// the scopes, and ScopeOf finds it.
func TestRoutes_EveryRouteHasAScope(t *testing.T) {
	for _, r := range Routes() {
		if _, err := ParseScope(string(r.Scope)); err != nil {
			t.Errorf("%s: %v", r, err)
		}
		if s, ok := ScopeOf(r.String()); !ok || s != r.Scope {
			t.Errorf("ScopeOf(%q) = %q, %v; want %q", r, s, ok, r.Scope)
		}
	}
	if _, ok := ScopeOf("GET /nowhere"); ok {
		t.Error("ScopeOf found a route the table has not")
	}
}

// TestScopes_EachRouteOverHTTP: a token of each scope is refused with 403,
// naming the scope needed and how to get a token of it, on every route
// above its scope, and let through on every route within it.
func TestScopes_EachRouteOverHTTP(t *testing.T) {
	e := newEnv(t)
	secrets := map[Scope]string{}
	for _, s := range Scopes {
		secret, _, err := e.tokens.Create("t-"+string(s), s, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		secrets[s] = secret
	}
	fill := strings.NewReplacer("{pk}", "pk", "{dn}", "dn", "{id}", "1", "{action}", "pause", "{name}", "nobody")
	allowed := map[Scope]int{}
	for _, r := range Routes() {
		for _, s := range Scopes {
			var body any
			if r.Method == http.MethodPost {
				body = map[string]any{}
			}
			code, msg := e.send(secrets[s], r.Method, fill.Replace(r.Path), body)
			if !s.Allows(r.Scope) {
				if code != http.StatusForbidden || !strings.Contains(msg, "needs scope "+string(r.Scope)) ||
					!strings.Contains(msg, "otaserve token create --name NAME --scope "+string(r.Scope)) {
					t.Errorf("%s with a %s token: %d %q, want 403 naming scope %s and how to get a token of it", r, s, code, msg, r.Scope)
				}
				continue
			}
			allowed[s]++
			// Let through: the route's own answer (a 404 of the made-up
			// IDs, a 400 of the empty body), never the guard's.
			if code == http.StatusUnauthorized || code == http.StatusForbidden {
				t.Errorf("%s with a %s token: %d %q, want it let through", r, s, code, msg)
			}
			if r.Method == http.MethodGet && !strings.Contains(r.Path, "{") && code != http.StatusOK {
				t.Errorf("%s with a %s token: %d %q, want 200", r, s, code, msg)
			}
		}
	}
	if allowed[ScopeRead] >= allowed[ScopeOperator] || allowed[ScopeOperator] >= allowed[ScopeAdmin] || allowed[ScopeAdmin] != len(Routes()) {
		t.Errorf("routes allowed per scope %v: want read < operator < admin = all %d", allowed, len(Routes()))
	}
}

// TestTokens_UnknownExpiredRevoked: each refused token gets 401 saying
// why; the last use is written at most once a minute.
func TestTokens_UnknownExpiredRevoked(t *testing.T) {
	e := newEnv(t)
	var made NewToken
	if code := e.postJSON("/tokens", CreateToken{Name: "ci", Scope: "read", Expires: "2h"}, &made); code != http.StatusCreated {
		t.Fatalf("create: %d", code)
	}
	ci := made.Secret
	if !strings.HasPrefix(ci, TokenPrefix) || len(ci) != len(TokenPrefix)+64 {
		t.Errorf("secret %q: want %s and 64 hex digits", ci, TokenPrefix)
	}
	if want := e.clk.Now().Add(2 * time.Hour); !made.Token.Expires.Equal(want) {
		t.Errorf("expires %v, want %v", made.Token.Expires, want)
	}

	used := e.clk.Now()
	for range 3 {
		if code, msg := e.send(ci, http.MethodGet, Prefix+"/devices", nil); code != http.StatusOK {
			t.Fatalf("a live read token: %d %s", code, msg)
		}
		e.clk.add(10 * time.Second)
	}
	if tok, _ := e.st.TokenByHash(HashSecret(ci)); !tok.LastUsed.Equal(used) {
		t.Errorf("last used %v, want the first use of the minute, %v", tok.LastUsed, used)
	}
	e.clk.add(time.Minute)
	e.send(ci, http.MethodGet, Prefix+"/devices", nil)
	if tok, _ := e.st.TokenByHash(HashSecret(ci)); !tok.LastUsed.Equal(e.clk.Now()) {
		t.Errorf("last used %v a minute later, want %v", tok.LastUsed, e.clk.Now())
	}

	var other NewToken
	e.postJSON("/tokens", CreateToken{Name: "old", Scope: "operator"}, &other)
	if code := e.do(http.MethodDelete, "/tokens/old", "", nil, nil); code != http.StatusOK {
		t.Fatalf("revoke: %d", code)
	}
	e.clk.add(2 * time.Hour)
	for _, c := range []struct{ name, secret, want string }{
		{"unknown", TokenPrefix + strings.Repeat("0", 64), "unknown bearer token"},
		{"expired", ci, `token "ci" expired on 2026-01-02 05:04:05 UTC: ask an admin for a new one`},
		{"revoked", other.Secret, `token "old" was revoked on`},
	} {
		code, msg := e.send(c.secret, http.MethodGet, Prefix+"/devices", nil)
		if code != http.StatusUnauthorized || !strings.Contains(msg, c.want) {
			t.Errorf("%s token: %d %q, want 401 saying %q", c.name, code, msg, c.want)
		}
	}
}

// TestTokens_CreateListRevoke: the token routes for an admin: a default
// expiry of 90 days, never only when asked, names unique among live
// tokens, the list without secrets, and the last live admin token kept.
func TestTokens_CreateListRevoke(t *testing.T) {
	e := newEnv(t)
	var def, never NewToken
	if code := e.postJSON("/tokens", CreateToken{Name: "dash", Scope: "operator"}, &def); code != http.StatusCreated {
		t.Fatalf("create: %d", code)
	}
	if want := e.clk.Now().Add(90 * 24 * time.Hour); !def.Token.Expires.Equal(want) {
		t.Errorf("default expiry %v, want 90 days: %v", def.Token.Expires, want)
	}
	if code := e.postJSON("/tokens", CreateToken{Name: "robot", Scope: "read", Expires: "0"}, &never); code != http.StatusCreated || !never.Token.Expires.IsZero() {
		t.Errorf("expires 0: %d, expires %v, want never", code, never.Token.Expires)
	}
	for _, c := range []struct {
		req  CreateToken
		code int
		want string
	}{
		{CreateToken{Name: "dash", Scope: "read"}, http.StatusConflict, "already exists"},
		{CreateToken{Name: "x", Scope: "root"}, http.StatusBadRequest, `scope "root": use read, operator or admin`},
		{CreateToken{Name: "bad name", Scope: "read"}, http.StatusBadRequest, `token name "bad name"`},
		{CreateToken{Name: "y", Scope: "read", Expires: "-1h"}, http.StatusBadRequest, "give a duration such as 720h or 30d"},
	} {
		var msg Error
		if code := e.postJSON("/tokens", c.req, &msg); code != c.code || !strings.Contains(msg.Error, c.want) {
			t.Errorf("create %+v: %d %q, want %d saying %q", c.req, code, msg.Error, c.code, c.want)
		}
	}

	var list []Token
	e.do(http.MethodGet, "/tokens", "", nil, &list)
	var names []string
	for _, tk := range list {
		names = append(names, tk.Name+":"+tk.Scope+":"+tk.State)
	}
	if got := strings.Join(names, " "); got != "dash:operator:live robot:read:live test:admin:live" {
		t.Errorf("list: %s", got)
	}
	raw, _ := json.Marshal(list)
	if bytes.Contains(raw, []byte(def.Secret)) || bytes.Contains(raw, []byte(HashSecret(def.Secret))) {
		t.Error("the list shows a secret or its hash")
	}

	// The only admin token cannot go; once another exists, it can, and a
	// rotation may reuse its name.
	var msg Error
	if code := e.do(http.MethodDelete, "/tokens/test", "", nil, &msg); code != http.StatusConflict || !strings.Contains(msg.Error, "last live admin token") {
		t.Errorf("revoke the last admin token: %d %q, want 409", code, msg.Error)
	}
	var admin2 NewToken
	e.postJSON("/tokens", CreateToken{Name: "alice", Scope: "admin"}, &admin2)
	if code, m := e.send(admin2.Secret, http.MethodDelete, Prefix+"/tokens/dash", nil); code != http.StatusOK {
		t.Errorf("revoke dash: %d %s", code, m)
	}
	if code, m := e.send(admin2.Secret, http.MethodDelete, Prefix+"/tokens/dash", nil); code != http.StatusNotFound {
		t.Errorf("revoke dash again: %d %s, want 404", code, m)
	}
	if code, m := e.send(admin2.Secret, http.MethodPost, Prefix+"/tokens", CreateToken{Name: "dash", Scope: "operator"}); code != http.StatusCreated {
		t.Errorf("a new dash after the revoked one: %d %s", code, m)
	}
	if code, m := e.send(admin2.Secret, http.MethodDelete, Prefix+"/tokens/test", nil); code != http.StatusOK {
		t.Errorf("revoke the first admin token beside another: %d %s", code, m)
	}
}

// TestTokens_StoredHashed: the database file holds neither a created
// token's secret nor the bootstrap's, only their hashes.
func TestTokens_StoredHashed(t *testing.T) {
	e := newEnv(t)
	var made NewToken
	e.postJSON("/tokens", CreateToken{Name: "ci", Scope: "admin"}, &made)
	e.st.Close()
	raw, err := os.ReadFile(filepath.Join(e.dir, "fleet.db"))
	if err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{made.Secret, token} {
		if bytes.Contains(raw, []byte(secret)) {
			t.Errorf("the database file holds the secret %q", secret)
		}
		if !bytes.Contains(raw, []byte(HashSecret(secret))) {
			t.Errorf("the database file lacks the hash of %q", secret)
		}
	}
}

func FuzzParseTTL(f *testing.F) {
	for _, s := range []string{"", "0", "never", "720h", "30d", "-1h", "1d2h", "99999999999d"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := ParseTTL(s)
		if err == nil && d < 0 {
			t.Errorf("ParseTTL(%q) = %v, a negative lifetime", s, d)
		}
	})
}
