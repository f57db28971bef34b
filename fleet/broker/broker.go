// Package broker is otaport's embedded MQTT broker: a mochi-mqtt server with
// the platform's device sign-in, a separate operator sign-in, and a topic ACL
// that keeps every device to its own OTA topics.
//
// Devices connect as they would to the Alibaba Cloud IoT platform (see
// cloud.SignIn); the cloud side of otaport publishes orders and reads
// reports through the in-process Publish and Subscribe, or connects as an
// operator over the network. The broker does not store anything: sessions
// live in memory, and the fleet keeps the state of campaigns.
package broker

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"
)

// Config configures a Broker.
type Config struct {
	// Addr is the TCP address to listen on, "127.0.0.1:1883" for instance;
	// port 0 picks a free port (see Broker.Addr).
	Addr string
	// TLS, when set, makes the listener TLS (the platform's securemode 2).
	TLS *tls.Config
	// DeviceCAs, with TLS, lets a device sign in by a client certificate
	// one of them issued instead of a password: its subject's common name
	// is the device, "{deviceName}&{productKey}" as in the user name of
	// the password sign-in (what Mosquitto's use_identity_as_username
	// takes too). Devices without a certificate sign in with their secret.
	DeviceCAs *x509.CertPool
	// PlainAddr, with TLS, adds a listener without TLS at that address, for
	// devices not yet moved to TLS: a migration period that ends when the
	// operator removes it. Sign-ins there must claim securemode 3 and are
	// logged as warnings.
	PlainAddr string
	// Lookup returns the secret of a registered device. Devices it does not
	// know cannot connect.
	Lookup func(pk, dn string) (secret string, ok bool)
	// Operators maps operator user names to passwords. Operators may publish
	// and subscribe anywhere under /ota/device/. A name may not contain '&',
	// which would make it look like a device's "{dn}&{pk}".
	Operators map[string]string
	// Logger receives the broker's logs; nil discards them.
	Logger *slog.Logger
	// MaxPacketSize bounds every MQTT packet a client may send; 0 means
	// 64 KiB, far above any OTA message.
	MaxPacketSize uint32
	// SignIn is what a device's sign-in must show beyond its signature:
	// the transport it claims, a fresh timestamp, and few failures.
	SignIn SignInPolicy
	// OnDeviceSignIn, when set, is called after each device signs in, with
	// whether it came in on the plain listener (PlainAddr): the fleet keeps
	// it, to name the devices a broker without that listener leaves out.
	OnDeviceSignIn func(pk, dn string, plain bool)
}

// Broker is a running MQTT broker. Its methods are safe for concurrent use.
type Broker struct {
	cfg    Config
	log    *slog.Logger
	srv    *mqtt.Server
	hook   *accessHook
	subID  atomic.Int64
	mu     sync.Mutex
	ln     net.Listener
	plain  net.Listener // PlainAddr's, nil without
	closed bool
	stop   chan struct{} // closed by Close, ends the context watcher
}

// sessionExpiry is how long a disconnected device's session (its
// subscription and undelivered QoS 1 orders) is kept: a device that is off
// for longer subscribes again when it comes back, and the fleet resends
// what is still pending.
const sessionExpiry = 7 * 24 * 60 * 60

// New checks cfg and prepares a broker; Start makes it listen.
func New(cfg Config) (*Broker, error) {
	if cfg.Addr == "" {
		return nil, errors.New("broker: Addr is empty; set it to a listen address such as 127.0.0.1:1883")
	}
	if cfg.PlainAddr != "" && cfg.TLS == nil {
		return nil, errors.New("broker: PlainAddr without TLS; the one listener is plain already")
	}
	if cfg.DeviceCAs != nil && cfg.TLS == nil {
		return nil, errors.New("broker: DeviceCAs without TLS; client certificates need a TLS listener")
	}
	if cfg.Lookup == nil {
		return nil, errors.New("broker: Lookup is nil; set it to the device registry's secret lookup")
	}
	for user, pass := range cfg.Operators {
		if user == "" || strings.Contains(user, "&") {
			return nil, fmt.Errorf("broker: operator name %q: want a non-empty name without '&'", user)
		}
		if pass == "" {
			return nil, fmt.Errorf("broker: operator %q has an empty password; set one", user)
		}
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.MaxPacketSize == 0 {
		cfg.MaxPacketSize = 64 << 10
	}
	caps := mqtt.NewDefaultServerCapabilities()
	caps.MaximumPacketSize = cfg.MaxPacketSize
	caps.MaximumSessionExpiryInterval = sessionExpiry
	caps.MaximumQos = 1         // the platform offers QoS 0 and 1 only
	caps.SharedSubAvailable = 0 // "$share/…" would let a filter dodge the ACL's exact match
	// Each client's queue of packets waiting to be written is a channel
	// allocated whole at sign-in: the default 8,192 entries were 64 KiB of
	// otaserve's memory per connected device, for a device that is sent an
	// order, a release statement and a key set. A client 256 packets
	// behind is not reading; what overflows is dropped and counted
	// (otaserve_mqtt_messages_dropped_total), and a device gets its order again
	// when it reports its version.
	caps.MaximumClientWritesPending = maxClientWritesPending
	srv := mqtt.New(&mqtt.Options{
		Capabilities: caps,
		InlineClient: true,
		Logger:       log.With("component", "mqtt"),
	})
	hook := newAccessHook(NewGate(cfg.Lookup, cfg.Operators, cfg.SignIn), cfg.TLS != nil, log)
	hook.onDevice = cfg.OnDeviceSignIn
	if err := srv.AddHook(hook, nil); err != nil {
		return nil, fmt.Errorf("broker: add access hook: %w", err)
	}
	return &Broker{cfg: cfg, log: log, srv: srv, hook: hook, stop: make(chan struct{})}, nil
}

// maxClientWritesPending bounds each client's queue of outgoing packets (see
// New).
const maxClientWritesPending = 256

// Start listens on Config.Addr and serves clients until Close, or until ctx
// is done.
func (b *Broker) Start(ctx context.Context) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed || b.ln != nil {
		return errors.New("broker: Start called twice or after Close")
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", b.cfg.Addr)
	if err != nil {
		return fmt.Errorf("broker: listen on %s: %w", b.cfg.Addr, err)
	}
	if b.cfg.TLS != nil {
		tc := b.cfg.TLS.Clone()
		if b.cfg.DeviceCAs != nil {
			// A certificate is one way in, the secret the other: ask
			// for one, check it when given.
			tc.ClientCAs, tc.ClientAuth = b.cfg.DeviceCAs, tls.VerifyClientCertIfGiven
		}
		ln = tls.NewListener(ln, tc)
	}
	if err := b.srv.AddListener(listeners.NewNet(listenerID, ln)); err != nil {
		ln.Close()
		return fmt.Errorf("broker: add listener: %w", err)
	}
	var plain net.Listener
	if b.cfg.PlainAddr != "" {
		if plain, err = lc.Listen(ctx, "tcp", b.cfg.PlainAddr); err != nil {
			ln.Close()
			return fmt.Errorf("broker: listen without TLS on %s: %w", b.cfg.PlainAddr, err)
		}
		if err := b.srv.AddListener(listeners.NewNet(plainListenerID, plain)); err != nil {
			ln.Close()
			plain.Close()
			return fmt.Errorf("broker: add listener: %w", err)
		}
	}
	if err := b.srv.Serve(); err != nil {
		ln.Close()
		if plain != nil {
			plain.Close()
		}
		return fmt.Errorf("broker: serve: %w", err)
	}
	b.ln, b.plain = ln, plain
	b.log.Info("broker listening", "addr", ln.Addr().String(), "tls", b.cfg.TLS != nil)
	go func() {
		select {
		case <-ctx.Done():
			_ = b.Close()
		case <-b.stop:
		}
	}()
	return nil
}

// Listener ids, as mochi reports them in a client's connection.
const (
	listenerID      = "otaport"
	plainListenerID = "otaport-plain"
)

// SignedInPlain reports whether device pk/dn is signed in on the listener
// without TLS (Config.PlainAddr), so what it is sent must do without TLS
// too.
func (b *Broker) SignedInPlain(pk, dn string) bool { return b.hook.plain(pk, dn) }

// PlainAddr is the address of the listener without TLS (Config.PlainAddr);
// nil without one, before Start or after Close.
func (b *Broker) PlainAddr() net.Addr {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.plain == nil || b.closed {
		return nil
	}
	return b.plain.Addr()
}

// Addr is the address the broker listens on, with the real port when
// Config.Addr asked for port 0; nil before Start.
func (b *Broker) Addr() net.Addr {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.ln == nil || b.closed {
		return nil
	}
	return b.ln.Addr()
}

// Close disconnects every client and stops listening. A Broker cannot be
// started again; make a new one (on the same address if need be).
func (b *Broker) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	started := b.ln != nil
	close(b.stop)
	b.mu.Unlock()
	if !started {
		return nil
	}
	if err := b.srv.Close(); err != nil {
		return fmt.Errorf("broker: close: %w", err)
	}
	return nil
}

// Publish sends payload to topic at QoS 1 from inside the process, as an
// operator would but without a connection. The cloud side uses it to send
// orders (encode them with cloud.Marshal).
func (b *Broker) Publish(ctx context.Context, topic string, payload []byte) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := b.srv.Publish(topic, payload, false, 1); err != nil {
		return fmt.Errorf("broker: publish %s: %w", topic, err)
	}
	return nil
}

// PublishRetained is Publish with the retain flag: the broker keeps the
// message and hands it to every client that subscribes later.
func (b *Broker) PublishRetained(ctx context.Context, topic string, payload []byte) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := b.srv.Publish(topic, payload, true, 1); err != nil {
		return fmt.Errorf("broker: publish %s: %w", topic, err)
	}
	return nil
}

// Subscribe calls fn with every message published on a topic matching
// filter (MQTT wildcards allowed), from inside the process. fn runs on the
// publisher's goroutine: it must not block. The returned function ends the
// subscription.
func (b *Broker) Subscribe(filter string, fn func(topic string, payload []byte)) (unsubscribe func(), err error) {
	id := int(b.subID.Add(1))
	handler := func(_ *mqtt.Client, _ packets.Subscription, pk packets.Packet) {
		fn(pk.TopicName, pk.Payload)
	}
	if err := b.srv.Subscribe(filter, id, handler); err != nil {
		return nil, fmt.Errorf("broker: subscribe %s: %w", filter, err)
	}
	var once sync.Once
	return func() {
		once.Do(func() { _ = b.srv.Unsubscribe(filter, id) })
	}, nil
}

// Connected returns the devices signed in now, as "{pk}/{dn}", for status
// pages and tests.
func (b *Broker) Connected() []string {
	return b.hook.devices()
}

// Revoke disconnects device pk/dn if it is signed in, for a device that has
// just been deleted from the registry: Lookup no longer knows it, so its
// next sign-in is refused.
func (b *Broker) Revoke(pk, dn string) {
	for _, cl := range b.hook.clients(pk, dn) {
		// The error is the reason code sent, not a failure.
		_ = b.srv.DisconnectClient(cl, packets.ErrNotAuthorized)
		b.log.Info("device disconnected: deleted from the registry", "device", pk+"/"+dn)
	}
}

// Topics of the OTA protocol an operator may use: everything under it.
const operatorFilter = "/ota/device/#"

// operatorAllowed reports whether an operator may use topic (a name or a
// filter): only the OTA tree.
func operatorAllowed(topic string) bool {
	return topic == operatorFilter || strings.HasPrefix(topic, "/ota/device/")
}

// sessionID names a device's MQTT session after the device rather than
// after its client id: the client id carries a timestamp and the device's own
// id, so two connections of one device would otherwise hold two sessions.
// As on the platform, a device's new connection takes over its old one.
// Operators get a separate prefix so that no name can collide.
func sessionID(pk, dn string) string { return "device/" + pk + "/" + dn }

func operatorSessionID(clientID string) string { return "operator/" + clientID }

// Stats are the broker's counters, for metrics.
type Stats struct {
	// Connections is the number of clients connected now, devices and
	// operators.
	Connections int64
	// MessagesReceived and MessagesSent count PUBLISH packets from and to
	// clients since the broker started.
	MessagesReceived int64
	MessagesSent     int64
	// MessagesDropped counts PUBLISH packets dropped because their client
	// had maxClientWritesPending waiting to be written.
	MessagesDropped int64
}

// Stats reads the broker's counters.
func (b *Broker) Stats() Stats {
	// Clone loads each counter atomically; the broker updates them from its
	// client goroutines.
	i := b.srv.Info.Clone()
	return Stats{Connections: i.ClientsConnected, MessagesReceived: i.MessagesReceived, MessagesSent: i.MessagesSent, MessagesDropped: i.MessagesDropped}
}
