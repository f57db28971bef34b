package fleet

import (
	"bytes"
	"errors"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/otaport/otaport/fleet/api"
	"github.com/otaport/otaport/fleet/store"
)

// callAs makes one API request with a secret and returns the status.
func (r *running) callAs(t *testing.T, secret, method, path string, body any) int {
	t.Helper()
	saved := r.token
	r.token = secret
	defer func() { r.token = saved }()
	if body != nil {
		return r.post(t, path, body, nil)
	}
	return r.call(t, method, path, nil, "", nil)
}

// TestServer_MigratesThePlainToken: a database of the release before
// scoped tokens holds its operator token in the clear (setting api-token)
// and DATA/token holds the same. The first start makes it the bootstrap
// admin token, hashed, deletes the setting, and DATA/token keeps working,
// at this start and the next.
func TestServer_MigratesThePlainToken(t *testing.T) {
	dir := t.TempDir()
	const legacy = "0123456789abcdef0123456789abcdef0123456789abcdef"
	st, err := store.Open(filepath.Join(dir, "fleet.db"))
	if err != nil {
		t.Fatal(err)
	}
	if err := st.SetSetting(TokenSetting, legacy); err != nil {
		t.Fatal(err)
	}
	st.Close()
	if err := os.WriteFile(filepath.Join(dir, "token"), []byte(legacy+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	for start := range 2 {
		r := startToken(t, dir, nil, "")
		if tok, generated := r.srv.Token(); tok != legacy || generated {
			t.Errorf("start %d: token %q generated=%v, want the earlier release's", start, tok, generated)
		}
		if _, ok, _ := r.srv.store.Setting(TokenSetting); ok {
			t.Errorf("start %d: the database still holds setting %s", start, TokenSetting)
		}
		ts, err := r.srv.store.Tokens()
		if err != nil {
			t.Fatal(err)
		}
		if len(ts) != 1+start || ts[0].Name != api.BootstrapToken || ts[0].Scope != "admin" || ts[0].Hash != api.HashSecret(legacy) || !ts[0].Expires.IsZero() {
			t.Errorf("start %d: tokens %+v, want the bootstrap admin token, hashed, never expiring", start, ts)
		}
		if code := r.callAs(t, legacy, http.MethodPost, "/tokens", api.CreateToken{Name: "made-" + string(rune('a'+start)), Scope: "read"}); code != http.StatusCreated {
			t.Errorf("start %d: the old token creates a token (admin): %d", start, code)
		}
		if b, _ := os.ReadFile(filepath.Join(dir, "token")); strings.TrimSpace(string(b)) != legacy {
			t.Errorf("start %d: DATA/token holds %q", start, b)
		}
		r.stop(t)
	}
	// Only the setting's record is gone: no live record holds the token in
	// the clear (a page bbolt freed may, until reused; docs/security.md).
	st, err = store.Open(filepath.Join(dir, "fleet.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ts, _ := st.Tokens()
	for _, tk := range ts {
		if tk.Hash == legacy || tk.Name == legacy {
			t.Errorf("token record %+v holds the old token in the clear", tk)
		}
	}
}

// TestServer_BootstrapToken: a first start makes an admin token with the
// otas_ prefix in DATA/token (0600). Once an admin revoked it, a restart
// does not make it again and removes DATA/token; --token makes a new one,
// and a revoked token given to --token is refused.
func TestServer_BootstrapToken(t *testing.T) {
	dir := t.TempDir()
	r := start(t, dir, nil)
	boot, generated := r.srv.Token()
	file := filepath.Join(dir, "token")
	b, _ := os.ReadFile(file)
	if !generated || !strings.HasPrefix(boot, api.TokenPrefix) || strings.TrimSpace(string(b)) != boot {
		t.Fatalf("first start: token %q generated=%v, file %q", boot, generated, b)
	}
	if fi, err := os.Stat(file); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("DATA/token: %v, mode %v, want 0600", err, fi.Mode())
	}
	raw, _ := os.ReadFile(filepath.Join(dir, "fleet.db"))
	if bytes.Contains(raw, []byte(boot)) {
		t.Error("the database holds the bootstrap token in the clear")
	}
	var alice api.NewToken
	if code := r.post(t, "/tokens", api.CreateToken{Name: "alice", Scope: "admin"}, &alice); code != http.StatusCreated {
		t.Fatalf("create alice: %d", code)
	}
	if code := r.callAs(t, alice.Secret, http.MethodDelete, "/tokens/"+api.BootstrapToken, nil); code != http.StatusOK {
		t.Fatalf("revoke the bootstrap token: %d", code)
	}
	r.stop(t)

	r = start(t, dir, nil)
	if tok, generated := r.srv.Token(); tok != "" || generated || r.srv.LoginURL() != "" {
		t.Errorf("after the bootstrap token was revoked: token %q generated=%v, link %q; want none", tok, generated, r.srv.LoginURL())
	}
	if _, err := os.Stat(file); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("DATA/token after the bootstrap token was revoked: %v, want it removed", err)
	}
	if code := r.callAs(t, alice.Secret, http.MethodGet, "/tokens", nil); code != http.StatusOK {
		t.Errorf("alice after the restart: %d", code)
	}
	r.stop(t)

	const own = "an-operators-own-admin-token-of-enough-length"
	r = startToken(t, dir, nil, own)
	if code := r.callAs(t, own, http.MethodGet, "/tokens", nil); code != http.StatusOK {
		t.Errorf("--token as an admin token: %d", code)
	}
	if b, _ := os.ReadFile(file); strings.TrimSpace(string(b)) != own {
		t.Errorf("DATA/token with --token: %q", b)
	}
	if !strings.Contains(r.srv.LoginURL(), "/?login=") {
		t.Errorf("no sign-in link for the --token token: %q", r.srv.LoginURL())
	}
	r.stop(t)

	_, err := New(Config{DataDir: dir, HTTPAddr: "127.0.0.1:0", MQTTAddr: "127.0.0.1:0", Token: boot})
	if err == nil || !strings.Contains(err.Error(), "--token") || !strings.Contains(err.Error(), "revoked") {
		t.Errorf("--token with a revoked token: %v, want it refused, naming --token", err)
	}
}
