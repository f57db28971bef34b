package cloud

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/otaport/otaport/core/mqtt"
)

// The platform's keep-alive range ("MQTT-TCP connection": 30 to 1200 s);
// the C SDK's default is 60 s.
const (
	MinKeepAlive     = 30 * time.Second
	MaxKeepAlive     = 1200 * time.Second
	DefaultKeepAlive = 60 * time.Second
)

// QoS of every OTA message: orders, progress and inform are all worth a
// retransmission (the C SDK sends progress at QoS 0; otaport's progress
// drives campaigns, so it is sent at least once).
const qos = 1

// seenOrders is how many recent orders the client remembers to drop
// redeliveries: a QoS 1 order comes again after a reconnection, and the
// platform re-pushes a pending order (AliOS Things issue #928).
const seenOrders = 64

// Config configures a Client.
type Config struct {
	// Broker is the broker's URL: tcp://host:port (or mqtt://) for plain
	// TCP, ssl://, tls:// or mqtts:// for TLS. Several, separated by commas
	// and all of one transport, are the nodes of a clustered broker: the
	// client connects to the first that answers, in order, and again at
	// every reconnection, so it moves to another node when its own dies.
	Broker string
	// Identity is the device's triple.
	Identity Identity
	// Sign chooses the client id, method and layout of the sign-in; its TLS
	// field is set from Broker. Empty means FormDoc, hmacsha256, client id
	// "{pk}.{dn}" and the current time as timestamp.
	Sign SignOptions
	// CAFile is a PEM file of the CAs that may sign the broker's
	// certificate; empty means the system's.
	CAFile string
	// RootCAs, if set, are the CAs that may sign the broker's certificate,
	// in place of CAFile's: a process running many clients (the fleet
	// simulator) parses its CA file once and gives every client the same
	// pool, where each would otherwise parse and keep its own copy.
	// Give RootCAs or CAFile, not both.
	RootCAs *x509.CertPool
	// CertFile and KeyFile are the device's client certificate and its
	// key, PEM, for a broker that signs devices in by certificate (TLS
	// only). With them the device secret may be empty: the broker knows
	// the device by its certificate.
	CertFile, KeyFile string
	// Now is the clock the sign-in's timestamp is read from; nil means
	// time.Now.
	Now func() time.Time
	// InsecureSkipVerify accepts any broker certificate. For tests only.
	InsecureSkipVerify bool
	// KeepAlive is the MQTT keep-alive, 30 s to 1200 s as the platform
	// wants; 0 means DefaultKeepAlive.
	KeepAlive time.Duration
	// AnyKeepAlive lifts the platform's keep-alive range, for tests.
	AnyKeepAlive bool
	// ConnectTimeout bounds one connection attempt, and each wait for the
	// broker's answer to a subscription or a report; 0 means
	// mqtt.DefaultConnectTimeout.
	ConnectTimeout time.Duration
	// MaxReconnectInterval caps the back-off between reconnection attempts
	// (1 s, doubling); 0 means 1 min.
	MaxReconnectInterval time.Duration
	// Module is the module reported in inform and progress; empty for the
	// default module.
	Module string
	// Logger receives the client's logs; nil discards them.
	Logger *slog.Logger
	// OnOrder receives each new, valid order with its raw bytes. Calls come
	// one at a time from one goroutine; a slow OnOrder delays later orders,
	// so hand the order to the engine and return.
	OnOrder func(o *Order, raw []byte)
	// OnError, if set, hears of what goes wrong in the background: a lost
	// connection, a refused subscription, a refused order.
	OnError func(error)
	// OnConnect, if set, is called after each reconnection once the upgrade
	// topic is subscribed again: the place to report the running version,
	// which the platform wants before it sends an order (AliOS Things issue
	// #1805). It is not called for the first connection: Dial returns then,
	// and the caller reports when it is ready (the agent first finishes an
	// interrupted upgrade, so that the version it reports is the final one).
	OnConnect func()
	// OnStatement, if set, receives each release statement otaserve
	// publishes for the device's product, parsed but not verified (the
	// order key is the caller's); the client subscribes to ReleaseTopic
	// for it. It runs on the connection's goroutine, which reads the
	// broker's packets: hand the statement over and return.
	OnStatement func(*Statement)
	// OnKeySets, if set, receives the documents of each key set message
	// on the product's KeySetTopic (ParseKeySetChain), unchecked; it runs
	// on the connection's goroutine like OnStatement.
	OnKeySets func(docs [][]byte)
}

// Client is a device's connection to the cloud. It reconnects by itself and
// subscribes again after every connection. Its methods are safe for
// concurrent use.
type Client struct {
	cfg    Config
	log    *slog.Logger
	topics TopicSet
	mq     *mqtt.Client

	nextID atomic.Int64             // ids of inform and request messages
	cur    atomic.Pointer[orderRef] // the order progress belongs to

	ctx    context.Context // ends with Close, bounds background waits
	cancel context.CancelFunc
	// Orders wait in queue, in arrival order, for the worker: the
	// connection's handler appends and returns at once, so
	// acknowledgements never wait for an order being carried out, and the
	// worker takes them in the order they came. The worker runs only while
	// orders wait (working), so an idle device costs no goroutine.
	qmu       sync.Mutex
	queue     [][]byte
	working   bool
	workers   sync.WaitGroup
	done      chan struct{} // closed by Close
	firstSub  chan error    // the first subscription's outcome, for Dial
	dialed    atomic.Bool   // set once the first outcome is sent
	closeOnce sync.Once

	seenMu   sync.Mutex
	seen     map[string]bool
	seenRing []string

	// frozen makes every version report say params.possiblyFrozen,
	// unsigned params.unsignedOrders.
	frozen, unsigned atomic.Bool
	// keySets holds each module's key set version (SetKeySetVersion),
	// imageHashes each module's running image hash (SetImageHash).
	keySets, imageHashes sync.Map
}

// SetImageHash makes module's version reports from now on carry the hash
// of the image it runs (InformParams.ImageHash, lower-case hex); "" stops
// it. A hash that CheckImageHash refuses is an error.
func (c *Client) SetImageHash(module, hash string) error {
	if err := CheckImageHash("image hash", hash); err != nil {
		return fmt.Errorf("cloud: %w", err)
	}
	c.imageHashes.Store(ModuleName(module), hash)
	return nil
}

func (c *Client) imageHash(module string) string {
	v, _ := c.imageHashes.Load(ModuleName(module))
	s, _ := v.(string)
	return s
}

// SetKeySetVersion makes module's version reports from now on carry the
// version of its key set (InformParams.KeySet).
func (c *Client) SetKeySetVersion(module string, v uint64) { c.keySets.Store(ModuleName(module), v) }

func (c *Client) keySetVersion(module string) uint64 {
	v, _ := c.keySets.Load(ModuleName(module))
	n, _ := v.(uint64)
	return n
}

// SetPossiblyFrozen makes the version reports from now on say whether the
// device may be frozen (InformParams.PossiblyFrozen).
func (c *Client) SetPossiblyFrozen(frozen bool) { c.frozen.Store(frozen) }

// SetUnsignedOrders makes the version reports from now on say whether the
// device takes unsigned orders (InformParams.UnsignedOrders).
func (c *Client) SetUnsignedOrders(unsigned bool) { c.unsigned.Store(unsigned) }

type orderRef struct {
	id     int64
	module string
}

// Dial signs in to the broker, subscribes to the device's upgrade topic and
// returns once both are done, or when ctx ends. The connection then lives
// until Close.
func Dial(ctx context.Context, cfg Config) (*Client, error) {
	c, err := newClient(cfg)
	if err != nil {
		return nil, err
	}
	if err := c.mq.Connect(ctx); err != nil {
		c.Close()
		return nil, fmt.Errorf("cloud: connect to %s as %s/%s: %w", cfg.Broker, cfg.Identity.ProductKey, cfg.Identity.DeviceName, err)
	}
	select {
	case err := <-c.firstSub:
		if err != nil {
			c.Close()
			return nil, err
		}
	case <-ctx.Done():
		c.Close()
		return nil, fmt.Errorf("cloud: subscribe %s: %w", c.topics.Upgrade, ctx.Err())
	}
	return c, nil
}

// newClient checks cfg and builds the Client and its MQTT client, without
// connecting.
func newClient(cfg Config) (*Client, error) {
	if cfg.OnOrder == nil {
		return nil, errors.New("cloud: Config.OnOrder is nil; set it to the function that takes orders to the engine")
	}
	brokers, useTLS, err := parseBrokers(cfg.Broker)
	if err != nil {
		return nil, err
	}
	if cfg.KeepAlive == 0 {
		cfg.KeepAlive = DefaultKeepAlive
	}
	if cfg.KeepAlive < time.Second || (!cfg.AnyKeepAlive && (cfg.KeepAlive < MinKeepAlive || cfg.KeepAlive > MaxKeepAlive)) {
		return nil, fmt.Errorf("cloud: Config.KeepAlive is %v; the platform accepts %v to %v", cfg.KeepAlive, MinKeepAlive, MaxKeepAlive)
	}
	if cfg.ConnectTimeout <= 0 {
		cfg.ConnectTimeout = mqtt.DefaultConnectTimeout
	}
	if cfg.MaxReconnectInterval <= 0 {
		cfg.MaxReconnectInterval = time.Minute
	}
	if (cfg.CertFile == "") != (cfg.KeyFile == "") {
		return nil, errors.New("cloud: Config.CertFile and KeyFile go together: give the client certificate and its key, or neither")
	}
	if cfg.RootCAs != nil && cfg.CAFile != "" {
		return nil, errors.New("cloud: Config.RootCAs and CAFile both name the broker's CAs: give one")
	}
	if cfg.CertFile != "" && !useTLS {
		return nil, fmt.Errorf("cloud: Config.CertFile needs TLS, but Config.Broker %q is plain TCP: use ssl://", cfg.Broker)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	// The credentials are made again before every reconnection: a broker
	// that checks the timestamp's freshness refuses the first one's once
	// its window has passed.
	credentials := func() (Credentials, error) {
		if cfg.CertFile != "" && cfg.Identity.DeviceSecret == "" {
			if err := checkIdentity(cfg.Identity.ProductKey, cfg.Identity.DeviceName); err != nil {
				return Credentials{}, err
			}
			// The certificate names the device; the client id is only
			// the session's name: the device's own when it has one.
			cid := cfg.Sign.ClientID
			if cid == "" {
				cid = cfg.Identity.ProductKey + "." + cfg.Identity.DeviceName
			}
			return Credentials{ClientID: cid, Username: cfg.Identity.DeviceName + "&" + cfg.Identity.ProductKey}, nil
		}
		sign := cfg.Sign
		sign.TLS = useTLS
		if sign.Form == FormDoc && sign.Timestamp == "" {
			sign.Timestamp = strconv.FormatInt(cfg.Now().UnixMilli(), 10)
		}
		return SignIn(cfg.Identity, sign)
	}
	// Signed once here so that a bad identity fails Dial before any
	// connection; again before each connection attempt.
	if _, err := credentials(); err != nil {
		return nil, fmt.Errorf("cloud: %w", err)
	}
	var tc *tls.Config
	if useTLS {
		if tc, err = tlsConfig(cfg); err != nil {
			return nil, err
		}
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	c := &Client{
		ctx:      ctx,
		cancel:   cancel,
		cfg:      cfg,
		log:      log.With("device", cfg.Identity.ProductKey+"/"+cfg.Identity.DeviceName),
		topics:   Topics(cfg.Identity.ProductKey, cfg.Identity.DeviceName),
		done:     make(chan struct{}),
		firstSub: make(chan error, 1),
		seen:     map[string]bool{},
	}
	// Every broker is tried in order at every connection, so a device
	// whose broker node died reconnects to the next.
	c.mq, err = mqtt.New(mqtt.Config{
		Brokers:              brokers,
		TLS:                  tc,
		Credentials:          func() (mqtt.Credentials, error) { cr, err := credentials(); return mqtt.Credentials(cr), err },
		KeepAlive:            cfg.KeepAlive,
		ConnectTimeout:       cfg.ConnectTimeout,
		MaxReconnectInterval: cfg.MaxReconnectInterval,
		// A persistent session keeps QoS 1 orders sent while the link was
		// down; we still subscribe on every connection (onConnect), since
		// a broker that restarted has no session to resume.
		CleanSession: false,
		// The largest message the device takes is a key set chain.
		MaxPacketSize: MaxKeySetChain + 64<<10,
		OnConnect:     c.onConnect,
		OnDropped: func(topic string, err error) {
			c.log.Warn("message dropped", "topic", topic, "err", err)
			c.report(fmt.Errorf("cloud: message on %s dropped: %w", topic, err))
		},
		OnConnectionLost: func(err error) {
			c.log.Warn("connection lost; reconnecting", "err", err)
			c.report(fmt.Errorf("cloud: connection lost: %w", err))
		},
	})
	if err != nil {
		cancel()
		return nil, fmt.Errorf("cloud: %w", err)
	}
	return c, nil
}

// parseBrokers splits Config.Broker into its URLs and returns their
// host:port, saying whether they are TLS: all of them or none, since the
// sign-in's securemode says which and is signed.
func parseBrokers(list string) (brokers []string, useTLS bool, err error) {
	for i, raw := range strings.Split(list, ",") {
		raw = strings.TrimSpace(raw)
		u, err := url.Parse(raw)
		if err != nil || u.Host == "" {
			return nil, false, fmt.Errorf("cloud: Config.Broker %q: want a URL such as tcp://host:1883 or ssl://host:8883, or several separated by commas", raw)
		}
		var t bool
		switch u.Scheme {
		case "tcp", "mqtt":
		case "ssl", "tls", "mqtts":
			t = true
		default:
			return nil, false, fmt.Errorf("cloud: Config.Broker %q: scheme %q; want tcp, ssl, tls or mqtts", raw, u.Scheme)
		}
		if i > 0 && t != useTLS {
			return nil, false, fmt.Errorf("cloud: Config.Broker %q: mixes TLS and plain TCP; the sign-in claims one (securemode), so give every broker the same scheme", list)
		}
		useTLS = t
		host := u.Host
		if u.Port() == "" {
			// MQTT's ports (IANA): 1883 plain, 8883 over TLS.
			port := "1883"
			if t {
				port = "8883"
			}
			host = net.JoinHostPort(u.Hostname(), port)
		}
		brokers = append(brokers, host)
	}
	return brokers, useTLS, nil
}

func tlsConfig(cfg Config) (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: cfg.InsecureSkipVerify, RootCAs: cfg.RootCAs}
	if cfg.CAFile != "" {
		pem, err := os.ReadFile(cfg.CAFile)
		if err != nil {
			return nil, fmt.Errorf("cloud: Config.CAFile: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("cloud: Config.CAFile %s: no PEM certificate in it", cfg.CAFile)
		}
		tc.RootCAs = pool
	}
	if cfg.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(cfg.CertFile, cfg.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("cloud: Config.CertFile %s, KeyFile %s: %w", cfg.CertFile, cfg.KeyFile, err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}

// subscribeStatements subscribes to the product's release topic.
func (c *Client) subscribeStatements(ctx context.Context) error {
	return c.subscribeOtaport(ctx, c.topics.Release, func(b []byte) error {
		s, err := ParseStatement(b)
		if err == nil {
			c.cfg.OnStatement(s)
		}
		return err
	})
}

// subscribeKeySets subscribes to the product's key set topic.
func (c *Client) subscribeKeySets(ctx context.Context) error {
	return c.subscribeOtaport(ctx, c.topics.KeySet, func(b []byte) error {
		docs, err := ParseKeySetChain(b)
		if err == nil {
			c.cfg.OnKeySets(docs)
		}
		return err
	})
}

// subscribeOtaport subscribes to one of otaport's own topics; handle's
// error on a message is logged and reported.
func (c *Client) subscribeOtaport(ctx context.Context, topic string, handle func([]byte) error) error {
	err := c.mq.Subscribe(ctx, topic, qos, func(m mqtt.Message) {
		if err := handle(m.Payload); err != nil {
			c.log.Warn("message refused", "topic", topic, "err", err)
			c.report(fmt.Errorf("cloud: %w", err))
		}
	})
	if err != nil {
		return fmt.Errorf("cloud: %w", err)
	}
	return nil
}

// onConnect runs on a goroutine of its own after every connection: it
// subscribes to the upgrade topic, then tells Dial (the first time) or
// OnConnect (every later time).
func (c *Client) onConnect() {
	ctx, cancel := context.WithTimeout(c.ctx, c.cfg.ConnectTimeout)
	defer cancel()
	err := c.mq.Subscribe(ctx, c.topics.Upgrade, qos, func(m mqtt.Message) { c.enqueue(m.Payload) })
	if err != nil {
		err = fmt.Errorf("cloud: %w", err)
		c.log.Error("subscription failed", "err", err)
	} else {
		c.log.Info("connected and subscribed", "topic", c.topics.Upgrade)
	}
	if err == nil && c.cfg.OnStatement != nil {
		// Not fatal: a broker that refuses it (the platform's) leaves the
		// device without statements, which its freeze watch reports.
		if serr := c.subscribeStatements(ctx); serr != nil {
			c.log.Warn("no release statements", "err", serr)
			c.report(serr)
		}
	}
	if err == nil && c.cfg.OnKeySets != nil {
		// Not fatal either: the platform publishes no key sets, and a
		// device without them keeps its provisioned keys.
		if serr := c.subscribeKeySets(ctx); serr != nil {
			c.log.Warn("no key sets", "err", serr)
			c.report(serr)
		}
	}
	if c.dialed.CompareAndSwap(false, true) {
		c.firstSub <- err // Dial reports this one
		return
	}
	if err != nil {
		c.report(err)
		// Connected but not subscribed, the device would hear no order
		// until the link broke by itself, which a live link never does.
		// A link lost meanwhile is already being replaced; otherwise
		// this one goes, and the next connection subscribes again (with
		// the reconnection's back-off, for a broker that refuses).
		if !errors.Is(err, mqtt.ErrConnectionLost) && !errors.Is(err, mqtt.ErrClosed) {
			c.mq.Drop(err)
		}
		return
	}
	if c.cfg.OnConnect != nil {
		c.cfg.OnConnect()
	}
}

// maxQueuedOrders bounds the orders waiting for the worker: far more than
// a campaign sends one device; past it an order is dropped and reported.
const maxQueuedOrders = 64

// enqueue queues an order for the worker, starting it if it is not
// running; it never blocks.
func (c *Client) enqueue(raw []byte) {
	c.qmu.Lock()
	if len(c.queue) >= maxQueuedOrders {
		c.qmu.Unlock()
		c.log.Warn("order dropped: too many orders waiting", "waiting", maxQueuedOrders)
		c.report(fmt.Errorf("cloud: order dropped: %d orders already waiting", maxQueuedOrders))
		return
	}
	c.queue = append(c.queue, raw)
	if !c.working {
		// enqueue runs on the connection's goroutine, which Close
		// waits for before it waits for the workers: no Add follows
		// that Wait.
		c.working = true
		c.workers.Add(1)
		go c.work()
	}
	c.qmu.Unlock()
}

// dequeue takes the oldest waiting order; when there is none it marks the
// worker stopped, under the same lock, so that enqueue starts another.
func (c *Client) dequeue() ([]byte, bool) {
	c.qmu.Lock()
	defer c.qmu.Unlock()
	if len(c.queue) == 0 {
		c.working = false
		c.queue = nil // an idle device keeps no queue
		return nil, false
	}
	raw := c.queue[0]
	c.queue = c.queue[1:]
	return raw, true
}

// work takes orders one at a time, in arrival order, so that OnOrder calls
// never overlap and duplicates are seen as they came; it returns once the
// queue is empty.
func (c *Client) work() {
	defer c.workers.Done()
	for raw, ok := c.dequeue(); ok; raw, ok = c.dequeue() {
		select {
		case <-c.done:
			c.qmu.Lock()
			c.working, c.queue = false, nil
			c.qmu.Unlock()
			return
		default:
		}
		c.handle(raw)
	}
}

func (c *Client) handle(raw []byte) {
	o, err := ParseOrder(raw)
	if err != nil {
		key := fmt.Sprintf("raw:%x", sha256.Sum256(raw))
		if !c.remember(key) {
			c.log.Debug("malformed order again; ignored")
			return
		}
		id := bestEffortID(raw)
		c.log.Warn("order refused", "id", id, "err", err)
		c.report(fmt.Errorf("cloud: order refused: %w", err))
		ctx, cancel := context.WithTimeout(c.ctx, c.cfg.ConnectTimeout)
		defer cancel()
		p := NewFailure(id, StepUpgradeFailed, clipDesc(err.Error()))
		p.Params.Module = ModuleField(c.cfg.Module)
		if m := bestEffortModule(raw); m != "" {
			// The failure is the module's the order named, when it
			// named one that can be read.
			p.Params.Module = ModuleField(m)
		}
		if err := c.publish(ctx, c.topics.Progress, p); err != nil {
			c.report(err)
		}
		return
	}
	// An order is the same order as one before when it has its id, or,
	// when otaserve signed it, its signature: a forgery that takes the id
	// of the next genuine order cannot then make the device drop it (the
	// agent refuses the forgery; its signature is not the genuine one's).
	key := "id:" + strconv.FormatInt(o.ID, 10)
	switch {
	case o.Data.Otaport != nil && o.Data.Otaport.Signature != "":
		key = "sig:" + o.Data.Otaport.Signature
	case o.ID == 0:
		key = fmt.Sprintf("raw:%x", sha256.Sum256(raw))
	}
	if !c.remember(key) {
		c.log.Info("duplicate order ignored", "id", o.ID, "version", o.Data.Version)
		return
	}
	c.cur.Store(&orderRef{id: o.ID, module: o.Data.Module})
	c.log.Info("order received", "id", o.ID, "version", o.Data.Version, "size", o.Data.Size)
	c.cfg.OnOrder(o, raw)
}

// remember records key and reports whether it is new; it keeps the last
// seenOrders keys.
func (c *Client) remember(key string) bool {
	c.seenMu.Lock()
	defer c.seenMu.Unlock()
	if c.seen[key] {
		return false
	}
	c.seen[key] = true
	c.seenRing = append(c.seenRing, key)
	if len(c.seenRing) > seenOrders {
		delete(c.seen, c.seenRing[0])
		c.seenRing = c.seenRing[1:]
	}
	return true
}

// bestEffortID digs the id out of an order that failed to parse, so the
// failure report can name it.
func bestEffortID(raw []byte) int64 {
	if len(raw) > MaxOrderSize {
		return 0
	}
	var w struct {
		ID json.RawMessage `json:"id"`
	}
	if json.Unmarshal(raw, &w) != nil {
		return 0
	}
	id, _ := parseID(w.ID)
	return id
}

// bestEffortModule digs data.module out of an order that failed to parse;
// "" when there is none or it is not a module name.
func bestEffortModule(raw []byte) string {
	if len(raw) > MaxOrderSize {
		return ""
	}
	var w struct {
		Data struct {
			Module string `json:"module"`
		} `json:"data"`
	}
	if json.Unmarshal(bytes.TrimRight(raw, "\x00 \t\r\n"), &w) != nil || CheckModule(w.Data.Module) != nil {
		return ""
	}
	return w.Data.Module
}

// Inform reports the running version on the inform topic.
func (c *Client) Inform(ctx context.Context, version string) error {
	return c.InformModule(ctx, c.cfg.Module, version)
}

// InformModule reports the running version of one module of a device made
// of several (one inform per module, as the Link SDK's
// aiot_ota_report_version_ext sends them); "" or DefaultModule is the
// default one, sent without a module field.
func (c *Client) InformModule(ctx context.Context, module, version string) error {
	return c.InformNonce(ctx, module, version, "")
}

// InformNonce is InformModule with a nonce (NewNonce) that the next order
// must echo; "" sends none, as the platform's devices do.
func (c *Client) InformNonce(ctx context.Context, module, version, nonce string) error {
	if err := checkText("version", version, maxVersionLen, true); err != nil {
		return fmt.Errorf("cloud: inform: %w", err)
	}
	if err := checkText("module", module, maxModuleLen, false); err != nil {
		return fmt.Errorf("cloud: inform: %w", err)
	}
	if err := checkNonce("nonce", nonce); err != nil {
		return fmt.Errorf("cloud: inform: %w", err)
	}
	return c.publish(ctx, c.topics.Inform, Inform{ID: c.nextID.Add(1), Params: InformParams{Version: version, Module: ModuleField(module), Nonce: nonce,
		PossiblyFrozen: c.frozen.Load(), UnsignedOrders: c.unsigned.Load(), KeySet: c.keySetVersion(module),
		ImageHash: c.imageHash(module)}})
}

// Report sends a progress message as it is: the caller names the order and
// the module (ModuleField of its name). A device of several modules, whose
// modules carry out orders at the same time, reports with it rather than
// with Progress, which knows only the last order.
func (c *Client) Report(ctx context.Context, p Progress) error {
	if !p.Params.Step.valid() {
		return fmt.Errorf("cloud: progress: step %q: want StepPercent(0..100) or a failure step", p.Params.Step)
	}
	if err := checkText("module", p.Params.Module, maxModuleLen, false); err != nil {
		return fmt.Errorf("cloud: progress: %w", err)
	}
	p.Params.Desc = clipDesc(p.Params.Desc)
	return c.publish(ctx, c.topics.Progress, p)
}

// Request asks the cloud for the order pending for this device, reporting
// the running version; the order, if any, arrives through OnOrder.
func (c *Client) Request(ctx context.Context, version string) error {
	if err := checkText("version", version, maxVersionLen, true); err != nil {
		return fmt.Errorf("cloud: request: %w", err)
	}
	return c.publish(ctx, c.topics.Request, Inform{ID: c.nextID.Add(1), Params: InformParams{Version: version, Module: c.cfg.Module}})
}

// Progress reports the progress of the current order (the last one passed
// to OnOrder): step is StepPercent(n) or a failure step, desc a short
// reason for the operator.
func (c *Client) Progress(ctx context.Context, step Step, desc string) error {
	if !step.valid() {
		return fmt.Errorf("cloud: progress: step %q: want StepPercent(0..100) or a failure step", step)
	}
	p := Progress{Params: ProgressParams{Step: step, Desc: clipDesc(desc), Module: c.cfg.Module}}
	if ref := c.cur.Load(); ref != nil {
		p.ID = ref.id
		if ref.module != "" {
			p.Params.Module = ref.module
		}
	}
	return c.publish(ctx, c.topics.Progress, p)
}

// clipDesc keeps a description within what the platform's console shows
// and what a device buffer holds.
func clipDesc(s string) string {
	const n = 256
	if len(s) <= n {
		return s
	}
	return s[:n]
}

// Topics returns the device's OTA topics.
func (c *Client) Topics() TopicSet { return c.topics }

// IsConnected reports whether the link is up now.
func (c *Client) IsConnected() bool { return c.mq.IsConnected() }

func (c *Client) publish(ctx context.Context, topic string, v any) error {
	b, err := Marshal(v)
	if err != nil {
		return fmt.Errorf("cloud: publish %s: %w", topic, err)
	}
	select {
	case <-c.done:
		return fmt.Errorf("cloud: publish %s: client closed", topic)
	default:
	}
	if err := c.mq.Publish(ctx, topic, qos, b); err != nil {
		return fmt.Errorf("cloud: %w", err)
	}
	return nil
}

// Close disconnects and stops the client's goroutines, after a running
// OnOrder returns. It is safe to call more than once.
func (c *Client) Close() error {
	c.closeOnce.Do(func() {
		close(c.done)
		c.cancel()
		c.mq.Close()
		c.workers.Wait()
	})
	return nil
}

func (c *Client) report(err error) {
	if c.cfg.OnError != nil {
		c.cfg.OnError(err)
	}
}
