// Package agent is the device agent that `otarun --plugin PATH` runs: it
// reads the device's configuration, finishes what the upgrade engine left
// at the last power-off, reports the running version to the cloud, and
// carries out the cloud's upgrade orders through the engine: check the
// order, install with progress reports, reboot through the port, run the
// health check, confirm or roll back, report the outcome.
//
// It is the glue between core/cloud (orders in, progress and versions out)
// and core/engine (the upgrade itself). It does not download or verify
// images (the engine does), speak MQTT (the cloud client does) or draw
// progress bars (cmd/otarun does, from the agent's Events).
package agent

import (
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/tls"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/otaport/otaport/core/cloud"
	"github.com/otaport/otaport/core/engine"
	"github.com/otaport/otaport/core/event"
	"github.com/otaport/otaport/core/hal"
	"github.com/otaport/otaport/core/image"
)

// Link is the agent's side of the cloud connection; *cloud.Client is one.
// The agent names the module and the order of every report itself, since
// the modules of a device carry out their orders at the same time.
type Link interface {
	InformModule(ctx context.Context, module, version string) error
	Report(ctx context.Context, p cloud.Progress) error
	Close() error
}

// Port is what the agent needs of a port: the platform, its key-value store
// (where the engine's and the agent's state survive a reboot) and its reset.
// plugin.Client (a plugin) and boot.Platform (in-process) are both.
type Port interface {
	hal.Platform
	hal.KV
	hal.Rebooter
}

// Options configures an Agent.
type Options struct {
	// Config is the device's configuration, already validated.
	Config Config
	// Port is the board's port, for a device of one module (Config lists
	// no modules).
	Port Port
	// Ports holds the port of each module of Config.Modules, by name, for a
	// device of several.
	Ports map[string]Port
	// OrderKey is otaserve's order-signing public key (Ed25519); nil means
	// Config.OrderKey's file, read by New.
	OrderKey crypto.PublicKey
	// Keys are the public keys images must be signed with, for every
	// module. Empty means the keys of each module's public_keys (or
	// Config.PublicKeys), read by New.
	Keys []crypto.PublicKey
	// HTTPClient downloads images; nil means the engine's default, with
	// Config.CA as its trust anchors.
	HTTPClient *http.Client
	// Dial connects to the cloud; nil means cloud.Dial.
	Dial func(ctx context.Context, cfg cloud.Config) (Link, error)
	// CloudConfig adjusts the cloud configuration before Dial (tests use
	// it to shorten intervals); may be nil.
	CloudConfig func(*cloud.Config)
	// OnEvent receives what the agent does, for a progress bar or JSON
	// lines; called from the agent's goroutines, one call at a time.
	OnEvent func(Event)
	// Logger receives the agent's and the engine's logs; nil discards them.
	Logger *slog.Logger
	// Engine adjusts the engine's options (chunk size, retries); the
	// agent sets Keys, Observer, Logger and HTTPClient itself.
	Engine engine.Options
}

// Event is one thing the agent reports to the person or program watching
// it; `otarun --json` prints one per line.
type Event struct {
	// Kind is one of the engine's kinds (event.State, event.Progress,
	// event.Error) or the agent's own (event.Start ... event.Stop).
	Kind event.Kind `json:"event"`
	// Module is the module the event is about, on a device of several.
	Module  string `json:"module,omitempty"`
	Order   int64  `json:"order,omitempty"`
	Version string `json:"version,omitempty"`
	// State is the engine's state for "state" and "progress" events.
	State   string `json:"state,omitempty"`
	Percent int    `json:"percent,omitempty"`
	Offset  int64  `json:"offset,omitempty"`
	Total   int64  `json:"total,omitempty"`
	Message string `json:"message,omitempty"`
	Error   string `json:"error,omitempty"`
}

// unit runs one module of the device: its port, its engine, its record
// (in its own port's params) and its orders. The Agent connects to the
// cloud for all of them and hands each its orders.
type unit struct {
	module string
	cfg    Config // the device's, with the module's keys, health check and downgrade rule
	port   Port
	eng    *engine.Engine
	keys   []crypto.PublicKey
	log    *slog.Logger
	emitFn func(Event)

	orders    chan *cloud.Order
	reconnect chan struct{}

	// auth checks orders; nil when they are not signed. nonce is the
	// nonce of the module's latest version report, in memory only: after
	// a restart the next report carries a new one.
	auth  *orderAuth
	nonce string
	// migrating is set while the unit runs in the migration mode of a
	// device.yaml from before signed orders (Config.Migration) and has not
	// learned the order key: it takes unsigned orders. Read by the Agent
	// for the version reports; onLearn tells it of a change.
	migrating atomic.Bool
	onLearn   func()
	// issued takes the issue time of each release statement the agent
	// took, for the unit to keep in its record between orders (the first
	// unit's only).
	issued chan int64

	// Set while Run runs; read by the engine's observer on the goroutine
	// that runs the engine.
	link     moduleLink
	busy     bool // an order is being carried out: do not inform on reconnect
	progress engine.Observer
	rec      record
	layout   hal.Layout // the board's, read at the start of Run
	// keySetRefused is the last key set refusal reported (keysets.go).
	keySetRefused string
}

// moduleLink is a unit's view of the Link: reports carry the unit's module
// and the id of the unit's current order.
type moduleLink struct {
	link   Link
	module string
	order  *atomic.Int64
}

// nonceLink is a Link whose version reports can carry a nonce;
// *cloud.Client is one. Signed orders need it.
type nonceLink interface {
	InformNonce(ctx context.Context, module, version, nonce string) error
}

func (l moduleLink) Inform(ctx context.Context, version, nonce string) error {
	if nonce == "" {
		return l.link.InformModule(ctx, l.module, version)
	}
	nl, ok := l.link.(nonceLink)
	if !ok {
		return fmt.Errorf("inform: the cloud link (%T) cannot carry the nonce signed orders need", l.link)
	}
	return nl.InformNonce(ctx, l.module, version, nonce)
}

// carriesNonce reports whether the link can send a version report's nonce:
// signed orders need it (Run refuses a link without), a device in migration
// mode uses it when it can.
func (l moduleLink) carriesNonce() bool {
	_, ok := l.link.(nonceLink)
	return ok
}

func (l moduleLink) Progress(ctx context.Context, step cloud.Step, desc string) error {
	return l.link.Report(ctx, cloud.Progress{ID: l.order.Load(), Params: cloud.ProgressParams{Step: step, Desc: desc, Module: cloud.ModuleField(l.module)}})
}

// publishTimeout bounds one report to the cloud: a report that cannot go
// out while the link is down is dropped (the next one, or the version
// report after the reconnection, tells the cloud where the device stands)
// rather than holding up the upgrade.
const publishTimeout = 5 * time.Second

// Agent runs one device: one unit per module, over one connection to the
// cloud. Create it with New and call Run once.
type Agent struct {
	cfg    Config
	units  []*unit
	auth   *orderAuth
	dial   func(ctx context.Context, cfg cloud.Config) (Link, error)
	adjust func(*cloud.Config)
	log    *slog.Logger
	onEv   func(Event)

	evMu sync.Mutex // serialises onEv

	orders     chan *cloud.Order
	reconnect  chan struct{}
	statements chan *cloud.Statement
	keySets    chan [][]byte

	// unsigned, once connected, carries whether any module takes unsigned
	// orders into the version reports; nil for a link that cannot say it.
	unsignedMu sync.Mutex
	unsigned   unsignedLink
}

// unsignedLink is a Link whose version reports can say the device takes
// unsigned orders; *cloud.Client is one.
type unsignedLink interface{ SetUnsignedOrders(bool) }

// reportUnsigned makes the version reports say whether a module takes
// unsigned orders: one that is in migration mode, or set to take them.
func (a *Agent) reportUnsigned() {
	a.unsignedMu.Lock()
	defer a.unsignedMu.Unlock()
	if a.unsigned == nil {
		return
	}
	unsigned := false
	for _, u := range a.units {
		// A unit out of migration mode never changes auth after New.
		unsigned = unsigned || u.migrating.Load() || (!u.cfg.Migration() && u.auth == nil)
	}
	a.unsigned.SetUnsignedOrders(unsigned)
}

// New checks the options and builds the agent and an engine per module. It
// does not touch the ports or the network.
func New(opts Options) (*Agent, error) {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	a := &Agent{
		cfg: opts.Config, dial: opts.Dial, adjust: opts.CloudConfig, log: log, onEv: opts.OnEvent,
		orders:     make(chan *cloud.Order, 16),
		reconnect:  make(chan struct{}, 1),
		statements: make(chan *cloud.Statement, 4),
		keySets:    make(chan [][]byte, 1),
	}
	if a.dial == nil {
		a.dial = func(ctx context.Context, cfg cloud.Config) (Link, error) { return cloud.Dial(ctx, cfg) }
	}
	httpClient := opts.HTTPClient
	if httpClient == nil && opts.Config.CA != "" {
		pem, err := os.ReadFile(opts.Config.CA)
		if err != nil {
			return nil, fmt.Errorf("agent: %s: %w", opts.Config.where("ca"), err)
		}
		if httpClient, err = engine.NewHTTPClient(pem); err != nil {
			return nil, fmt.Errorf("agent: %s: %w", opts.Config.where("ca"), err)
		}
	}
	if id := opts.Config.Identity; id.Cert != "" {
		// Found at start, not at the first sign-in in the background.
		if _, err := os.Stat(id.Cert); err != nil {
			return nil, fmt.Errorf("agent: %s: %w", opts.Config.where("identity.cert"), err)
		}
		if _, err := tls.LoadX509KeyPair(id.Cert, id.Key); err != nil {
			return nil, fmt.Errorf("agent: %s: %w: give the private key of %s", opts.Config.where("identity.key"), err, id.Cert)
		}
	}
	var err error
	if a.auth, err = newOrderAuth(opts.Config, opts.OrderKey); err != nil {
		return nil, err
	}
	switch {
	case opts.Config.Migration() && opts.OrderKey == nil:
		log.Warn("device.yaml predates signed orders (no order_key, no signed_orders): migration mode, unsigned orders are taken until an order brings otaserve's order key endorsed by an image key; add order_key to take signed orders only from the start")
	case a.auth == nil:
		log.Warn("orders are not authenticated: anyone who can publish on the device's upgrade topic can order an upgrade (order_key, signed_orders in device.yaml)")
	}
	several := len(opts.Config.Modules) > 0
	for i, m := range opts.Config.ModuleList() {
		port := opts.Port
		if several {
			if port = opts.Ports[m.Name]; port == nil {
				return nil, fmt.Errorf("agent: %s: no port for module %s", opts.Config.where(fmt.Sprintf("modules[%d]", i)), m.Name)
			}
		}
		if port == nil {
			return nil, errors.New("agent: no port")
		}
		u, err := a.newUnit(opts, m, port, httpClient, several)
		if err != nil {
			if several {
				return nil, fmt.Errorf("module %s: %w", m.Name, err)
			}
			return nil, err
		}
		a.units = append(a.units, u)
	}
	return a, nil
}

// newUnit builds the unit of module m over port.
func (a *Agent) newUnit(opts Options, m ModuleConfig, port Port, hc *http.Client, several bool) (*unit, error) {
	keys := opts.Keys
	if len(keys) == 0 {
		var err error
		if keys, err = loadKeys(m.PublicKeys); err != nil {
			return nil, err
		}
	}
	cfg := opts.Config
	cfg.PublicKeys, cfg.HealthCheck, cfg.AllowDowngrade = m.PublicKeys, *m.HealthCheck, *m.AllowDowngrade
	eo := opts.Engine
	if m.EncKey != "" && eo.DecryptKey == nil {
		k, err := image.ReadDecryptionKey(m.EncKey)
		if err != nil {
			return nil, fmt.Errorf("enc_key: %w", err)
		}
		eo.DecryptKey = k
	}
	u := &unit{
		module: m.Name, cfg: cfg, port: port, keys: keys, log: a.log, auth: a.auth,
		orders:    make(chan *cloud.Order, 16),
		reconnect: make(chan struct{}, 1),
		issued:    make(chan int64, 1),
	}
	u.emitFn = a.emit
	u.migrating.Store(cfg.Migration() && opts.OrderKey == nil)
	u.onLearn = a.reportUnsigned
	if several {
		u.log = a.log.With("module", m.Name)
		u.emitFn = func(ev Event) {
			ev.Module = m.Name
			a.emit(ev)
		}
	}
	eo.Keys = keys
	eo.AllowDowngrade = cfg.AllowDowngrade
	eo.Logger = u.log.With("part", "engine")
	eo.Observer = engine.ObserverFunc(u.engineEvent)
	eo.HTTPClient = hc
	if cfg.TrustedClock == nil || *cfg.TrustedClock {
		eo.Clock = time.Now // checks key sets' expiry
	}
	eo.Dependencies = func(ctx context.Context, deps []image.Dependency) error { return a.checkDependencies(ctx, u, deps) }
	eng, err := engine.New(port, port, eo)
	if err != nil {
		return nil, fmt.Errorf("agent: %w", err)
	}
	u.eng = eng
	u.progress = engine.Throttle(engine.ObserverFunc(u.reportProgress), cfg.reportInterval(), nil)
	return u, nil
}

func (a *Agent) emit(ev Event) {
	if a.onEv == nil {
		return
	}
	a.evMu.Lock()
	defer a.evMu.Unlock()
	a.onEv(ev)
}

func (a *unit) emit(ev Event) { a.emitFn(ev) }

// Run runs the agent until ctx ends: recover each module, connect, finish
// what each module was left doing, report each module's running version,
// then take orders, each module's on its own. It returns nil when ctx ends,
// with the engines' state persisted (a download resumes at the next
// start); an error when the device cannot run at all (no port, no broker
// at the start, a state store that fails).
func (a *Agent) Run(ctx context.Context) error {
	for _, u := range a.units {
		if err := u.prepare(ctx); err != nil {
			return err
		}
		if a.auth == nil && u.auth != nil {
			// A key learned in migration mode: otaserve's statements
			// are checked with it as a configured key's are.
			a.auth = u.auth
		}
	}
	cc := cloud.Config{
		Broker:   a.cfg.Broker,
		Identity: cloud.Identity{ProductKey: a.cfg.Identity.ProductKey, DeviceName: a.cfg.Identity.DeviceName},
		CAFile:   a.cfg.CA,
		CertFile: a.cfg.Identity.Cert, KeyFile: a.cfg.Identity.Key,
		KeepAlive: time.Duration(a.cfg.KeepAlive),
		Module:    a.cfg.Module,
		Logger:    a.log.With("part", "cloud"),
		Sign:      cloud.SignOptions{Form: signForm(a.cfg.SignForm), ClientID: a.cfg.ClientID},
		OnOrder: func(o *cloud.Order, _ []byte) {
			select {
			case a.orders <- o:
			default:
				a.log.Warn("order dropped: too many orders waiting", "id", o.ID)
			}
		},
		OnConnect: func() {
			select {
			case a.reconnect <- struct{}{}:
			default:
			}
		},
		OnError: func(err error) { a.log.Warn("cloud", "err", err) },
	}
	if a.auth != nil {
		// Only the order key can tell otaserve's statements from others.
		cc.OnStatement = func(s *cloud.Statement) {
			select {
			case a.statements <- s:
			default:
				a.log.Warn("release statement dropped: too many waiting")
			}
		}
	}
	cc.OnKeySets = func(docs [][]byte) {
		// Only the newest chain matters: drop one still waiting.
		for {
			select {
			case a.keySets <- docs:
				return
			default:
			}
			select {
			case <-a.keySets:
			default:
			}
		}
	}
	var err error
	if cc.Identity.DeviceSecret, err = a.cfg.secret(); err != nil {
		return err
	}
	if a.adjust != nil {
		a.adjust(&cc)
	}
	link, err := a.connect(ctx, cc)
	if err != nil {
		return a.stopped(ctx, err)
	}
	defer link.Close()
	if _, ok := link.(nonceLink); a.auth != nil && !ok {
		return fmt.Errorf("agent: signed orders need version reports with a nonce, and the cloud link (%T) cannot send one", link)
	}
	if ul, ok := link.(unsignedLink); ok {
		a.unsignedMu.Lock()
		a.unsigned = ul
		a.unsignedMu.Unlock()
		a.reportUnsigned()
	}
	a.emit(Event{Kind: event.Connected, Message: a.cfg.Broker})

	uctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// The release statements and the key sets are watched from this loop
	// rather than goroutines of their own: a fleet simulator runs tens of
	// thousands of agents in one process, and every goroutine is a stack.
	var statements <-chan *cloud.Statement
	var freezeTick <-chan time.Time
	var fw *freezeWatch
	if a.auth != nil {
		fw = a.newFreezeWatch(link, a.units[0].rec.StatementIssued)
		defer fw.stop()
		statements, freezeTick = a.statements, fw.tick.C
	}
	if kl, ok := link.(keySetLink); ok {
		for _, u := range a.units {
			kl.SetKeySetVersion(u.module, u.keySetVersion(uctx))
		}
	}
	var chain [][]byte
	var keySetRetry <-chan time.Time // nil: nothing to try again
	done := make(chan error, len(a.units))
	for _, u := range a.units {
		u.link = moduleLink{link: link, module: u.module, order: new(atomic.Int64)}
		go func() {
			err := u.loop(uctx)
			if err != nil {
				cancel() // the device cannot run: stop the other modules too
			}
			done <- err
		}()
	}
	var first error
	running := len(a.units)
	for running > 0 {
		select {
		case err := <-done:
			running--
			if first == nil {
				first = err // units return nil when ctx ends, so this is the cause
			}
		case <-a.reconnect:
			// The platform wants the version after every connection
			// (AliOS Things issue #1805), every module's.
			a.emit(Event{Kind: event.Connected, Message: a.cfg.Broker})
			a.reportAgain()
		case o := <-a.orders:
			a.route(uctx, link, o)
		case s := <-statements:
			fw.statement(s)
		case <-freezeTick:
			fw.check()
		case chain = <-a.keySets:
			keySetRetry = a.keySetsTurn(uctx, link, chain)
		case <-keySetRetry:
			keySetRetry = a.keySetsTurn(uctx, link, chain)
		}
	}
	return a.stopped(ctx, first)
}

// reportAgain makes every module report its version again.
func (a *Agent) reportAgain() {
	for _, u := range a.units {
		select {
		case u.reconnect <- struct{}{}:
		default:
		}
	}
}

// frozenLink is a Link whose version reports can say the device may be
// frozen; *cloud.Client is one.
type frozenLink interface{ SetPossiblyFrozen(bool) }

// freezeWatch takes otaserve's release statements and, when none has come
// for FreezeAfter (counted on the device's own monotonic clock, so a
// device without a trusted clock is watched too), reports the device as
// possibly frozen in every module's version report, until one comes again.
// Run drives it: statement for each statement, check at each tick.
type freezeWatch struct {
	a          *Agent
	link       frozenLink // nil when the link cannot say it
	after      time.Duration
	tick       *time.Ticker
	last       time.Time
	lastIssued int64
	frozen     bool
}

// newFreezeWatch starts a watch. lastIssued is the issue time of the last
// statement taken before this start, from the record: an older one is a
// replay. Each one taken goes to the first unit to keep (offerIssued).
func (a *Agent) newFreezeWatch(link Link, lastIssued int64) *freezeWatch {
	after := time.Duration(a.cfg.FreezeAfter)
	if after <= 0 {
		after = DefaultFreezeAfter
	}
	fl, _ := link.(frozenLink)
	return &freezeWatch{a: a, link: fl, after: after, tick: time.NewTicker(max(after/8, 10*time.Millisecond)),
		last: time.Now(), lastIssued: lastIssued}
}

func (w *freezeWatch) stop() { w.tick.Stop() }

func (w *freezeWatch) set(v bool) {
	w.frozen = v
	if w.link != nil {
		w.link.SetPossiblyFrozen(v)
	}
	w.a.reportAgain() // every module reports its version again, saying it
}

func (w *freezeWatch) statement(s *cloud.Statement) {
	a := w.a
	if err := a.auth.checkStatement(s, w.lastIssued); err != nil {
		a.log.Warn("release statement refused", "err", err)
		return
	}
	w.last, w.lastIssued = time.Now(), s.Issued
	offerIssued(a.units[0].issued, s.Issued)
	if w.frozen {
		a.log.Info("release statements again: no longer possibly frozen")
		a.emit(Event{Kind: event.Frozen, Message: "thawed"})
		w.set(false)
	}
}

func (w *freezeWatch) check() {
	if w.frozen || time.Since(w.last) <= w.after {
		return
	}
	msg := fmt.Sprintf("no release statement from otaserve for %v (freeze_after): orders may be withheld from this device", w.after)
	w.a.log.Warn("possibly frozen", "reason", msg)
	w.a.emit(Event{Kind: event.Frozen, Message: msg})
	w.set(true)
}

// offerIssued hands the unit the issue time of a statement taken, the newest
// one waiting replacing an older: the unit keeps it between orders, so a
// record written during a long install lags by at most that install.
func offerIssued(ch chan int64, v int64) {
	for {
		select {
		case ch <- v:
			return
		default:
		}
		select {
		case old := <-ch:
			v = max(v, old)
		default:
		}
	}
}

// route hands an order to its module's unit, or refuses an order for a
// module the device does not have.
func (a *Agent) route(ctx context.Context, link Link, o *cloud.Order) {
	name := o.Module()
	var have []string
	for _, u := range a.units {
		if u.module == name {
			select {
			case u.orders <- o:
			default:
				u.log.Warn("order dropped: too many orders waiting", "id", o.ID)
			}
			return
		}
		have = append(have, u.module)
	}
	msg := fmt.Sprintf("no module %q on this device (it has %s): send the order for one of those", name, strings.Join(have, ", "))
	a.emit(Event{Kind: event.Refused, Module: name, Order: o.ID, Version: o.Data.Version, Error: msg})
	a.log.Warn("order refused", "id", o.ID, "module", name, "reason", msg)
	pctx, cancel := context.WithTimeout(ctx, publishTimeout)
	defer cancel()
	if err := link.Report(pctx, cloud.NewFailure(o.ID, cloud.StepUpgradeFailed, msg).WithModule(name)); err != nil {
		a.log.Warn("progress not sent", "err", err)
	}
}

// prepare reads the unit's record and port and reconciles the engine's
// record with what the bootloader did at this power-on, before the agent
// connects.
func (a *unit) prepare(ctx context.Context) error {
	var err error
	if a.rec, err = loadRecord(ctx, a.eng); err != nil {
		return err
	}
	info, err := a.port.Describe(ctx)
	if err != nil {
		return fmt.Errorf("describe the port: %w", err)
	}
	a.layout = info.Layout
	if a.migrating.Load() && a.rec.OrderKey != "" {
		if err := a.takeKey(a.rec.OrderKey); err != nil {
			// A record is written by this agent alone: say so and stay in
			// migration mode rather than refuse every order.
			a.log.Error("the order key learned before is unreadable; migration mode again", "err", err)
		}
	}
	dev, err := a.device(ctx)
	if err != nil {
		return err
	}
	a.emit(Event{Kind: event.Start, Version: dev.Running, Message: "board " + dev.Board})
	a.log.Info("agent starting", "board", dev.Board, "version", dev.Running, "pending", a.rec.Phase)
	if st, err := a.eng.Recover(ctx); err != nil {
		a.log.Warn("recover", "err", err)
	} else {
		a.emit(Event{Kind: event.State, State: string(st.State), Version: st.Image, Message: "at start"})
	}
	return nil
}

// loop finishes what the unit was left doing, reports its version and takes
// its orders until ctx ends (nil) or the module cannot go on (an error).
func (a *unit) loop(ctx context.Context) error {
	if a.rec.Order != nil {
		a.link.order.Store(a.rec.Order.ID)
	}
	// Finish an order that a reboot or a stop interrupted before the
	// version is reported: the cloud reads the old version from a device
	// that has started on an order as a rollback.
	if err := a.drive(ctx); err != nil {
		return quiet(ctx, err)
	}
	if err := a.inform(ctx); err != nil {
		return quiet(ctx, err)
	}
	for {
		select {
		case <-ctx.Done():
			// Kept at a stop too: the stop is when it matters.
			a.keepStatement(context.WithoutCancel(ctx))
			return nil
		case <-a.reconnect:
			// A statement that ended a freeze is kept before the
			// report that says so.
			a.keepStatement(ctx)
			if err := a.inform(ctx); err != nil {
				return quiet(ctx, err)
			}
		case o := <-a.orders:
			if err := a.handle(ctx, o); err != nil {
				return quiet(ctx, err)
			}
		case v := <-a.issued:
			a.keepIssued(ctx, v)
		}
	}
}

// keepStatement keeps the issue time of a statement taken, if one waits.
func (a *unit) keepStatement(ctx context.Context) {
	select {
	case v := <-a.issued:
		a.keepIssued(ctx, v)
	default:
	}
}

// keepIssued writes v to the record when it is newer than the one there.
func (a *unit) keepIssued(ctx context.Context, v int64) {
	if v <= a.rec.StatementIssued {
		return
	}
	a.rec.StatementIssued = v
	if err := saveRecord(ctx, a.eng, a.rec); err != nil {
		a.log.Warn("release statement not kept in the record", "err", err)
	}
}

// quiet is nil for an error that only says ctx ended.
func quiet(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// connect dials the cloud until it answers or ctx ends: a device keeps
// trying (the broker may be down, or the device not registered yet), with
// a back-off that doubles from 1 s to 1 min and a random part, so that a
// fleet that lost its broker does not come back all in the same second.
func (a *Agent) connect(ctx context.Context, cc cloud.Config) (Link, error) {
	backoff := time.Second
	for {
		link, err := a.dial(ctx, cc)
		if err == nil {
			return link, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		wait := backoff/2 + rand.N(backoff)
		a.log.Warn("cannot reach the cloud; trying again", "in", wait.Round(time.Millisecond), "err", err)
		a.emit(Event{Kind: event.Error, Error: err.Error(), Message: fmt.Sprintf("trying again in %v", wait.Round(time.Millisecond))})
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		backoff = min(2*backoff, time.Minute)
	}
}

// stopped ends Run: a stop asked for by ctx is not an error.
func (a *Agent) stopped(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		a.emit(Event{Kind: event.Stop, Message: "stopped; state saved"})
		for _, u := range a.units {
			u.log.Info("agent stopped", "phase", u.rec.Phase)
		}
		return nil
	}
	return err
}

// device describes the board for CheckOrder.
func (a *unit) device(ctx context.Context) (Device, error) {
	_, d, err := a.describe(ctx)
	return d, err
}

// describe returns what the port says and the board as CheckOrder sees it.
func (a *unit) describe(ctx context.Context) (hal.Info, Device, error) {
	info, err := a.port.Describe(ctx)
	if err != nil {
		return hal.Info{}, Device{}, fmt.Errorf("describe the port: %w", err)
	}
	d := Device{Board: info.Layout.Board, SecurityCounter: info.Boot.SecurityCounter}
	if run, ok := info.Boot.Running(); ok {
		d.Running = run.Version
	}
	if n, err := info.MaxImageSize(); err == nil {
		d.SlotSize = n // else 0, and CheckOrder refuses every image
	}
	// The keys of the module's key set when it holds one; none when they
	// cannot be told (an expired set), and the engine says why it refuses.
	keys, err := a.eng.TrustedKeys(ctx, info.Layout)
	if err != nil {
		a.log.Warn("the module's trusted keys", "err", err)
	}
	for _, k := range keys {
		if t, err := image.KeyType(k); err == nil && !slices.Contains(d.Schemes, t) {
			d.Schemes = append(d.Schemes, t)
		}
		if h, err := image.KeyHash(k); err == nil {
			d.KeyIDs = append(d.KeyIDs, hex.EncodeToString(h))
		}
	}
	return info, d, nil
}

// inform reports the running version, with the running image's hash when
// the link can carry it.
func (a *unit) inform(ctx context.Context) error {
	info, dev, err := a.describe(ctx)
	if err != nil {
		return err
	}
	if dev.Running == "" {
		a.log.Warn("no image runs that the bootloader knows the version of; nothing to report")
		return nil
	}
	if hl, ok := a.link.link.(imageHashLink); ok {
		// Without the hash the fleet sends full images only: a port
		// that cannot read its running slot still upgrades.
		hash, err := runningHash(ctx, a.port, info)
		if err != nil {
			a.log.Debug("no running image hash in the version report: the fleet sends full images", "err", err)
			hash = ""
		}
		if err := hl.SetImageHash(a.module, hash); err != nil {
			a.log.Warn("running image hash not reported", "err", err)
		}
	}
	if a.auth != nil || a.migrating.Load() && a.link.carriesNonce() {
		// Set before the report goes out: a report whose acknowledgement
		// is lost may still have reached the cloud, and an order that
		// answers an older one is then stale either way.
		if a.nonce, err = cloud.NewNonce(); err != nil {
			return err
		}
	}
	pctx, cancel := context.WithTimeout(ctx, publishTimeout)
	defer cancel()
	if err := a.link.Inform(pctx, dev.Running, a.nonce); err != nil {
		// Not fatal: the next connection reports it again.
		a.log.Warn("inform", "version", dev.Running, "err", err)
		return nil
	}
	a.emit(Event{Kind: event.Inform, Version: dev.Running})
	return nil
}

// report sends a progress step for the current order; failures to send are
// logged, not fatal.
func (a *unit) report(ctx context.Context, step cloud.Step, desc string) {
	pctx, cancel := context.WithTimeout(ctx, publishTimeout)
	defer cancel()
	if err := a.link.Progress(pctx, step, desc); err != nil {
		a.log.Warn("progress not sent", "step", step, "err", err)
	}
}

// engineEvent is the engine's observer: every event goes to the watcher,
// progress also (throttled) to the cloud.
func (a *unit) engineEvent(ev engine.Event) {
	a.emit(Event{Kind: ev.Kind, State: string(ev.State), Version: ev.Version, Percent: ev.Percent,
		Offset: ev.Offset, Total: ev.Total, Message: ev.Message, Error: ev.Error})
	if ev.Kind == event.Progress || ev.Kind == event.State {
		a.progress.Event(ev)
	}
}

// reportProgress sends a download percentage to the cloud (through the
// throttle: at most once a percent, at least every report interval).
func (a *unit) reportProgress(ev engine.Event) {
	// 0 went out when the order was accepted.
	if ev.Kind != event.Progress || ev.Percent <= 0 || a.link.link == nil || !a.busy {
		return
	}
	a.report(context.Background(), cloud.StepPercent(ev.Percent), "downloading")
}

// save persists the agent's record. While an order is in hand every save is
// a state change that counts against MaxStateChanges.
func (a *unit) save(ctx context.Context, phase Phase) error {
	if a.rec.Order != nil {
		a.rec.Phase = phase
		a.rec.Changes++
	} else {
		a.rec.Phase, a.rec.Changes = "", 0
	}
	return saveRecord(ctx, a.eng, a.rec)
}

// handle takes one order.
func (a *unit) handle(ctx context.Context, o *cloud.Order) error {
	a.link.order.Store(o.ID)
	a.emit(Event{Kind: event.Order, Order: o.ID, Version: o.Data.Version, Total: o.Data.Size})
	dev, err := a.device(ctx)
	if err != nil {
		return err
	}
	if a.migrating.Load() {
		if err := a.learn(ctx, o); err != nil {
			return err
		}
	}
	if a.auth == nil && a.migrating.Load() {
		a.log.Warn("unsigned order taken: migration mode (device.yaml without order_key), until an order brings otaserve's endorsed order key", "id", o.ID)
	}
	if a.auth != nil {
		if err := a.auth.authenticate(o, a.module, dev.Board, a.rec.OrderCounter, a.nonce); errors.Is(err, errDuplicate) {
			a.log.Info("order ignored: "+err.Error(), "id", o.ID, "counter", o.Data.Otaport.Counter)
			return nil
		} else if err != nil {
			// Nothing is written: a forged or replayed order costs the
			// device a report, not a flash write.
			a.emit(Event{Kind: event.Refused, Order: o.ID, Version: o.Data.Version, Error: err.Error()})
			a.log.Warn("order refused", "id", o.ID, "reason", err)
			a.report(ctx, cloud.StepUpgradeFailed, err.Error())
			return nil
		}
		// Taken: in memory now, persisted with the install's first save.
		// An order refused below or answered as already running is not
		// worth a write; until the next start the counter in memory
		// refuses its replay, and after it the new nonce does.
		a.rec.OrderCounter = o.Data.Otaport.Counter
	}
	if f, ok := a.rec.failedBefore(o); ok {
		msg := fmt.Sprintf("not retried: %s failed on this device: %s", o.Data.Version, f.Reason)
		a.emit(Event{Kind: event.Refused, Order: o.ID, Version: o.Data.Version, Message: msg})
		a.report(ctx, f.Step, msg)
		return nil
	}
	verdict, err := CheckOrder(o, dev, a.cfg.AllowDowngrade)
	if err != nil {
		a.emit(Event{Kind: event.Refused, Order: o.ID, Version: o.Data.Version, Error: err.Error()})
		a.report(ctx, cloud.StepUpgradeFailed, err.Error())
		return nil
	}
	if verdict == AlreadyRunning {
		a.emit(Event{Kind: event.Refused, Order: o.ID, Version: o.Data.Version, Message: "already running " + dev.Running})
		return a.inform(ctx)
	}
	a.rec.Order, a.rec.Changes = newOrderRecord(o, dev.Running), 0
	a.rec.forgetResets(o.Data.Version)
	if err := a.save(ctx, PhaseInstalling); err != nil {
		return err
	}
	a.busy = true
	defer func() { a.busy = false }()
	a.report(ctx, cloud.StepPercent(0), "accepted")
	err = a.eng.Install(ctx, engine.Source{URL: o.Data.URL, Digest: digestString(o), Size: o.Data.Size, Version: o.Data.Version})
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return a.fail(ctx, stepOf(err), err.Error())
	}
	return a.drive(ctx)
}

// learn takes the order key an order brings, if one of the image keys the
// module trusts now endorsed it (cloud.EndorsedKey), and persists it
// before the order is checked with it: from then on the module takes
// signed orders only. An
// order without a good endorsement teaches nothing and is taken as unsigned
// (the dual-accept period): whoever could forge one could as well send it
// without.
func (a *unit) learn(ctx context.Context, o *cloud.Order) error {
	if x := o.Data.Otaport; x == nil || x.OrderKey == "" {
		return nil
	}
	// The keys it trusts now: a key set's, once it holds one, so a key the
	// set revoked endorses nothing.
	keys, err := a.eng.TrustedKeys(ctx, a.layout)
	if err != nil {
		a.log.Warn("order key not learned: the module's trusted keys", "id", o.ID, "err", err)
		return nil
	}
	key, err := cloud.EndorsedKey(o, keys)
	if err != nil {
		a.log.Warn("order key not learned", "id", o.ID, "err", err)
		return nil
	}
	enc := base64.StdEncoding.EncodeToString(key)
	a.rec.OrderKey = enc
	if err := saveRecord(ctx, a.eng, a.rec); err != nil {
		a.rec.OrderKey = ""
		return err
	}
	if err := a.takeKey(enc); err != nil {
		return err
	}
	a.log.Info("order key learned, endorsed by an image key: signed orders only from now on", "key", cloud.OrderKeyID(key))
	return nil
}

// takeKey leaves migration mode with the order key enc (base64).
func (a *unit) takeKey(enc string) error {
	raw, err := base64.StdEncoding.DecodeString(enc)
	if err != nil || len(raw) != ed25519.PublicKeySize {
		return fmt.Errorf("agent: the learned order key in the agent's record is not an Ed25519 key")
	}
	auth, err := newOrderAuth(a.cfg, ed25519.PublicKey(raw))
	if err != nil {
		return err
	}
	a.auth = auth
	a.migrating.Store(false)
	if a.onLearn != nil {
		a.onLearn()
	}
	return nil
}

// installRecorded reports whether the engine's state shows the install of
// o: under way or done (downloading to testing), failed from o's source, or
// finished with o's version running. Anything else is the state from before
// o, which an install stopped before its first write leaves.
func installRecorded(st engine.Status, o *orderRecord) bool {
	switch st.State {
	case engine.Downloading, engine.Verifying, engine.Installed, engine.Testing:
		return true
	case engine.Failed:
		return st.Source == o.URL
	case engine.Confirmed:
		return image.SameVersion(st.RunningVersion, o.Version)
	}
	return false
}

// stepOf maps an engine error to the platform's failure step.
func stepOf(err error) cloud.Step {
	switch {
	case errors.Is(err, engine.ErrDownload):
		return cloud.StepDownloadFailed
	case errors.Is(err, engine.ErrVerify):
		return cloud.StepVerifyFailed
	case errors.Is(err, hal.ErrFlash), errors.Is(err, hal.ErrNotErased), errors.Is(err, hal.ErrMisaligned), errors.Is(err, hal.ErrOutOfBounds):
		return cloud.StepFlashFailed
	}
	return cloud.StepUpgradeFailed
}

// fail ends the current order as failed: it is remembered (so the same
// image is not tried again), reported, and the running version informed.
func (a *unit) fail(ctx context.Context, step cloud.Step, reason string) error {
	o := a.rec.Order
	if o == nil {
		return nil
	}
	return a.failWith(ctx, failure{Version: o.Version, Digest: o.Digest, Step: step, Reason: reason})
}

// failWith is fail with the failure to remember made by the caller.
func (a *unit) failWith(ctx context.Context, f failure) error {
	o := a.rec.Order
	step, reason := f.Step, f.Reason
	a.rec.remember(f)
	a.rec.Order = nil
	if err := a.save(ctx, ""); err != nil {
		return err
	}
	a.emit(Event{Kind: event.Failed, Order: o.ID, Version: o.Version, Error: reason})
	a.log.Warn("upgrade failed", "version", o.Version, "step", step, "reason", reason)
	a.report(ctx, step, reason)
	return a.inform(ctx)
}

// succeed ends the current order as done: the new version runs, confirmed.
func (a *unit) succeed(ctx context.Context) error {
	o := a.rec.Order
	if o == nil {
		return nil
	}
	a.rec.Order = nil
	a.rec.forgetResets(o.Version)
	if err := a.save(ctx, ""); err != nil {
		return err
	}
	a.emit(Event{Kind: event.Confirmed, Order: o.ID, Version: o.Version})
	a.log.Info("upgrade done", "version", o.Version)
	return a.inform(ctx)
}

// drive carries the engine forward until the order in hand (if any) is
// done: resume a download, reboot into an installed image, run the health
// check on a trial image and confirm it or return to the old one, and
// report the outcome. Without an order it still finishes what the engine
// left (an install by hand, a trial image), without reports. Each step is
// persisted first, so a stop or a crash at any point resumes here at the
// next start; MaxStateChanges stops a device that keeps coming back to the
// same step, and countReset one that the agent would reset in a loop, across
// restarts too.
func (a *unit) drive(ctx context.Context) error {
	a.busy = a.rec.Order != nil
	defer func() { a.busy = false }()
	reinstalled := false
	for {
		st, err := a.eng.Recover(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if a.rec.Order == nil {
				a.log.Warn("recover", "err", err)
				return nil
			}
			return a.fail(ctx, stepOf(err), err.Error())
		}
		o := a.rec.Order
		if o != nil && a.rec.Phase == PhaseInstalling && !reinstalled && !installRecorded(st, o) {
			// Stopped after the order was taken but before the engine
			// wrote a byte: the engine recorded nothing of it (an install
			// records itself when it is about to change the slot), so
			// the order is carried out again rather than failed for the
			// old image that still runs. Once: a second time it is the
			// engine's state that stands.
			reinstalled = true
			a.log.Info("the order's install stopped before its first write; installing again", "version", o.Version)
			if err := a.eng.Install(ctx, engine.Source{URL: o.URL, Digest: o.Digest, Size: o.Size, Version: o.Version}); err != nil {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				return a.fail(ctx, stepOf(err), err.Error())
			}
			continue
		}
		if o != nil && a.rec.Changes >= MaxStateChanges {
			if err := a.eng.Rollback(ctx); err != nil {
				a.log.Warn("rollback after the state loop guard", "err", err)
			}
			return a.fail(ctx, cloud.StepUpgradeFailed, fmt.Sprintf("gave up after %d state changes (state loop guard); the engine was %s", a.rec.Changes, st.State))
		}
		switch st.State {
		case engine.Downloading, engine.Verifying:
			if err := a.save(ctx, PhaseInstalling); err != nil {
				return err
			}
			if err := a.eng.Resume(ctx); err != nil {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				if o == nil {
					a.log.Warn("resume", "err", err)
					return nil
				}
				return a.fail(ctx, stepOf(err), err.Error())
			}
		case engine.Installed:
			if err := a.countReset(st); err != nil {
				return a.looping(ctx, err)
			}
			if err := a.save(ctx, PhaseRebooting); err != nil {
				return err
			}
			if _, err := a.reboot(ctx); err != nil {
				return a.failOrReturn(ctx, err)
			}
		case engine.Testing:
			if f, ok := a.rec.kept(st.RunningVersion); ok {
				// Judged before, on a board that cannot leave it.
				if o != nil {
					return a.fail(ctx, f.Step, f.Reason)
				}
				a.log.Info("the running image failed its health check before and is kept: nothing to do", "version", st.RunningVersion, "reason", f.Reason)
				return nil
			}
			if err := a.check(ctx, o, st); err != nil {
				if errors.Is(err, errLoop) {
					return a.looping(ctx, err)
				}
				return a.failOrReturn(ctx, err)
			}
		case engine.Confirmed:
			if o == nil {
				return nil
			}
			dev, err := a.device(ctx)
			if err != nil {
				return err
			}
			if !image.SameVersion(dev.Running, o.Version) {
				return a.fail(ctx, cloud.StepUpgradeFailed, fmt.Sprintf("runs %s after installing %s", dev.Running, o.Version))
			}
			return a.succeed(ctx)
		default: // RolledBack, Failed, Idle
			if o == nil {
				return nil
			}
			reason := a.rec.Reason
			if reason == "" {
				reason = st.LastError
			}
			if reason == "" {
				reason = "the engine is " + string(st.State)
			}
			if st.State == engine.RolledBack {
				dev, _ := a.device(ctx)
				reason = fmt.Sprintf("%s; rolled back to %s", reason, dev.Running)
			}
			a.rec.Reason = ""
			return a.fail(ctx, cloud.StepUpgradeFailed, reason)
		}
	}
}

// failOrReturn ends the current order with err, or returns err when there
// is no order or ctx ended.
func (a *unit) failOrReturn(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if a.rec.Order == nil {
		a.log.Warn("finishing what the engine left", "err", err)
		return nil
	}
	return a.fail(ctx, stepOf(err), err.Error())
}

// errLoop marks the state loop guard's refusals.
var errLoop = errors.New("state loop guard")

// countReset counts, in the record (persisted by the save that announces
// the reset), one more reset on account of the image the engine is at in
// st, or refuses it with errLoop: at most MaxRebootsPerImage for one image
// across agent restarts, and at most boot_attempts+1 in a row that bring
// the engine back to the state it was in.
func (a *unit) countReset(st engine.Status) error {
	img := st.Image
	if img == "" {
		img = "(unknown image)"
	}
	c := a.rec.resets(img)
	inRow := max(a.layout.BootAttempts, 1) + 1
	switch {
	case c.Count >= MaxRebootsPerImage:
		return fmt.Errorf("%w: not resetting the device for %s again: %d resets on its account already (at most %d per image); %s keeps running, the engine is %s",
			errLoop, img, c.Count, MaxRebootsPerImage, orNone(st.RunningVersion), st.State)
	case c.State == string(st.State) && c.Same >= inRow:
		return fmt.Errorf("%w: not resetting the device for %s again: the last %d resets left the engine %s each time (at most boot_attempts+1 = %d in a row); %s keeps running",
			errLoop, img, c.Same, st.State, inRow, orNone(st.RunningVersion))
	}
	if c.State == string(st.State) {
		c.Same++
	} else {
		c.State, c.Same = string(st.State), 1
	}
	c.Count++
	return nil
}

// looping ends what the state loop guard stopped: the order in hand fails
// with the guard's words; without an order the device stays as it is, said
// once per start.
func (a *unit) looping(ctx context.Context, err error) error {
	if a.rec.Order != nil {
		return a.fail(ctx, cloud.StepUpgradeFailed, err.Error())
	}
	a.log.Warn("finishing what the engine left", "err", err)
	a.emit(Event{Kind: event.Error, Error: err.Error()})
	return nil
}

func orNone(v string) string {
	if v == "" {
		return "no verified image"
	}
	return v
}

// reboot resets the device through the port. On the emulated board the
// simulated bootloader runs and the agent goes on as the image it booted;
// on hardware the process ends here and the next start resumes.
func (a *unit) reboot(ctx context.Context) (hal.RebootResult, error) {
	a.emit(Event{Kind: event.Reboot, Message: "rebooting"})
	res, err := a.port.Reboot(ctx)
	if err != nil {
		return res, fmt.Errorf("reboot through the port: %w", err)
	}
	msg := res.Action
	if res.Detail != "" {
		msg += ": " + res.Detail
	}
	a.emit(Event{Kind: event.Reboot, Version: res.Version, Message: msg})
	a.log.Info("rebooted", "slot", res.Slot, "version", res.Version, "action", res.Action, "detail", res.Detail)
	if res.Action == "reverted" || res.Action == "rolled-back" {
		if a.rec.Reason == "" {
			a.rec.Reason = "the bootloader did not keep the new image: " + res.Detail
		}
	}
	return res, nil
}

// check runs the health check on the trial image, then confirms it, or
// rolls back and reboots into the old one. Where there is no old image
// (single bank, or a port that cannot roll back) it keeps the image, see
// keep.
func (a *unit) check(ctx context.Context, o *orderRecord, st engine.Status) error {
	if err := a.save(ctx, PhaseChecking); err != nil {
		return err
	}
	dev, err := a.device(ctx)
	if err != nil {
		return err
	}
	info := HealthInfo{Version: dev.Running, Board: dev.Board}
	if o != nil {
		info.Previous = o.From
	}
	herr := RunHealthCheck(ctx, a.cfg.HealthCheck, info)
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if herr == nil {
		a.emit(Event{Kind: event.Health, Version: dev.Running, Message: "healthy"})
		if err := a.eng.Confirm(ctx); err != nil {
			return fmt.Errorf("confirm %s: %w", dev.Running, err)
		}
		return nil
	}
	a.emit(Event{Kind: event.Health, Version: dev.Running, Error: herr.Error()})
	if !a.layout.Scheme.Reverts() {
		return a.keep(ctx, o, dev, herr, "single bank: %s was overwritten")
	}
	if err := a.countReset(st); err != nil {
		return err
	}
	a.log.Warn("health check failed; rolling back", "version", dev.Running, "err", herr)
	a.rec.Reason = herr.Error()
	if err := a.save(ctx, PhaseReverting); err != nil {
		return err
	}
	if err := a.eng.Rollback(ctx); err != nil {
		if errors.Is(err, hal.ErrUnsupported) {
			return a.keep(ctx, o, dev, herr, "the port cannot roll back to %s")
		}
		// The bootloader's boot counter is the last resort: a trial
		// image that is not confirmed is left after boot_attempts boots.
		a.log.Warn("rollback", "err", err)
	}
	res, err := a.reboot(ctx)
	if err != nil {
		return err
	}
	if res.Version != "" && !image.SameVersion(res.Version, dev.Running) {
		a.emit(Event{Kind: event.RolledBack, Version: res.Version, Error: herr.Error()})
	}
	return nil
}

// keep ends a failed health check where no other image can run: the
// failure is remembered as kept (so no start checks it again or resets the
// device for it), reported once with the health check's reason (to the
// cloud when an order is in hand), and the running image stays,
// unconfirmed, until an order for another version replaces it. Nothing
// claims a rollback: there was none. why says why there is no return, with
// %s for the image replaced.
func (a *unit) keep(ctx context.Context, o *orderRecord, dev Device, herr error, why string) error {
	prev := "the old image"
	if o != nil && o.From != "" {
		prev = o.From
	}
	// Short, and after the health check's words: the cloud clips a report
	// to 256 bytes.
	reason := fmt.Sprintf("%v; %s stays, unconfirmed (%s); no further reset", herr, dev.Running, fmt.Sprintf(why, prev))
	a.log.Warn("health check failed; no image to return to, keeping the running one", "version", dev.Running, "err", herr)
	a.rec.Reason = ""
	f := failure{Version: dev.Running, Step: cloud.StepUpgradeFailed, Reason: reason, Kept: true}
	if o != nil {
		f.Digest = o.Digest
		return a.failWith(ctx, f)
	}
	a.rec.remember(f)
	if err := a.save(ctx, ""); err != nil {
		return err
	}
	a.emit(Event{Kind: event.Failed, Version: dev.Running, Error: reason})
	return nil
}

// signForm maps Config.SignForm to the cloud's form.
func signForm(s string) cloud.Form {
	if s == "sdk" {
		return cloud.FormSDK
	}
	return cloud.FormDoc
}

// loadKeys reads the PEM public keys of the config, at least one.
func loadKeys(files []string) ([]crypto.PublicKey, error) {
	if len(files) == 0 {
		return nil, errors.New("public_keys: none; list the PEM public key(s) images are signed with (--key pub.pem)")
	}
	keys, err := image.ReadPublicKeys(files)
	if err != nil {
		return nil, fmt.Errorf("public_keys: %w", err)
	}
	return keys, nil
}

// Provision writes a device's first image from the file at path, as a
// factory does: installed for good (no trial), the device powered on into
// it, and confirmed. It returns the engine's status afterwards.
func Provision(ctx context.Context, port Port, keyFiles []string, path string, log *slog.Logger) (engine.Status, error) {
	keys, err := loadKeys(keyFiles)
	if err != nil {
		return engine.Status{}, err
	}
	eng, err := engine.New(port, port, engine.Options{Keys: keys, AllowDowngrade: true, Logger: log})
	if err != nil {
		return engine.Status{}, err
	}
	if err := eng.Install(ctx, engine.Source{URL: path, Permanent: true}); err != nil {
		return engine.Status{}, fmt.Errorf("provision %s: %w", path, err)
	}
	if _, err := port.Reboot(ctx); err != nil {
		return engine.Status{}, fmt.Errorf("provision %s: power on: %w", path, err)
	}
	if _, err := eng.Recover(ctx); err != nil {
		return engine.Status{}, fmt.Errorf("provision %s: %w", path, err)
	}
	if err := eng.Confirm(ctx); err != nil {
		return engine.Status{}, fmt.Errorf("provision %s: %w", path, err)
	}
	return eng.Status(ctx)
}
