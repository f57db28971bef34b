package api

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/otaport/otaport/fleet/store"
)

// Scope is what a token may do. Each scope allows what the ones before it
// in Scopes allow.
type Scope string

// The scopes, from least to most.
const (
	// ScopeRead reads: devices, images, campaigns and their status.
	ScopeRead Scope = "read"
	// ScopeOperator also runs the fleet day to day: uploads images,
	// creates, pauses, resumes and cancels campaigns.
	ScopeOperator Scope = "operator"
	// ScopeAdmin may do everything: register and delete devices, issue
	// their certificates, delete campaign records and manage tokens.
	ScopeAdmin Scope = "admin"
)

// Scopes lists the scopes from least to most.
var Scopes = []Scope{ScopeRead, ScopeOperator, ScopeAdmin}

func (s Scope) rank() int {
	for i, o := range Scopes {
		if o == s {
			return i
		}
	}
	return -1
}

// Allows reports whether a token of scope s may use a route that needs
// scope need.
func (s Scope) Allows(need Scope) bool {
	return s.rank() >= 0 && need.rank() >= 0 && s.rank() >= need.rank()
}

// ParseScope reads a scope's name.
func ParseScope(name string) (Scope, error) {
	if s := Scope(name); s.rank() >= 0 {
		return s, nil
	}
	return "", fmt.Errorf("scope %q: use read, operator or admin", name)
}

// badRequest marks an error of the request (400); its message is the
// error's own.
type badRequest struct{ error }

func (e badRequest) Unwrap() error { return e.error }

// TokenPrefix begins every token otaserve makes, so that secret scanners
// (and people) recognise one in a log, a commit or a paste.
const TokenPrefix = "otas_"

// DefaultTokenTTL is how long a created token lasts when its creator says
// nothing: a token that is forgotten stops working on its own.
const DefaultTokenTTL = 90 * 24 * time.Hour

// BootstrapToken is the name of the admin token otaserve run makes at its
// first start (or takes from --token) and writes to DATA/token.
const BootstrapToken = "bootstrap"

// touchEvery bounds how often a token's last use is written: a write is an
// fsync, and a script polling every second must not cost one per request.
const touchEvery = time.Minute

// NewSecret makes a token's secret: TokenPrefix and 256 random bits.
func NewSecret() string {
	var b [32]byte
	rand.Read(b[:])
	return TokenPrefix + hex.EncodeToString(b[:])
}

// HashSecret is what the store keeps of a secret. The secret has 256
// random bits (or is an operator's own --token), so one SHA-256 is enough:
// there is nothing to guess that a slow hash would protect.
func HashSecret(secret string) string {
	h := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(h[:])
}

// Caller is who makes a request: the token's name, its scope and its
// expiry (zero for never).
type Caller struct {
	Token   string
	Scope   Scope
	Expires time.Time
	hash    string
}

type callerKey struct{}

// WithCaller returns ctx carrying c: the API's handler serves a request
// whose context carries a caller as that caller, without a bearer token.
// The dashboard passes its session's caller so; a request from the network
// cannot carry one.
func WithCaller(ctx context.Context, c Caller) context.Context {
	return context.WithValue(ctx, callerKey{}, c)
}

// CallerFrom returns the caller ctx carries.
func CallerFrom(ctx context.Context) (Caller, bool) {
	c, ok := ctx.Value(callerKey{}).(Caller)
	return c, ok
}

// AuthError is a refused token: unknown, expired or revoked. Its message
// says which and what to do; it answers 401.
type AuthError struct{ Reason string }

func (e *AuthError) Error() string { return e.Reason }

// Tokens checks and manages the API's tokens, kept hashed in the store.
type Tokens struct {
	// Store holds the tokens.
	Store *store.Store
	// Now is the clock; nil means time.Now. Tests move it to expire
	// tokens.
	Now func() time.Time
	// Logger reports a failed write of a token's last use, which does not
	// fail the request; nil discards.
	Logger *slog.Logger
}

func (t *Tokens) now() time.Time {
	if t.Now == nil {
		return time.Now()
	}
	return t.Now()
}

// Authenticate returns the caller whose secret this is, or an *AuthError
// when it is unknown, expired or revoked. The lookup is by the secret's
// hash, so its timing tells nothing of the secret.
func (t *Tokens) Authenticate(secret string) (Caller, error) {
	return t.byHash(HashSecret(secret))
}

// TokenHash names the caller's token in a record that outlives the request
// (a dashboard session) without its secret; ByHash reads it back.
func (c Caller) TokenHash() string { return c.hash }

// ByHash returns the caller of the token whose secret hashes to hash as it
// stands now, as Authenticate does for the secret: an *AuthError once the
// token is revoked or expired. The dashboard asks it at every request of a
// session, so that revoking a token ends its sessions.
func (t *Tokens) ByHash(hash string) (Caller, error) { return t.byHash(hash) }

func (t *Tokens) byHash(hash string) (Caller, error) {
	tok, err := t.Store.TokenByHash(hash)
	if errors.Is(err, store.ErrNotFound) {
		return Caller{}, &AuthError{"unknown bearer token: pass an API token with --token or OTASERVE_TOKEN (otaserve run writes its bootstrap admin token to DATA/token; an admin makes others with otaserve token create)"}
	}
	if err != nil {
		return Caller{}, err
	}
	now := t.now()
	switch {
	case !tok.Revoked.IsZero():
		return Caller{}, &AuthError{fmt.Sprintf("token %q was revoked on %s: ask an admin for a new one (otaserve token create)", tok.Name, stamp(tok.Revoked))}
	case !tok.Live(now):
		return Caller{}, &AuthError{fmt.Sprintf("token %q expired on %s: ask an admin for a new one (otaserve token create)", tok.Name, stamp(tok.Expires))}
	}
	if now.Sub(tok.LastUsed) >= touchEvery {
		if err := t.Store.TouchToken(hash, now); err != nil && t.Logger != nil {
			t.Logger.Warn("the last use of a token is not recorded", "token", tok.Name, "err", err)
		}
	}
	return Caller{Token: tok.Name, Scope: Scope(tok.Scope), Expires: tok.Expires, hash: hash}, nil
}

func stamp(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05 UTC") }

var tokenName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// Put stores a token of a given secret, live from now until expires (zero
// for never). Create makes the secret; Put is for the bootstrap token,
// whose secret may be the operator's own (otaserve run --token).
func (t *Tokens) Put(name string, scope Scope, secret string, expires time.Time) (store.Token, error) {
	if !tokenName.MatchString(name) {
		return store.Token{}, badRequest{fmt.Errorf("token name %q: use 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit", name)}
	}
	if _, err := ParseScope(string(scope)); err != nil {
		return store.Token{}, badRequest{err}
	}
	tok := store.Token{Name: name, Scope: string(scope), Hash: HashSecret(secret), Created: t.now().UTC(), Expires: expires}
	if err := t.Store.AddToken(tok); err != nil {
		return store.Token{}, err
	}
	return tok, nil
}

// Create makes a token with a new secret, which it returns: the store
// keeps only its hash, so it is shown once. ttl 0 means it never expires.
func (t *Tokens) Create(name string, scope Scope, ttl time.Duration) (secret string, tok store.Token, err error) {
	var expires time.Time
	if ttl > 0 {
		expires = t.now().UTC().Add(ttl)
	}
	secret = NewSecret()
	tok, err = t.Put(name, scope, secret, expires)
	return secret, tok, err
}

// maxTTLDays bounds a lifetime in days, well inside time.Duration's range.
const maxTTLDays = 100 * 366

// ParseTTL reads how long a new token lasts: "" for DefaultTokenTTL, "0"
// or "never" for no expiry, else a Go duration ("720h") or days ("30d").
func ParseTTL(s string) (time.Duration, error) {
	switch s {
	case "":
		return DefaultTokenTTL, nil
	case "0", "never":
		return 0, nil
	}
	var d time.Duration
	var err error
	if days, ok := strings.CutSuffix(s, "d"); ok {
		var n int
		n, err = strconv.Atoi(days)
		if n > maxTTLDays {
			n = -1 // refused below, not wrapped around
		}
		d = time.Duration(n) * 24 * time.Hour
	} else {
		d, err = time.ParseDuration(s)
	}
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("expires %q: give a duration such as 720h or 30d, or 0 for a token that never expires", s)
	}
	return d, nil
}

// Token is an API token as the API shows it: never its secret nor its
// hash.
type Token struct {
	Name  string `json:"name"`
	Scope string `json:"scope"`
	// State is live, expired or revoked.
	State    string    `json:"state"`
	Created  time.Time `json:"created"`
	Expires  time.Time `json:"expires,omitzero"`
	LastUsed time.Time `json:"last_used,omitzero"`
	Revoked  time.Time `json:"revoked,omitzero"`
}

func toToken(t store.Token, now time.Time) Token {
	state := "live"
	switch {
	case !t.Revoked.IsZero():
		state = "revoked"
	case !t.Live(now):
		state = "expired"
	}
	return Token{Name: t.Name, Scope: t.Scope, State: state, Created: t.Created, Expires: t.Expires, LastUsed: t.LastUsed, Revoked: t.Revoked}
}

// CreateToken is the body of POST /tokens.
type CreateToken struct {
	Name  string `json:"name"`
	Scope string `json:"scope"`
	// Expires is how long the token lasts: "720h", "30d"; "0" or "never"
	// for no expiry; absent for 90 days.
	Expires string `json:"expires,omitempty"`
}

// NewToken is the answer to POST /tokens: the token and its secret, shown
// this once.
type NewToken struct {
	Token  Token  `json:"token"`
	Secret string `json:"secret"`
}

func (h *handler) listTokens(w http.ResponseWriter, r *http.Request) {
	ts, err := h.cfg.Tokens.Store.Tokens()
	if err != nil {
		writeError(w, statusOf(err), err)
		return
	}
	now := h.cfg.Tokens.now()
	out := make([]Token, 0, len(ts))
	for _, t := range ts {
		out = append(out, toToken(t, now))
	}
	writeJSON(w, http.StatusOK, out)
}

func (h *handler) createToken(w http.ResponseWriter, r *http.Request) {
	var req CreateToken
	if err := decode(w, r, &req); err != nil {
		writeError(w, bodyStatus(err), err)
		return
	}
	scope, err := ParseScope(req.Scope)
	if err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	ttl, err := ParseTTL(req.Expires)
	if err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	secret, tok, err := h.cfg.Tokens.Create(req.Name, scope, ttl)
	if err != nil {
		writeError(w, statusOf(err), err)
		return
	}
	c, _ := CallerFrom(r.Context())
	h.cfg.Logger.Info("token created", "token", tok.Name, "scope", tok.Scope, "expires", tok.Expires, "by", c.Token)
	writeJSON(w, http.StatusCreated, NewToken{Token: toToken(tok, h.cfg.Tokens.now()), Secret: secret})
}

// revokeToken revokes a live token by name. It refuses the last live admin
// token: without one no token can be made or revoked until otaserve runs
// again with --token.
func (h *handler) revokeToken(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	now := h.cfg.Tokens.now()
	var revoked store.Token
	err := h.cfg.Store.Write(func(wr *store.Writer) error {
		var err error
		if revoked, err = wr.RevokeToken(name, now); err != nil {
			return err
		}
		if revoked.Scope != string(ScopeAdmin) {
			return nil
		}
		ts, err := wr.Tokens()
		if err != nil {
			return err
		}
		for _, t := range ts {
			if t.Scope == string(ScopeAdmin) && t.Live(now) {
				return nil
			}
		}
		return fmt.Errorf("%w: token %q is the last live admin token: create another admin token first (otaserve token create --scope admin)", store.ErrExists, name)
	})
	if err != nil {
		writeError(w, statusOf(err), err)
		return
	}
	c, _ := CallerFrom(r.Context())
	h.cfg.Logger.Info("token revoked", "token", name, "by", c.Token)
	writeJSON(w, http.StatusOK, toToken(revoked, now))
}
