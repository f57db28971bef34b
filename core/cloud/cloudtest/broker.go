// Package cloudtest is test support for the device side of the protocol: an
// MQTT broker inside the test's process that signs devices in as the
// platform does (cloud.VerifyCredentials) and operators by name and
// password, with Publish and Subscribe from inside the process.
//
// It is a mochi-mqtt server with a sign-in hook and nothing else: no topic
// ACL, no session naming. It is not otaport's broker (fleet/broker), which
// core does not depend on; that broker has its own tests. Only test files
// import it.
package cloudtest

import (
	"crypto/subtle"
	"crypto/tls"
	"log/slog"
	"net"
	"sync"
	"testing"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/otaport/otaport/core/cloud"
)

// Config configures a Broker.
type Config struct {
	// Addr is the TCP address to listen on; "" means 127.0.0.1:0, a free
	// port (see Broker.Addr).
	Addr string
	// TLS, when set, makes the listener TLS.
	TLS *tls.Config
	// Lookup returns the secret of a registered device; devices it does
	// not know cannot connect.
	Lookup func(pk, dn string) (secret string, ok bool)
	// Operators maps user names to passwords of clients that are not
	// devices (a test's own MQTT client).
	Operators map[string]string
}

// Broker is a running MQTT broker, closed when the test ends.
type Broker struct {
	srv   *mqtt.Server
	addr  string
	close sync.Once
	mu    sync.Mutex
	subs  int
}

// Start starts a broker for the test t; it fails t if the broker cannot
// listen.
func Start(t testing.TB, cfg Config) *Broker {
	t.Helper()
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		t.Fatalf("cloudtest: listen on %s: %v", cfg.Addr, err)
	}
	addr := ln.Addr().String()
	if cfg.TLS != nil {
		ln = tls.NewListener(ln, cfg.TLS)
	}
	srv := mqtt.New(&mqtt.Options{InlineClient: true, Logger: slog.New(slog.DiscardHandler)})
	if err := srv.AddHook(&signIn{lookup: cfg.Lookup, operators: cfg.Operators}, nil); err != nil {
		t.Fatalf("cloudtest: add the sign-in hook: %v", err)
	}
	if err := srv.AddListener(listeners.NewNet("cloudtest", ln)); err != nil {
		ln.Close()
		t.Fatalf("cloudtest: add listener: %v", err)
	}
	if err := srv.Serve(); err != nil {
		t.Fatalf("cloudtest: serve: %v", err)
	}
	b := &Broker{srv: srv, addr: addr}
	t.Cleanup(func() { b.Close() })
	return b
}

// Addr is the host:port the broker listens on.
func (b *Broker) Addr() string { return b.addr }

// Close disconnects every client and stops listening; the address can be
// listened on again. Closing twice is harmless.
func (b *Broker) Close() error {
	var err error
	b.close.Do(func() { err = b.srv.Close() })
	return err
}

// Publish sends payload to topic at QoS 1 from inside the process.
func (b *Broker) Publish(topic string, payload []byte) error {
	return b.srv.Publish(topic, payload, false, 1)
}

// Subscribe calls fn with every message on a topic matching filter (MQTT
// wildcards allowed), on the publisher's goroutine: fn must not block. The
// returned function ends the subscription.
func (b *Broker) Subscribe(filter string, fn func(topic string, payload []byte)) (unsubscribe func(), err error) {
	b.mu.Lock()
	b.subs++
	id := b.subs
	b.mu.Unlock()
	handler := func(_ *mqtt.Client, _ packets.Subscription, pk packets.Packet) { fn(pk.TopicName, pk.Payload) }
	if err := b.srv.Subscribe(filter, id, handler); err != nil {
		return nil, err
	}
	var once sync.Once
	return func() { once.Do(func() { _ = b.srv.Unsubscribe(filter, id) }) }, nil
}

// signIn admits operators by password and devices by the platform's
// sign-in, and then lets them use any topic.
type signIn struct {
	mqtt.HookBase
	lookup    func(pk, dn string) (string, bool)
	operators map[string]string
}

func (h *signIn) ID() string { return "cloudtest-sign-in" }

func (h *signIn) Provides(b byte) bool {
	return b == mqtt.OnConnectAuthenticate || b == mqtt.OnACLCheck
}

func (h *signIn) OnConnectAuthenticate(cl *mqtt.Client, pk packets.Packet) bool {
	if pass, ok := h.operators[string(pk.Connect.Username)]; ok {
		return subtle.ConstantTimeCompare(pk.Connect.Password, []byte(pass)) == 1
	}
	if h.lookup == nil {
		return false
	}
	_, err := cloud.VerifyCredentials(pk.Connect.ClientIdentifier, string(pk.Connect.Username), pk.Connect.Password, h.lookup)
	return err == nil
}

func (h *signIn) OnACLCheck(*mqtt.Client, string, bool) bool { return true }
