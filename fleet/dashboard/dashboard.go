// Package dashboard is otaserve's web dashboard: the fleet, a device's
// history, images, campaigns and a chart of the fleet's versions, as pages
// rendered on the server with html/template, kept live by htmx polling
// (vendored, embedded with go:embed: no CDN, no build step).
//
// It reads the fleet from the store and the campaign service, and makes
// every change (an upload, a campaign, pause, resume, cancel) through the
// REST API's own handler, in process, so that a change from the page is
// checked exactly as one from the CLI. It is not an API: scripts use
// fleet/api with the bearer token.
//
// Sign-in is a single-use link (Dashboard.LoginLink) that expires within
// minutes, exchanged for a session cookie (HttpOnly, SameSite=Strict);
// every POST of a page carries the session's CSRF token. A link, and the
// session it opens, belong to the API token that made it: the session has
// that token's scope, ends no later than the token expires and ends when
// it is revoked. Links and sessions are kept in the store, by the hash of
// their secret: a link made on one replica opens a session on another,
// and a session works on every replica behind the load balancer.
package dashboard

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"html/template"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/otaport/otaport/fleet/api"
	"github.com/otaport/otaport/fleet/campaign"
	"github.com/otaport/otaport/fleet/store"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Campaigns is what the dashboard reads of the campaign service.
type Campaigns interface {
	Status(id uint64) (campaign.Status, error)
}

// Config configures the dashboard.
type Config struct {
	Store     *store.Store
	Campaigns Campaigns
	// API is the REST API's handler (fleet/api): the dashboard's changes
	// go through it, as the session's caller. Tokens are its tokens, which
	// make sign-in links and keep sessions to their scope and life.
	API    http.Handler
	Tokens *api.Tokens
	// Online lists the devices signed in to the broker now, as "pk/dn";
	// nil when unknown (an external broker).
	Online func() []string
	// LinkTTL is how long a sign-in link stays valid; default 5 minutes.
	// SessionTTL is how long a session lasts; default 12 hours.
	LinkTTL    time.Duration
	SessionTTL time.Duration
	// Holder, on a replica among several on one database, sends the
	// forms that run an action only the campaigns' lease holder runs to
	// the holder when this replica does not hold it (fleet/api.Forwarder);
	// nil runs every form here.
	Holder Holder
	// Now is the clock; default time.Now. Tests move it to expire links.
	Now    func() time.Time
	Logger *slog.Logger
}

// Holder sends a request that stands for an API route only the campaigns'
// lease holder serves to the holder, when this replica does not hold the
// lease, and reports whether it did; fail answers when it cannot.
type Holder interface {
	Forward(w http.ResponseWriter, r *http.Request, route string, fail func(http.ResponseWriter, error)) bool
}

// Dashboard is the dashboard's HTTP handler. Its sign-in links and
// sessions are in the store (store.Session), so that every replica on one
// database serves every session.
type Dashboard struct {
	cfg   Config
	log   *slog.Logger
	pages map[string]*template.Template
	mux   *http.ServeMux
}

type session struct {
	csrf    string
	caller  api.Caller
	expires time.Time
}

// The API routes behind the pages' forms: a session's scope must allow
// one for its form to be offered and its POST served. The API's route
// table says which scope each needs.
const (
	uploadRoute   = "POST " + api.Prefix + "/images"
	createRoute   = "POST " + api.Prefix + "/campaigns"
	campaignRoute = "POST " + api.Prefix + "/campaigns/{id}/{action}"
)

// CookieName is the session cookie's name.
const CookieName = "otaserve_session"

// LinkPath is the API route that makes a new sign-in link, for an
// operator whose printed link expired: POST with the bearer token.
const LinkPath = "/api/v1/dashboard/login-link"

// New prepares the dashboard.
func New(cfg Config) (*Dashboard, error) {
	if cfg.Store == nil || cfg.Campaigns == nil || cfg.API == nil || cfg.Tokens == nil {
		return nil, errors.New("dashboard: Store, Campaigns, API and Tokens are required")
	}
	for _, r := range []string{uploadRoute, createRoute, campaignRoute} {
		if _, ok := api.ScopeOf(r); !ok {
			return nil, fmt.Errorf("dashboard: the API has no route %s", r)
		}
	}
	if cfg.LinkTTL == 0 {
		cfg.LinkTTL = 5 * time.Minute
	}
	if cfg.SessionTTL == 0 {
		cfg.SessionTTL = 12 * time.Hour
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	d := &Dashboard{cfg: cfg, log: cfg.Logger, pages: map[string]*template.Template{}}
	for _, p := range []string{"fleet", "device", "images", "campaigns", "campaign", "signin"} {
		t, err := template.New("layout.html").Funcs(funcs).ParseFS(templateFS, "templates/layout.html", "templates/"+p+".html")
		if err != nil {
			return nil, fmt.Errorf("dashboard: template %s: %w", p, err)
		}
		d.pages[p] = t
	}
	static, err := fs.Sub(staticFS, "static")
	if err != nil {
		return nil, fmt.Errorf("dashboard: static files: %w", err)
	}
	m := http.NewServeMux()
	m.Handle("GET /static/", http.StripPrefix("/static/", http.FileServerFS(static)))
	m.HandleFunc("GET /{$}", d.fleet)
	m.HandleFunc("GET /devices/{pk}/{dn}", d.signedIn(d.device))
	m.HandleFunc("GET /images", d.signedIn(d.images))
	m.HandleFunc("POST /images", d.signedIn(d.needs(uploadRoute, d.upload)))
	m.HandleFunc("GET /campaigns", d.signedIn(d.campaigns))
	m.HandleFunc("POST /campaigns", d.signedIn(d.needs(createRoute, d.atHolder(createRoute, d.createCampaign))))
	m.HandleFunc("GET /campaigns/{id}", d.signedIn(d.campaign))
	m.HandleFunc("POST /campaigns/{id}/{action}", d.signedIn(d.needs(campaignRoute, d.atHolder(campaignRoute, d.campaignAction))))
	m.HandleFunc("POST /logout", d.signedIn(d.logout))
	m.HandleFunc("POST "+LinkPath, d.newLink)
	d.mux = m
	return d, nil
}

// ServeHTTP serves the pages, under "/".
func (d *Dashboard) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// The pages are for this origin only: no framing, no guessing types.
	w.Header().Set("X-Frame-Options", "DENY")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	// Not no-referrer: with it a browser sends "Origin: null" with a form's
	// POST, which sameOrigin refuses.
	w.Header().Set("Referrer-Policy", "same-origin")
	d.mux.ServeHTTP(w, r)
}

func randomToken() string {
	var b [24]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// LoginLink makes a new single-use sign-in link, "/?login=SECRET", to be
// put after the server's base URL, for caller (api.Tokens.Authenticate
// says who holds a token). It expires after Config.LinkTTL, or with the
// caller's token if that is sooner.
func (d *Dashboard) LoginLink(caller api.Caller) (string, error) {
	tok := randomToken()
	now := d.cfg.Now()
	err := d.cfg.Store.PutSession(store.Session{Hash: api.HashSecret(tok), Link: true, TokenHash: caller.TokenHash(),
		Expires: within(now.Add(d.cfg.LinkTTL), caller)}, now)
	if err != nil {
		return "", fmt.Errorf("dashboard: sign-in link: %w", err)
	}
	return "/?login=" + tok, nil
}

// within returns t, or the caller's token's expiry if that is sooner.
func within(t time.Time, c api.Caller) time.Time {
	if !c.Expires.IsZero() && c.Expires.Before(t) {
		return c.Expires
	}
	return t
}

// newLink answers POST LinkPath with a new sign-in link for the bearer of
// a live token, of any scope: the session it opens has the token's scope.
func (d *Dashboard) newLink(w http.ResponseWriter, r *http.Request) {
	secret, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || secret == "" {
		w.Header().Set("WWW-Authenticate", `Bearer realm="otaserve"`)
		http.Error(w, "missing bearer token: pass an API token, of any scope (the session gets its scope)", http.StatusUnauthorized)
		return
	}
	caller, err := d.cfg.Tokens.Authenticate(secret)
	if err != nil {
		status := http.StatusInternalServerError
		if errors.As(err, new(*api.AuthError)) {
			status = http.StatusUnauthorized
			w.Header().Set("WWW-Authenticate", `Bearer realm="otaserve", error="invalid_token"`)
		}
		http.Error(w, err.Error(), status)
		return
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	link, err := d.LoginLink(caller)
	if err != nil {
		d.log.Error("dashboard: sign-in link", "err", err)
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	fmt.Fprintf(w, "%s://%s%s\n", scheme, r.Host, link)
}

// redeem spends a sign-in link and opens a session. A link is spent once
// taken, even when it expired. why says why a link opens none (spent,
// expired, its token revoked); err is set when the store could not say.
func (d *Dashboard) redeem(secret string) (cookie string, s session, why string, err error) {
	now := d.cfg.Now()
	l, err := d.cfg.Store.TakeLink(api.HashSecret(secret))
	if errors.Is(err, store.ErrNotFound) || (err == nil && !now.Before(l.Expires)) {
		return "", session{}, "This sign-in link was used already or has expired.", nil
	}
	if err != nil {
		return "", session{}, "", err
	}
	caller, err := d.cfg.Tokens.ByHash(l.TokenHash)
	if err != nil {
		if errors.As(err, new(*api.AuthError)) {
			return "", session{}, "This sign-in link's token no longer signs in: " + err.Error(), nil
		}
		return "", session{}, "", err
	}
	cookie = randomToken()
	s = session{csrf: randomToken(), caller: caller, expires: within(now.Add(d.cfg.SessionTTL), caller)}
	err = d.cfg.Store.PutSession(store.Session{Hash: api.HashSecret(cookie), TokenHash: l.TokenHash, CSRF: s.csrf, Expires: s.expires}, now)
	if err != nil {
		return "", session{}, "", err
	}
	return cookie, s, "", nil
}

// current returns the request's session. A session whose token was
// revoked or expired meanwhile ends here; why is the message.
func (d *Dashboard) current(r *http.Request) (session, string, bool) {
	c, err := r.Cookie(CookieName)
	if err != nil {
		return session{}, "", false
	}
	hash := api.HashSecret(c.Value)
	rec, err := d.cfg.Store.Session(hash)
	if err != nil {
		if !errors.Is(err, store.ErrNotFound) {
			d.log.Error("dashboard: session", "err", err)
			return session{}, "The session could not be read: " + err.Error(), false
		}
		return session{}, "", false
	}
	if !d.cfg.Now().Before(rec.Expires) {
		return session{}, "", false
	}
	caller, err := d.cfg.Tokens.ByHash(rec.TokenHash)
	if err != nil {
		if errors.As(err, new(*api.AuthError)) {
			if err := d.cfg.Store.DeleteSession(hash); err != nil {
				d.log.Warn("dashboard: end a session", "err", err)
			}
		}
		d.log.Info("dashboard: session ended", "why", err)
		return session{}, "This session has ended: " + err.Error(), false
	}
	return session{csrf: rec.CSRF, caller: caller, expires: rec.Expires}, "", true
}

type sessionKey struct{}

// sessionOf returns the session signedIn found for the request.
func sessionOf(r *http.Request) (session, bool) {
	s, ok := r.Context().Value(sessionKey{}).(session)
	return s, ok
}

// allows reports whether the session's scope allows an API route.
func (s session) allows(route string) bool {
	need, ok := api.ScopeOf(route)
	return ok && s.caller.Scope.Allows(need)
}

type ctxHandler func(w http.ResponseWriter, r *http.Request, s session)

// signedIn serves h to a signed-in operator; it refuses a POST whose CSRF
// token (form field csrf, or header X-CSRF-Token from htmx) is not the
// session's, or whose Origin is another site's.
func (d *Dashboard) signedIn(h ctxHandler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		s, why, ok := d.current(r)
		if !ok {
			d.signIn(w, r, http.StatusUnauthorized, why)
			return
		}
		if r.Method == http.MethodPost {
			got := r.Header.Get("X-CSRF-Token")
			if got == "" {
				got = csrfField(r)
			}
			if subtle.ConstantTimeCompare([]byte(got), []byte(s.csrf)) != 1 || !sameOrigin(r) {
				http.Error(w, "forbidden: the form's CSRF token does not match this session; reload the page and try again", http.StatusForbidden)
				return
			}
		}
		w.Header().Set("Cache-Control", "no-store")
		h(w, r.WithContext(context.WithValue(r.Context(), sessionKey{}, s)), s)
	}
}

// needs serves h to a session whose scope allows the API route behind it,
// and refuses anyone else with 403 (the pages do not offer them the form).
// The API checks again; refusing here says it in the dashboard's words.
func (d *Dashboard) needs(route string, h ctxHandler) ctxHandler {
	return func(w http.ResponseWriter, r *http.Request, s session) {
		if !s.allows(route) {
			need, _ := api.ScopeOf(route)
			http.Error(w, fmt.Sprintf("forbidden: this session is of token %q, of scope %s; this needs scope %s: sign in with a link made by a token of it (otaserve token create --scope %s)",
				s.caller.Token, s.caller.Scope, need, need), http.StatusForbidden)
			return
		}
		h(w, r, s)
	}
}

// atHolder runs h here, or sends the request to the replica that holds the
// campaigns' lease when route is an action only it runs and this replica
// does not hold it. The holder checks the session, its CSRF token and the
// origin again, from the shared store, and its answer (a redirect to the
// page) comes back as it is; when it cannot be reached, the page says why.
func (d *Dashboard) atHolder(route string, h ctxHandler) ctxHandler {
	return func(w http.ResponseWriter, r *http.Request, s session) {
		if d.cfg.Holder == nil {
			h(w, r, s)
			return
		}
		if r.PostForm != nil && !strings.HasPrefix(r.Header.Get("Content-Type"), "multipart/form-data") {
			// signedIn read the form for its CSRF token: what goes
			// on is the form as read.
			body := r.PostForm.Encode()
			r.Body, r.ContentLength = io.NopCloser(strings.NewReader(body)), int64(len(body))
		}
		back := "/campaigns"
		if id := r.PathValue("id"); id != "" {
			back += "/" + url.PathEscape(id)
		}
		fail := func(w http.ResponseWriter, err error) {
			d.log.Warn("dashboard: action not sent to the campaigns' lease holder", "route", route, "err", err)
			http.Redirect(w, r, back+"?err="+url.QueryEscape(err.Error()), http.StatusSeeOther)
		}
		if !d.cfg.Holder.Forward(w, r, route, fail) {
			h(w, r, s)
		}
	}
}

// csrfField reads the csrf form field. An upload (a multipart form) carries
// it in its action URL instead: reading it from the body would consume the
// stream the API reads the image from. The URL stays on this host
// (Referrer-Policy same-origin) and the token is the session's, as in a
// field.
func csrfField(r *http.Request) string {
	if strings.HasPrefix(r.Header.Get("Content-Type"), "multipart/form-data") {
		return r.URL.Query().Get("csrf")
	}
	return r.PostFormValue("csrf")
}

// sameOrigin: a browser sends Origin with a POST; when it does, it must be
// this host.
func sameOrigin(r *http.Request) bool {
	o := r.Header.Get("Origin")
	if o == "" || o == "null" {
		return o == ""
	}
	_, host, _ := strings.Cut(o, "://")
	return host == r.Host
}

// fleet serves "/": with ?login=, the sign-in; otherwise the fleet page.
func (d *Dashboard) fleet(w http.ResponseWriter, r *http.Request) {
	if secret := r.URL.Query().Get("login"); secret != "" {
		cookie, s, why, err := d.redeem(secret)
		if err != nil {
			d.log.Error("dashboard: sign in", "err", err)
			d.signIn(w, r, http.StatusInternalServerError, "The sign-in could not be recorded: "+err.Error())
			return
		}
		if why != "" {
			d.signIn(w, r, http.StatusUnauthorized, why)
			return
		}
		http.SetCookie(w, &http.Cookie{Name: CookieName, Value: cookie, Path: "/", HttpOnly: true,
			SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil, MaxAge: int(s.expires.Sub(d.cfg.Now()) / time.Second)})
		d.log.Info("dashboard: signed in", "remote", r.RemoteAddr, "token", s.caller.Token)
		// Off the URL, so the spent secret stays out of the history.
		http.Redirect(w, r, "/", http.StatusSeeOther)
		return
	}
	d.signedIn(d.fleetPage)(w, r)
}

func (d *Dashboard) logout(w http.ResponseWriter, r *http.Request, _ session) {
	if c, err := r.Cookie(CookieName); err == nil {
		if err := d.cfg.Store.DeleteSession(api.HashSecret(c.Value)); err != nil {
			d.log.Error("dashboard: sign out", "err", err)
			http.Error(w, "the session could not be ended: "+err.Error()+"; try again", http.StatusInternalServerError)
			return
		}
	}
	http.SetCookie(w, &http.Cookie{Name: CookieName, Value: "", Path: "/", MaxAge: -1, HttpOnly: true, SameSite: http.SameSiteStrictMode})
	d.signIn(w, r, http.StatusOK, "Signed out.")
}

func (d *Dashboard) signIn(w http.ResponseWriter, r *http.Request, status int, msg string) {
	d.render(w, r, status, "signin", page{Title: "Sign in", Message: msg, LinkPath: LinkPath})
}
