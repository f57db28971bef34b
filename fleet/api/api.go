// Package api is the operator's REST API over the fleet: register devices,
// upload and list images, create campaigns and follow, pause, resume or
// cancel them, and manage the API's own tokens. Requests and answers are
// JSON; every request carries a bearer token, whose scope (read, operator,
// admin) the route table checks.
//
// It is not the devices' interface: devices speak MQTT to the broker and
// download firmware from fleet/firmware's handler, which needs no token.
package api

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/otaport/otaport/core/cloud"
	"github.com/otaport/otaport/core/image"
	"github.com/otaport/otaport/fleet/campaign"
	"github.com/otaport/otaport/fleet/firmware"
	"github.com/otaport/otaport/fleet/store"
)

// Campaigns is what the API needs of the campaign service.
type Campaigns interface {
	Create(ctx context.Context, req campaign.CreateRequest) (store.Campaign, error)
	Pause(ctx context.Context, id uint64) (store.Campaign, error)
	Resume(ctx context.Context, id uint64) (store.Campaign, error)
	Cancel(ctx context.Context, id uint64) (store.Campaign, error)
	Status(id uint64) (campaign.Status, error)
	DeleteDevice(ctx context.Context, pk, dn string) (store.Device, error)
	AddImage(ctx context.Context, img store.Image) (store.Image, error)
	DeleteImage(ctx context.Context, id uint64) (img store.Image, shared bool, err error)
	DeleteCampaign(ctx context.Context, id uint64) error
}

// Certificates is what the API needs of the fleet's device certificate
// authority (fleet/pki).
type Certificates interface {
	Issue(csrPEM []byte, pk, dn string, validity time.Duration) (certPEM []byte, notAfter time.Time, err error)
	CertPEM() []byte
}

// Secrets is what the API needs to keep a new device's secret at rest
// (fleet/secrets).
type Secrets interface {
	Seal(device, secret string) (string, error)
}

// Board is what the API checks devices and images against: one board of
// the catalog, as otaserve's main reads it from the ports.
type Board struct {
	// MaxImageSize is the largest image the board takes whichever slot
	// runs: an image that does not fit its update slot is refused by the
	// device only after the campaign has started.
	MaxImageSize int64
	// Signature is the one signature algorithm the board's bootloader
	// checks (image.KeyEd25519, image.KeyECDSAP256, ...).
	Signature string
}

// Config configures the API handler.
type Config struct {
	Store     *store.Store
	Firmware  *firmware.Store
	Campaigns Campaigns
	// Boards are the boards devices may be registered as and images built
	// for, by name; a board not listed is refused.
	Boards map[string]Board
	// Keys verify uploaded images; an upload is refused without one.
	Keys []crypto.PublicKey
	// KeySets, when set, holds the fleet's key sets (fleet/keysets): its
	// latest set's image keys verify uploads instead of Keys, and the
	// keysets routes push and list the chain. PublishKeySets sends the
	// chain to the devices after a push.
	KeySets        KeySets
	PublishKeySets func(ctx context.Context) error
	// Revoke, when set, ends the broker connection of a device just
	// deleted; its next sign-in is refused since the registry no longer
	// knows it.
	Revoke func(pk, dn string)
	// Certificates issues devices' client certificates; nil refuses.
	Certificates Certificates
	// Secrets seals a new device's secret before it is stored; nil stores
	// it as given.
	Secrets Secrets
	// Tokens checks every request's bearer token and keeps the tokens
	// the token routes manage; required.
	Tokens *Tokens
	// MaxImageSize bounds an upload; 0 means 64 MiB.
	MaxImageSize int64
	// Replica, when this process is one of several on one database, says
	// who holds the campaigns' lease: a route marked Holder that reaches
	// another replica is forwarded to the holder (forward.go). Nil serves
	// every route here.
	Replica Replica
	// ForwardTLS verifies the holder's certificate when a request is
	// forwarded to an https URL: the fleet CA the replicas share.
	ForwardTLS *tls.Config
	// Forwarded, when set, counts each request a Holder route sent, or
	// failed to send, to the holder (result: forwarded, no_holder,
	// unreachable, loop).
	Forwarded func(route, result string)
	Logger    *slog.Logger
}

// Prefix is where the API lives; the CLI builds its URLs from it.
const Prefix = "/api/v1"

type handler struct {
	cfg Config
	mux *http.ServeMux
	fwd *forwarder // nil unless Config.Replica is set
}

// New returns the API's handler, serving under Prefix.
func New(cfg Config) (http.Handler, error) {
	if cfg.Tokens == nil || cfg.Tokens.Store == nil {
		return nil, errors.New("api: Tokens (with its Store) is required")
	}
	if cfg.MaxImageSize == 0 {
		cfg.MaxImageSize = 64 << 20
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	h := &handler{cfg: cfg, mux: http.NewServeMux()}
	if cfg.Replica != nil {
		h.fwd = newForwarder(cfg)
	}
	for _, r := range h.table() {
		h.mux.HandleFunc(r.Method+" "+r.Path, h.guard(r))
	}
	return h, nil
}

// Route is one operation of the API: an HTTP method, a path in net/http's
// pattern syntax ("/api/v1/devices/{pk}/{dn}"), the scope a token needs
// for it, and whether only the replica holding the campaigns' lease serves
// it.
type Route struct {
	Method string
	Path   string
	Scope  Scope
	// Holder: the route changes what the campaign service runs, which
	// only the holder of the campaigns' lease may (its writes are fenced
	// by the lease). Another replica forwards it to the holder.
	Holder bool
}

func (r Route) String() string { return r.Method + " " + r.Path }

// route is a Route with the method that serves it.
type route struct {
	Route
	serve http.HandlerFunc
}

// table is the API's one list of routes and the one place that says which
// scope each needs: New registers it and Routes reads it, so docs/api.yaml's
// test sees what the server serves and the dashboard asks it which of its
// buttons a session may see.
//
// read: what GET shows. operator: the day's work, undone or stopped again
// by an operator (an upload, a campaign and its pause, resume, cancel, the
// delete of an image no active campaign uses). admin: who may sign in
// (devices, their certificates, tokens), which image keys the fleet trusts
// (key sets) and the history of what was done to devices (a campaign's
// record).
//
// holder: the route changes the campaigns (an operator's action on one, and
// the deletes of devices and images, which check the active campaigns):
// only the replica holding the campaigns' lease serves it, and another one
// forwards it there (forward.go). every: every replica serves it.
func (h *handler) table() []route {
	const (
		read, operator, admin = ScopeRead, ScopeOperator, ScopeAdmin
		get, post, del        = http.MethodGet, http.MethodPost, http.MethodDelete
		every, holder         = false, true
	)
	return []route{
		{Route{get, Prefix + "/devices", read, every}, h.listDevices},
		{Route{post, Prefix + "/devices", admin, every}, h.addDevice},
		{Route{get, Prefix + "/devices/{pk}/{dn}", read, every}, h.getDevice},
		{Route{del, Prefix + "/devices/{pk}/{dn}", admin, holder}, h.deleteDevice},
		{Route{post, Prefix + "/devices/{pk}/{dn}/certificate", admin, every}, h.issueCertificate},
		{Route{get, Prefix + "/keysets", read, every}, h.listKeySets},
		{Route{post, Prefix + "/keysets", admin, every}, h.pushKeySet},
		{Route{get, Prefix + "/images", read, every}, h.listImages},
		{Route{post, Prefix + "/images", operator, every}, h.uploadImage},
		{Route{get, Prefix + "/images/{id}", read, every}, h.getImage},
		{Route{get, Prefix + "/images/{id}/file", read, every}, h.imageFile},
		{Route{del, Prefix + "/images/{id}", operator, holder}, h.deleteImage},
		{Route{get, Prefix + "/campaigns", read, every}, h.listCampaigns},
		{Route{post, Prefix + "/campaigns", operator, holder}, h.createCampaign},
		{Route{get, Prefix + "/campaigns/{id}", read, every}, h.campaignStatus},
		{Route{del, Prefix + "/campaigns/{id}", admin, holder}, h.deleteCampaign},
		{Route{post, Prefix + "/campaigns/{id}/{action}", operator, holder}, h.campaignAction},
		{Route{get, Prefix + "/tokens", admin, every}, h.listTokens},
		{Route{post, Prefix + "/tokens", admin, every}, h.createToken},
		{Route{del, Prefix + "/tokens/{name}", admin, every}, h.revokeToken},
	}
}

// Routes lists the operations New's handler serves, in the order it
// registers them.
func Routes() []Route {
	var out []Route
	for _, r := range (&handler{}).table() {
		out = append(out, r.Route)
	}
	return out
}

// ScopeOf returns the scope a route needs, the route given as
// Route.String gives it ("POST /api/v1/images").
func ScopeOf(route string) (Scope, bool) {
	for _, r := range Routes() {
		if r.String() == route {
			return r.Scope, true
		}
	}
	return "", false
}

// ServeHTTP serves the API to the bearer of a live token (or to the caller
// the request's context carries, see WithCaller); each route then checks
// the caller's scope.
func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if _, ok := CallerFrom(r.Context()); !ok {
		secret, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || secret == "" {
			w.Header().Set("WWW-Authenticate", `Bearer realm="otaserve"`)
			writeError(w, http.StatusUnauthorized, errors.New("missing bearer token: pass --token or set OTASERVE_TOKEN (otaserve run writes its bootstrap admin token to DATA/token)"))
			return
		}
		c, err := h.cfg.Tokens.Authenticate(secret)
		if err != nil {
			status := http.StatusInternalServerError
			if errors.As(err, new(*AuthError)) {
				status = http.StatusUnauthorized
				w.Header().Set("WWW-Authenticate", `Bearer realm="otaserve", error="invalid_token"`)
			}
			writeError(w, status, err)
			return
		}
		inner := r.WithContext(WithCaller(r.Context(), c))
		h.mux.ServeHTTP(w, inner)
		// The mux records the route it matched on the request it gets;
		// what wraps the API (its metrics) reads it from the outer one.
		r.Pattern = inner.Pattern
		return
	}
	h.mux.ServeHTTP(w, r)
}

// guard serves a route to a caller whose scope allows it, and answers 403
// naming the scope needed to anyone else. A route only the campaigns'
// lease holder serves goes to the holder when this replica is not it: the
// caller is checked here first, so a request this replica would refuse is
// refused without a hop.
func (h *handler) guard(rt route) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		c, _ := CallerFrom(r.Context())
		if !c.Scope.Allows(rt.Scope) {
			writeError(w, http.StatusForbidden, fmt.Errorf("token %q has scope %s; %s needs scope %s: ask an admin for a token of it (otaserve token create --name NAME --scope %s)",
				c.Token, c.Scope, rt.Route, rt.Scope, rt.Scope))
			return
		}
		if rt.Holder && h.fwd != nil && !h.fwd.rep.Holds() {
			h.fwd.forward(w, r, rt.Route, func(w http.ResponseWriter, err error) { writeError(w, http.StatusServiceUnavailable, err) })
			return
		}
		rt.serve(w, r)
	}
}

// Error is the body of every error answer.
type Error struct {
	Error string `json:"error"`
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

func writeError(w http.ResponseWriter, status int, err error) {
	if status == http.StatusServiceUnavailable && w.Header().Get("Retry-After") == "" {
		// The campaigns' lease moved under a request (a write refused
		// by its fence): a takeover ends within the lease's lifetime.
		w.Header().Set("Retry-After", strconv.Itoa(int(campaign.DefaultLeaseTTL/time.Second)))
	}
	writeJSON(w, status, Error{Error: err.Error()})
}

// statusOf maps the fleet's errors to HTTP.
func statusOf(err error) int {
	switch {
	case errors.Is(err, store.ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, store.ErrExists), errors.Is(err, campaign.ErrState):
		return http.StatusConflict
	case errors.Is(err, campaign.ErrInvalid):
		return http.StatusBadRequest
	case errors.Is(err, firmware.ErrRefused):
		return http.StatusUnprocessableEntity
	case errors.Is(err, firmware.ErrTooLarge):
		return http.StatusRequestEntityTooLarge
	case errors.As(err, new(badRequest)):
		return http.StatusBadRequest
	case errors.Is(err, campaign.ErrNotHolder), errors.Is(err, store.ErrLeaseLost):
		// Another replica runs the campaigns: a load balancer may retry.
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

// maxJSONBody bounds a JSON request body: the largest, a campaign naming
// its devices one by one, is far below it.
const maxJSONBody = 1 << 20

// errBodyTooLarge is a JSON body over maxJSONBody: 413, not a syntax error
// about a body cut short.
var errBodyTooLarge = errors.New("too large")

func decode(w http.ResponseWriter, r *http.Request, v any) error {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxJSONBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			return fmt.Errorf("request body: %w: more than %d bytes of JSON; a campaign of many devices targets a group instead", errBodyTooLarge, maxJSONBody)
		}
		return fmt.Errorf("request body: %w", err)
	}
	return nil
}

// bodyStatus is the status of a decode error: 413 for a body too large,
// 400 for JSON that does not parse or fit.
func bodyStatus(err error) int {
	if errors.Is(err, errBodyTooLarge) {
		return http.StatusRequestEntityTooLarge
	}
	return http.StatusBadRequest
}

// AddDevice is the body of POST /devices. An empty secret is generated.
type AddDevice struct {
	ProductKey   string `json:"product_key"`
	DeviceName   string `json:"device_name"`
	DeviceSecret string `json:"device_secret,omitempty"`
	Board        string `json:"board"`
	Group        string `json:"group,omitempty"`
	// Modules are the device's modules besides the default one (whose
	// board is Board), each with its own board: [{"name":"wifi","board":"esp32-devkitc"}].
	Modules []ModuleSpec `json:"modules,omitempty"`
}

// ModuleSpec names one module of a device and its board.
type ModuleSpec struct {
	Name  string `json:"name"`
	Board string `json:"board"`
}

// maxAddDevices is the most devices one POST /devices registers: a fleet
// of any size is registered in batches of this many, each one transaction.
const maxAddDevices = 1000

// addDevice registers one device (a JSON object) or several (an array of
// them, in one transaction: all or none, a refusal naming the index).
func (h *handler) addDevice(w http.ResponseWriter, r *http.Request) {
	var raw json.RawMessage
	if err := decode(w, r, &raw); err != nil {
		writeError(w, bodyStatus(err), err)
		return
	}
	trimmed := bytes.TrimLeft(raw, " \t\r\n")
	bulk := len(trimmed) > 0 && trimmed[0] == '['
	var reqs []AddDevice
	if bulk {
		if err := strictJSON(raw, &reqs); err != nil {
			writeError(w, http.StatusBadRequest, fmt.Errorf("request body: %w", err))
			return
		}
		if len(reqs) == 0 || len(reqs) > maxAddDevices {
			writeError(w, http.StatusBadRequest, fmt.Errorf("request body: %d devices; give 1 to %d in one request, and register more in several", len(reqs), maxAddDevices))
			return
		}
	} else {
		var req AddDevice
		if err := strictJSON(raw, &req); err != nil {
			writeError(w, http.StatusBadRequest, fmt.Errorf("request body: %w", err))
			return
		}
		reqs = []AddDevice{req}
	}
	ds := make([]store.Device, len(reqs))
	for i, req := range reqs {
		d, err := h.newDevice(&reqs[i])
		if err != nil && bulk {
			err = fmt.Errorf("[%d] (%s/%s): %w", i, req.ProductKey, req.DeviceName, err)
		}
		if err != nil {
			writeError(w, http.StatusBadRequest, err)
			return
		}
		ds[i] = d
	}
	if err := h.cfg.Store.AddDevices(ds); err != nil {
		writeError(w, statusOf(err), err)
		return
	}
	out := make([]Device, len(ds))
	for i, d := range ds {
		h.cfg.Logger.Info("device added", "device", d.Key(), "board", d.Board, "group", d.Group)
		out[i] = toDevice(d)
		out[i].DeviceSecret = reqs[i].DeviceSecret // shown this once
	}
	if bulk {
		writeJSON(w, http.StatusCreated, out)
	} else {
		writeJSON(w, http.StatusCreated, out[0])
	}
}

// strictJSON decodes one JSON value refusing unknown fields, as decode does.
func strictJSON(raw []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	return dec.Decode(v)
}

// newDevice checks a registration and makes its record; an empty secret
// is generated into req.
func (h *handler) newDevice(req *AddDevice) (store.Device, error) {
	if err := cloud.CheckIdentity(req.ProductKey, req.DeviceName); err != nil {
		return store.Device{}, fmt.Errorf("product_key %q, device_name %q: %w", req.ProductKey, req.DeviceName, err)
	}
	if req.Board == "" {
		return store.Device{}, errors.New("board: required, the board name the device's images are built for")
	}
	if _, err := h.board(req.Board); err != nil {
		return store.Device{}, err
	}
	var mods []store.Module
	seen := map[string]bool{store.DefaultModule: true}
	for i, m := range req.Modules {
		if err := cloud.CheckModule(m.Name); err != nil {
			return store.Device{}, fmt.Errorf("modules[%d].name: %w", i, err)
		}
		if seen[m.Name] {
			return store.Device{}, fmt.Errorf("modules[%d].name: %q is listed twice (the default module's board is board): give each module once", i, m.Name)
		}
		seen[m.Name] = true
		if _, err := h.board(m.Board); err != nil {
			return store.Device{}, fmt.Errorf("modules[%d].board: %w", i, err)
		}
		mods = append(mods, store.Module{Name: m.Name, Board: m.Board, State: store.DeviceRegistered})
	}
	if req.DeviceSecret == "" {
		var b [16]byte
		rand.Read(b[:])
		req.DeviceSecret = hex.EncodeToString(b[:])
	}
	d := store.Device{ProductKey: req.ProductKey, DeviceName: req.DeviceName, DeviceSecret: req.DeviceSecret,
		Board: req.Board, Group: req.Group, State: store.DeviceRegistered, Added: time.Now().UTC(), Modules: mods}
	if h.cfg.Secrets != nil {
		sealed, err := h.cfg.Secrets.Seal(d.Key(), d.DeviceSecret)
		if err != nil {
			return store.Device{}, err
		}
		d.DeviceSecret = sealed
	}
	return d, nil
}

func (h *handler) listDevices(w http.ResponseWriter, r *http.Request) {
	ds, err := h.cfg.Store.Devices()
	if err != nil {
		writeError(w, statusOf(err), err)
		return
	}
	out := make([]Device, 0, len(ds))
	for _, d := range ds {
		out = append(out, toDevice(d))
	}
	writeJSON(w, http.StatusOK, out)
}

func (h *handler) getDevice(w http.ResponseWriter, r *http.Request) {
	d, err := h.cfg.Store.Device(r.PathValue("pk"), r.PathValue("dn"))
	if err != nil {
		writeError(w, statusOf(err), err)
		return
	}
	writeJSON(w, http.StatusOK, toDevice(d))
}

// deleteDevice removes a device and revokes its sign-in: the broker
// refuses it from now on and drops its connection if it has one.
func (h *handler) deleteDevice(w http.ResponseWriter, r *http.Request) {
	pk, dn := r.PathValue("pk"), r.PathValue("dn")
	if _, err := h.cfg.Campaigns.DeleteDevice(r.Context(), pk, dn); err != nil {
		writeError(w, statusOf(err), err)
		return
	}
	if h.cfg.Revoke != nil {
		h.cfg.Revoke(pk, dn)
	}
	w.WriteHeader(http.StatusNoContent)
}

// maxCertificateDays bounds a requested validity: past the CA's own
// lifetime a certificate is cut to it anyway.
const maxCertificateDays = 20 * 365

// issueCertificate signs a registered device's certificate request into
// its client certificate, for the broker's certificate sign-in.
func (h *handler) issueCertificate(w http.ResponseWriter, r *http.Request) {
	pk, dn := r.PathValue("pk"), r.PathValue("dn")
	if h.cfg.Certificates == nil {
		writeError(w, http.StatusNotFound, errors.New("this server issues no device certificates"))
		return
	}
	var req CertificateRequest
	if err := decode(w, r, &req); err != nil {
		writeError(w, bodyStatus(err), err)
		return
	}
	if req.ValidDays < 0 || req.ValidDays > maxCertificateDays {
		writeError(w, http.StatusBadRequest, fmt.Errorf("valid_days %d: give 1 to %d, or 0 for the default", req.ValidDays, maxCertificateDays))
		return
	}
	if _, err := h.cfg.Store.Device(pk, dn); err != nil {
		writeError(w, statusOf(err), err)
		return
	}
	cert, notAfter, err := h.cfg.Certificates.Issue([]byte(req.CSR), pk, dn, time.Duration(req.ValidDays)*24*time.Hour)
	if err != nil {
		writeError(w, http.StatusBadRequest, fmt.Errorf("csr: %w", err))
		return
	}
	h.cfg.Logger.Info("device certificate issued", "device", pk+"/"+dn, "not_after", notAfter)
	writeJSON(w, http.StatusCreated, Certificate{Certificate: string(cert), CA: string(h.cfg.Certificates.CertPEM()), NotAfter: notAfter})
}

func (h *handler) listImages(w http.ResponseWriter, r *http.Request) {
	imgs, err := h.cfg.Store.Images()
	if err != nil {
		writeError(w, statusOf(err), err)
		return
	}
	out := make([]Image, 0, len(imgs))
	for _, i := range imgs {
		out = append(out, toImage(i))
	}
	writeJSON(w, http.StatusOK, out)
}

func pathID(r *http.Request) (uint64, error) {
	id, err := strconv.ParseUint(r.PathValue("id"), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("id %q: not a number", r.PathValue("id"))
	}
	return id, nil
}

func (h *handler) getImage(w http.ResponseWriter, r *http.Request) {
	if img, ok := h.pathImage(w, r); ok {
		writeJSON(w, http.StatusOK, toImage(img))
	}
}

// pathImage returns the image the path's {id} names; when it cannot, it
// answers the request with the error and returns false.
func (h *handler) pathImage(w http.ResponseWriter, r *http.Request) (store.Image, bool) {
	id, err := pathID(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, err)
		return store.Image{}, false
	}
	img, err := h.cfg.Store.Image(id)
	if err != nil {
		writeError(w, statusOf(err), err)
		return store.Image{}, false
	}
	return img, true
}

// uploadImage takes the image as the raw body or as the "file" part of a
// multipart form, with board (required) and version (checked against the
// image header when given) as query parameters or form fields.
func (h *handler) uploadImage(w http.ResponseWriter, r *http.Request) {
	board, version := r.URL.Query().Get("board"), r.URL.Query().Get("version")
	body := io.Reader(r.Body)
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt == "multipart/form-data" {
		mr, err := r.MultipartReader()
		if err != nil {
			writeError(w, http.StatusBadRequest, fmt.Errorf("multipart upload: %w", err))
			return
		}
		body = nil
		for body == nil {
			part, err := mr.NextPart()
			if err != nil {
				writeError(w, http.StatusBadRequest, errors.New(`multipart upload: no "file" part`))
				return
			}
			switch part.FormName() {
			case "board", "version":
				v, _ := io.ReadAll(io.LimitReader(part, 256))
				if part.FormName() == "board" {
					board = string(v)
				} else {
					version = string(v)
				}
			case "file":
				body = part
			}
		}
	}
	if board == "" {
		writeError(w, http.StatusBadRequest, errors.New("board: required (query ?board=NAME or form field), the board the image is built for"))
		return
	}
	b, err := h.board(board)
	if err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	limit := h.cfg.MaxImageSize
	if b.MaxImageSize > 0 && b.MaxImageSize < limit {
		limit = b.MaxImageSize
	}
	var meta firmware.Meta
	var links store.Image // a delta image's links to its base and target
	blob, err := h.cfg.Firmware.Put(r.Context(), body, limit, func(f *os.File, size int64) error {
		keys := h.cfg.Keys
		if h.cfg.KeySets != nil {
			var err error
			if keys, err = h.cfg.KeySets.Keys(); err != nil {
				return fmt.Errorf("%w: %w", firmware.ErrRefused, err)
			}
		}
		m, err := firmware.Check(f, size, keys, b.Signature)
		if err != nil {
			return err
		}
		if version != "" && !image.SameVersion(version, m.Version) {
			return fmt.Errorf("%w: version %s was given but the image header says %s: sign the image with --version %s or fix the version", firmware.ErrRefused, version, m.Version, version)
		}
		if m.IsDelta() {
			var err error
			if links, err = h.deltaLinks(r.Context(), board, m); err != nil {
				return err
			}
		}
		meta = m
		return nil
	})
	if errors.Is(err, firmware.ErrTooLarge) && limit == b.MaxImageSize {
		err = fmt.Errorf("%w: board %s takes images of at most %d bytes, the size of its update slot: build a smaller image", err, board, b.MaxImageSize)
	}
	if err != nil {
		writeError(w, statusOf(err), err)
		return
	}
	img, err := h.cfg.Campaigns.AddImage(r.Context(), store.Image{
		Version: meta.Version, Board: board, Size: blob.Size, SHA256: blob.SHA256, MD5: blob.MD5,
		SecurityCounter: meta.SecurityCounter, SignatureType: meta.SignatureType, KeyID: meta.KeyID,
		Uploaded: time.Now().UTC(), Path: blob.Path, Hash: meta.Hash,
		DeltaTarget: links.DeltaTarget, DeltaBase: links.DeltaBase, DeltaBaseHash: links.DeltaBaseHash,
	})
	if err != nil {
		writeError(w, statusOf(err), err)
		return
	}
	h.cfg.Logger.Info("image uploaded", "image", img.ID, "version", img.Version, "board", img.Board, "sha256", img.SHA256, "delta_base", img.DeltaBase, "delta_target", img.DeltaTarget)
	writeJSON(w, http.StatusCreated, toImage(img))
}

// deltaLinks finds the full images of board a delta image goes between, by
// their hashes: the target must be uploaded (a campaign sends it, and the
// delta only to the devices that run the base), and the base too, so that
// an operator sees which versions the delta serves.
func (h *handler) deltaLinks(ctx context.Context, board string, m firmware.Meta) (store.Image, error) {
	imgs, err := h.cfg.Store.Images()
	if err != nil {
		return store.Image{}, err
	}
	var links store.Image
	for _, img := range imgs {
		if img.Board != board || img.IsDelta() {
			continue
		}
		switch h.hashOf(ctx, img) {
		case m.DeltaTarget:
			links.DeltaTarget = img.ID
		case m.DeltaBase:
			links.DeltaBase, links.DeltaBaseHash = img.ID, m.DeltaBase
		}
	}
	if links.DeltaTarget == 0 {
		return store.Image{}, fmt.Errorf("%w: the delta image rebuilds version %s with hash %s, and no image of board %s has that hash: upload the full image first (otaserve image upload --board %s NEW.img)",
			firmware.ErrRefused, m.Version, m.DeltaTarget, board, board)
	}
	if links.DeltaBase == 0 {
		return store.Image{}, fmt.Errorf("%w: the delta image is made from the image with hash %s, and no image of board %s has that hash: upload the base image first (otaserve image upload --board %s OLD.img)",
			firmware.ErrRefused, m.DeltaBase, board, board)
	}
	return links, nil
}

// hashOf returns an image's hash TLV, read from its file for a record made
// before records kept it ("" when the file cannot be read).
func (h *handler) hashOf(ctx context.Context, img store.Image) string {
	if img.Hash != "" || h.cfg.Firmware == nil {
		return img.Hash
	}
	f, _, err := h.cfg.Firmware.Open(ctx, img.SHA256)
	if err != nil {
		return ""
	}
	defer f.Close()
	parsed, err := image.Parse(seekerAt{f}, img.Size)
	if err != nil {
		return ""
	}
	return hex.EncodeToString(parsed.Hash)
}

// imageFile sends an image's file, as the firmware server sends it to
// devices (Range, the SHA-256 as a strong ETag): what a client needs to
// make a delta image from a stored one with its own signing key.
func (h *handler) imageFile(w http.ResponseWriter, r *http.Request) {
	img, ok := h.pathImage(w, r)
	if !ok {
		return
	}
	f, stored, err := h.cfg.Firmware.Open(r.Context(), img.SHA256)
	if err != nil {
		writeError(w, http.StatusNotFound, fmt.Errorf("image %d: its file is missing: %w", img.ID, err))
		return
	}
	defer f.Close()
	w.Header().Set("ETag", `"`+img.SHA256+`"`)
	w.Header().Set("Content-Type", "application/octet-stream")
	http.ServeContent(w, r, "", stored, f)
}

// seekerAt reads a blob (a file, or the database's chunks) as the
// io.ReaderAt image.Parse takes, one read at a time.
type seekerAt struct{ r io.ReadSeeker }

func (s seekerAt) ReadAt(p []byte, off int64) (int, error) {
	if _, err := s.r.Seek(off, io.SeekStart); err != nil {
		return 0, err
	}
	return io.ReadFull(s.r, p)
}

// board returns the catalog entry of a board name, or an error that lists
// the boards otaserve knows.
func (h *handler) board(name string) (Board, error) {
	if b, ok := h.cfg.Boards[name]; ok {
		return b, nil
	}
	if len(h.cfg.Boards) == 0 {
		return Board{}, fmt.Errorf("board %q: this server was configured with no boards (api.Config.Boards), so it takes no device or image", name)
	}
	names := make([]string, 0, len(h.cfg.Boards))
	for n := range h.cfg.Boards {
		names = append(names, n)
	}
	slices.Sort(names)
	return Board{}, fmt.Errorf("board %q is not in otaserve's catalog; use one of: %s", name, strings.Join(names, ", "))
}

// deleteImage removes an image no active campaign uses, and its file
// unless another image record shares it.
func (h *handler) deleteImage(w http.ResponseWriter, r *http.Request) {
	id, err := pathID(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	img, shared, err := h.cfg.Campaigns.DeleteImage(r.Context(), id)
	if err != nil {
		writeError(w, statusOf(err), err)
		return
	}
	if !shared {
		if err := h.cfg.Firmware.Remove(r.Context(), img.SHA256); err != nil {
			// The record is gone; a file left behind costs only disk.
			h.cfg.Logger.Warn("image deleted but its file stays", "image", id, "err", err)
		}
	}
	w.WriteHeader(http.StatusNoContent)
}

func (h *handler) deleteCampaign(w http.ResponseWriter, r *http.Request) {
	id, err := pathID(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	if err := h.cfg.Campaigns.DeleteCampaign(r.Context(), id); err != nil {
		writeError(w, statusOf(err), err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (h *handler) listCampaigns(w http.ResponseWriter, r *http.Request) {
	cs, err := h.cfg.Store.Campaigns()
	if err != nil {
		writeError(w, statusOf(err), err)
		return
	}
	out := make([]Campaign, 0, len(cs))
	for _, c := range cs {
		// The live state of an active campaign is in the service.
		if st, err := h.cfg.Campaigns.Status(c.ID); err == nil {
			c = st.Campaign
		}
		out = append(out, toCampaign(c))
	}
	writeJSON(w, http.StatusOK, out)
}

func (h *handler) createCampaign(w http.ResponseWriter, r *http.Request) {
	var req CreateCampaign
	if err := decode(w, r, &req); err != nil {
		writeError(w, bodyStatus(err), err)
		return
	}
	c, err := h.cfg.Campaigns.Create(r.Context(), req.request())
	if err != nil {
		writeError(w, statusOf(err), err)
		return
	}
	writeJSON(w, http.StatusCreated, toCampaign(c))
}

func (h *handler) campaignStatus(w http.ResponseWriter, r *http.Request) {
	id, err := pathID(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	st, err := h.cfg.Campaigns.Status(id)
	if err != nil {
		writeError(w, statusOf(err), err)
		return
	}
	writeJSON(w, http.StatusOK, toStatus(st))
}

func (h *handler) campaignAction(w http.ResponseWriter, r *http.Request) {
	id, err := pathID(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	var act func(context.Context, uint64) (store.Campaign, error)
	switch r.PathValue("action") {
	case "pause":
		act = h.cfg.Campaigns.Pause
	case "resume":
		act = h.cfg.Campaigns.Resume
	case "cancel":
		act = h.cfg.Campaigns.Cancel
	default:
		writeError(w, http.StatusNotFound, fmt.Errorf("campaign action %q: use pause, resume or cancel", r.PathValue("action")))
		return
	}
	c, err := act(r.Context(), id)
	if err != nil {
		writeError(w, statusOf(err), err)
		return
	}
	writeJSON(w, http.StatusOK, toCampaign(c))
}
