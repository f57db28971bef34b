package broker_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/otaport/otaport/core/cloud"
	"github.com/otaport/otaport/fleet/broker"
	"github.com/otaport/otaport/fleet/pki"
)

// testTimeout bounds each wait so that a broken test fails instead of
// hanging; no test asserts on how long anything took.
const testTimeout = 20 * time.Second

var registry = map[string]string{
	"pk1/devA": "secret-A",
	"pk1/devB": "secret-B",
}

func lookup(pk, dn string) (string, bool) {
	s, ok := registry[pk+"/"+dn]
	return s, ok
}

const opUser, opPass = "fleet", "op-pass"

// signedAt is when the test devices sign (cloud.SignOptions.Timestamp), and
// the broker's clock unless a test moves it.
const signedAt = "1700000000000"

// clock is a broker clock a test moves by hand.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func newClock() *clock { return &clock{now: time.UnixMilli(1700000000000)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// testLogger logs to the test's output until the test ends: the broker's
// listener goroutines may log an accept error after Close returns, and a
// write to a finished test's output panics.
func testLogger(t *testing.T) *slog.Logger {
	w := &testWriter{w: t.Output()}
	t.Cleanup(w.close) // registered before the broker's Close, so it runs after it
	return slog.New(slog.NewTextHandler(w, nil))
}

type testWriter struct {
	mu   sync.Mutex
	w    io.Writer
	done bool
}

func (w *testWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.done {
		return len(p), nil
	}
	return w.w.Write(p)
}

func (w *testWriter) close() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.done = true
}

func startBroker(t *testing.T) *broker.Broker {
	t.Helper()
	return startBrokerWith(t, broker.SignInPolicy{Now: newClock().Now})
}

func startBrokerWith(t *testing.T, p broker.SignInPolicy) *broker.Broker {
	t.Helper()
	b, err := broker.New(broker.Config{Addr: "127.0.0.1:0", Lookup: lookup, Operators: map[string]string{opUser: opPass}, SignIn: p,
		Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

// conn is a raw MQTT client for tests, recording what it receives.
type conn struct {
	mq   paho.Client
	msgs chan paho.Message
	lost chan error
}

func dial(t *testing.T, b *broker.Broker, clientID, user, pass string, tweak func(*paho.ClientOptions)) (*conn, error) {
	t.Helper()
	c := &conn{msgs: make(chan paho.Message, 64), lost: make(chan error, 1)}
	o := paho.NewClientOptions().
		AddBroker("tcp://" + b.Addr().String()).
		SetClientID(clientID).SetUsername(user).SetPassword(pass).
		SetAutoReconnect(false).SetCleanSession(true).
		SetDefaultPublishHandler(func(_ paho.Client, m paho.Message) { c.msgs <- m }).
		SetConnectionLostHandler(func(_ paho.Client, err error) { c.lost <- err })
	if tweak != nil {
		tweak(o)
	}
	c.mq = paho.NewClient(o)
	tok := c.mq.Connect()
	if !tok.WaitTimeout(testTimeout) {
		t.Fatal("connect did not finish")
	}
	if err := tok.Error(); err != nil {
		return nil, err
	}
	t.Cleanup(func() { c.mq.Disconnect(0) })
	return c, nil
}

func dialDevice(t *testing.T, b *broker.Broker, dn, secret string, tweak func(*paho.ClientOptions)) (*conn, error) {
	t.Helper()
	cr, err := cloud.SignIn(cloud.Identity{ProductKey: "pk1", DeviceName: dn, DeviceSecret: secret}, cloud.SignOptions{Timestamp: signedAt})
	if err != nil {
		t.Fatal(err)
	}
	return dial(t, b, cr.ClientID, cr.Username, cr.Password, tweak)
}

func mustDevice(t *testing.T, b *broker.Broker, dn string) *conn {
	t.Helper()
	c, err := dialDevice(t, b, dn, registry["pk1/"+dn], nil)
	if err != nil {
		t.Fatalf("device %s: %v", dn, err)
	}
	return c
}

func mustOperator(t *testing.T, b *broker.Broker) *conn {
	t.Helper()
	c, err := dial(t, b, "otaserve", opUser, opPass, nil)
	if err != nil {
		t.Fatalf("operator: %v", err)
	}
	return c
}

// subscribe returns the broker's granted code for filter (0x80 = refused).
func (c *conn) subscribe(t *testing.T, filter string) byte {
	t.Helper()
	tok := c.mq.Subscribe(filter, 1, nil)
	if !tok.WaitTimeout(testTimeout) {
		t.Fatalf("subscribe %s did not finish", filter)
	}
	if err := tok.Error(); err != nil {
		t.Fatalf("subscribe %s: %v", filter, err)
	}
	return tok.(*paho.SubscribeToken).Result()[filter]
}

func (c *conn) publish(t *testing.T, topic string, qos byte, payload string) {
	t.Helper()
	tok := c.mq.Publish(topic, qos, false, payload)
	if !tok.WaitTimeout(testTimeout) {
		t.Fatalf("publish %s did not finish", topic)
	}
	if err := tok.Error(); err != nil {
		t.Fatalf("publish %s: %v", topic, err)
	}
}

func (c *conn) next(t *testing.T) paho.Message {
	t.Helper()
	select {
	case m := <-c.msgs:
		return m
	case <-time.After(testTimeout):
		t.Fatal("no message arrived")
		return nil
	}
}

func TestSignIn_Refusals(t *testing.T) {
	// Every refusal below counts against the address (twice: paho tries
	// MQTT 3.1 after 3.1.1 is refused); the limit is not what this tests.
	b := startBrokerWith(t, broker.SignInPolicy{Now: newClock().Now, MaxFailures: 100})
	cases := []struct {
		name                   string
		clientID, user, passwd string
	}{
		{"wrong device password", "", "", ""},
		{"unknown device", "", "", ""},
		{"operator wrong password", "x", opUser, "nope"},
		{"no credentials", "x", "", ""},
		{"operator name used as device", "pk1.devA|securemode=3,signmethod=hmacsha256|", opUser, opPass + "x"},
	}
	at := cloud.SignOptions{Timestamp: signedAt}
	good, _ := cloud.SignIn(cloud.Identity{ProductKey: "pk1", DeviceName: "devA", DeviceSecret: "secret-A"}, at)
	wrong, _ := cloud.SignIn(cloud.Identity{ProductKey: "pk1", DeviceName: "devA", DeviceSecret: "secret-B"}, at)
	ghost, _ := cloud.SignIn(cloud.Identity{ProductKey: "pk1", DeviceName: "ghost", DeviceSecret: "x"}, at)
	cases[0].clientID, cases[0].user, cases[0].passwd = wrong.ClientID, wrong.Username, wrong.Password
	cases[1].clientID, cases[1].user, cases[1].passwd = ghost.ClientID, ghost.Username, ghost.Password
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := dial(t, b, c.clientID, c.user, c.passwd, nil)
			if err == nil || !strings.Contains(err.Error(), "not Authorized") && !strings.Contains(err.Error(), "bad user name or password") {
				t.Fatalf("connect err = %v, want a refusal", err)
			}
		})
	}
	// The right credentials do connect, so the refusals above are about
	// the credentials.
	if _, err := dial(t, b, good.ClientID, good.Username, good.Password, nil); err != nil {
		t.Fatalf("good credentials refused: %v", err)
	}
	if _, err := dial(t, b, "ops-1", opUser, opPass, nil); err != nil {
		t.Fatalf("operator refused: %v", err)
	}
}

func TestACL_DeviceStaysOnItsOwnTopics(t *testing.T) {
	b := startBroker(t)
	a := mustDevice(t, b, "devA")
	bee := mustDevice(t, b, "devB")
	op := mustOperator(t, b)
	ta, tb := cloud.Topics("pk1", "devA"), cloud.Topics("pk1", "devB")

	for _, f := range []string{tb.Upgrade, "/ota/device/upgrade/pk1/+", "/ota/device/upgrade/+/+", "/ota/device/#", "#", "$SYS/#", ta.Progress, ta.Inform,
		cloud.ReleaseTopic("pk2"), "/otaport/release/+", "/otaport/#", cloud.KeySetTopic("pk2"), "/otaport/keyset/+"} {
		if got := a.subscribe(t, f); got != 0x80 {
			t.Errorf("device A subscribing %q: code 0x%02x, want 0x80 (refused)", f, got)
		}
	}
	if got := a.subscribe(t, ta.Upgrade); got != 1 {
		t.Fatalf("device A subscribing its own upgrade topic: code 0x%02x, want 1", got)
	}
	if got := a.subscribe(t, ta.Release); got != 1 {
		t.Fatalf("device A subscribing its product's release statements: code 0x%02x, want 1", got)
	}
	if got := a.subscribe(t, ta.KeySet); got != 1 {
		t.Fatalf("device A subscribing its product's key sets: code 0x%02x, want 1", got)
	}
	if got := bee.subscribe(t, tb.Upgrade); got != 1 {
		t.Fatalf("device B subscribing its own upgrade topic: code 0x%02x, want 1", got)
	}
	if got := op.subscribe(t, "/ota/device/#"); got != 1 {
		t.Fatalf("operator subscribing /ota/device/#: code 0x%02x", got)
	}

	// An order for B reaches B only. A's own order is published after it:
	// had A been given B's, it would have come first.
	op.publish(t, tb.Upgrade, 1, "order-for-B")
	op.publish(t, ta.Upgrade, 1, "order-for-A")
	if m := bee.next(t); m.Topic() != tb.Upgrade || string(m.Payload()) != "order-for-B" {
		t.Errorf("B got %s %q", m.Topic(), m.Payload())
	}
	if m := a.next(t); m.Topic() != ta.Upgrade || string(m.Payload()) != "order-for-A" {
		t.Errorf("A got %s %q, want only its own order", m.Topic(), m.Payload())
	}
	// The operator sees its own orders go by on /ota/device/#.
	for _, want := range []string{"order-for-B", "order-for-A"} {
		if m := op.next(t); string(m.Payload()) != want {
			t.Errorf("operator got %q, want %q", m.Payload(), want)
		}
	}

	// A publishing on B's topics (QoS 0: dropped), on the upgrade topics
	// (its own included: orders come from the cloud only), then on its own
	// progress topic: the operator sees only the last.
	a.publish(t, tb.Progress, 0, "forged progress")
	a.publish(t, tb.Inform, 0, "forged inform")
	a.publish(t, ta.Upgrade, 0, "self-made order")
	a.publish(t, ta.Progress, 1, `{"id":1,"params":{"step":"10"}}`)
	if m := op.next(t); m.Topic() != ta.Progress || string(m.Payload()) != `{"id":1,"params":{"step":"10"}}` {
		t.Errorf("operator got %s %q, want A's own progress only", m.Topic(), m.Payload())
	}
	select {
	case m := <-a.msgs:
		t.Errorf("A received %s %q", m.Topic(), m.Payload())
	default:
	}

	// A QoS 1 publish on another device's topic costs A its connection
	// (MQTT 3.1.1 has no negative PUBACK).
	a.mq.Publish(tb.Progress, 1, false, "forged")
	select {
	case <-a.lost:
	case <-time.After(testTimeout):
		t.Fatal("device A kept its connection after a forbidden QoS 1 publish")
	}
}

func TestACL_OperatorLimitedToOTATree(t *testing.T) {
	b := startBroker(t)
	op := mustOperator(t, b)
	for f, want := range map[string]byte{"/ota/device/#": 1, "/ota/device/progress/+/+": 1, "#": 0x80, "$SYS/#": 0x80, "/sys/pk1/devA/thing/event": 0x80} {
		if got := op.subscribe(t, f); got != want {
			t.Errorf("operator subscribing %q: 0x%02x, want 0x%02x", f, got, want)
		}
	}
}

func TestSignIn_WillOnForeignTopicRefused(t *testing.T) {
	b := startBroker(t)
	_, err := dialDevice(t, b, "devA", "secret-A", func(o *paho.ClientOptions) {
		o.SetWill(cloud.Topics("pk1", "devB").Progress, `{"id":1,"params":{"step":"-1"}}`, 1, false)
	})
	if err == nil {
		t.Fatal("a will on another device's topic was accepted")
	}
	if _, err := dialDevice(t, b, "devA", "secret-A", func(o *paho.ClientOptions) {
		o.SetWill(cloud.Topics("pk1", "devA").Progress, `{"id":1,"params":{"step":"-1"}}`, 1, false)
	}); err != nil {
		t.Fatalf("a will on the device's own topic was refused: %v", err)
	}
}

func TestSession_NewConnectionTakesOver(t *testing.T) {
	// Two sign-ins of one device with different client ids (timestamps):
	// the broker names the session after the device, so the second takes
	// over, as on the platform.
	b := startBroker(t)
	first := mustDevice(t, b, "devA")
	cr, err := cloud.SignIn(cloud.Identity{ProductKey: "pk1", DeviceName: "devA", DeviceSecret: "secret-A"}, cloud.SignOptions{ClientID: "sn-42", Timestamp: "1700000060000"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := dial(t, b, cr.ClientID, cr.Username, cr.Password, nil); err != nil {
		t.Fatal(err)
	}
	select {
	case <-first.lost:
	case <-time.After(testTimeout):
		t.Fatal("the first connection of the device survived the second")
	}
	if got := b.Connected(); len(got) != 1 || got[0] != "pk1/devA" {
		t.Errorf("Connected = %v, want [pk1/devA]", got)
	}
}

func TestInline_PublishAndSubscribe(t *testing.T) {
	b := startBroker(t)
	a := mustDevice(t, b, "devA")
	ta := cloud.Topics("pk1", "devA")
	if got := a.subscribe(t, ta.Upgrade); got != 1 {
		t.Fatalf("subscribe: 0x%02x", got)
	}
	var mu sync.Mutex
	got := make(chan string, 4)
	unsub, err := b.Subscribe("/ota/device/progress/+/+", func(topic string, payload []byte) {
		mu.Lock()
		defer mu.Unlock()
		got <- topic + " " + string(payload)
	})
	if err != nil {
		t.Fatal(err)
	}
	defer unsub()
	if err := b.Publish(context.Background(), ta.Upgrade, []byte("inline order")); err != nil {
		t.Fatal(err)
	}
	if m := a.next(t); string(m.Payload()) != "inline order" || m.Qos() != 1 {
		t.Errorf("device got %q at QoS %d", m.Payload(), m.Qos())
	}
	a.publish(t, ta.Progress, 1, "p")
	select {
	case s := <-got:
		if s != ta.Progress+" p" {
			t.Errorf("inline subscriber got %q", s)
		}
	case <-time.After(testTimeout):
		t.Fatal("inline subscriber got nothing")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := b.Publish(ctx, ta.Upgrade, nil); !errors.Is(err, context.Canceled) {
		t.Errorf("Publish with a cancelled context: %v", err)
	}
}

func TestNew_ConfigErrors(t *testing.T) {
	cases := []struct {
		cfg  broker.Config
		want string
	}{
		{broker.Config{Lookup: lookup}, "Addr is empty"},
		{broker.Config{Addr: "127.0.0.1:0"}, "Lookup is nil"},
		{broker.Config{Addr: "127.0.0.1:0", Lookup: lookup, Operators: map[string]string{"a&b": "x"}}, `operator name "a&b"`},
		{broker.Config{Addr: "127.0.0.1:0", Lookup: lookup, Operators: map[string]string{"ops": ""}}, "empty password"},
	}
	for _, c := range cases {
		if _, err := broker.New(c.cfg); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("New(%+v) = %v, want an error mentioning %q", c.cfg, err, c.want)
		}
	}
}

func TestStart_ContextEndsBroker(t *testing.T) {
	b, err := broker.New(broker.Config{Addr: "127.0.0.1:0", Lookup: lookup, SignIn: broker.SignInPolicy{Now: newClock().Now}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	if err := b.Start(ctx); err != nil {
		t.Fatal(err)
	}
	a := mustDevice(t, b, "devA")
	cancel()
	select {
	case <-a.lost:
	case <-time.After(testTimeout):
		t.Fatal("cancelling Start's context left the broker running")
	}
	if err := b.Start(context.Background()); err == nil {
		t.Error("Start after close succeeded")
	}
	if err := b.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

// TestSignIn_Policy: a good signature is not enough. The transport claimed
// must be the one used, the timestamp must be fresh (or the product allowed
// timeless sign-ins, as the C SDK's fixed timestamp needs), and each case
// is refused with a good signature, so only the rule refuses it.
func TestSignIn_Policy(t *testing.T) {
	devA := cloud.Identity{ProductKey: "pk1", DeviceName: "devA", DeviceSecret: "secret-A"}
	ms := func(d time.Duration) string {
		return strconv.FormatInt(time.UnixMilli(1700000000000).Add(d).UnixMilli(), 10)
	}
	cases := []struct {
		name     string
		timeless []string
		sign     cloud.SignOptions
		ok       bool
	}{
		{"fresh", nil, cloud.SignOptions{Timestamp: signedAt}, true},
		{"14 minutes behind", nil, cloud.SignOptions{Timestamp: ms(-14 * time.Minute)}, true},
		{"14 minutes ahead", nil, cloud.SignOptions{Timestamp: ms(14 * time.Minute)}, true},
		{"16 minutes behind: a replay", nil, cloud.SignOptions{Timestamp: ms(-16 * time.Minute)}, false},
		{"16 minutes ahead", nil, cloud.SignOptions{Timestamp: ms(16 * time.Minute)}, false},
		{"TLS claimed over TCP", nil, cloud.SignOptions{Timestamp: signedAt, TLS: true}, false},
		{"no timestamp", nil, cloud.SignOptions{}, false},
		{"the C SDK's fixed timestamp", nil, cloud.SignOptions{Form: cloud.FormSDK}, false},
		{"the C SDK's fixed timestamp, product allowed", []string{"pk1"}, cloud.SignOptions{Form: cloud.FormSDK}, true},
		{"no timestamp, product allowed", []string{"pk1"}, cloud.SignOptions{}, true},
		{"no timestamp, another product allowed", []string{"pk2"}, cloud.SignOptions{}, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b := startBrokerWith(t, broker.SignInPolicy{Now: newClock().Now, Timeless: c.timeless})
			cr, err := cloud.SignIn(devA, c.sign)
			if err != nil {
				t.Fatal(err)
			}
			_, err = dial(t, b, cr.ClientID, cr.Username, cr.Password, nil)
			if c.ok && err != nil {
				t.Fatalf("refused: %v", err)
			}
			if !c.ok && err == nil {
				t.Fatal("signed in; want a refusal")
			}
		})
	}
}

// TestSignIn_RateLimited: a device that fails MaxFailures times in a window
// is refused even with good credentials, from any address, until the
// window passes; an address may fail ten times as often (a NAT may hide
// many devices), then it is refused too, but for an operator who signs in
// right. Other devices and addresses are not held to it.
func TestSignIn_RateLimited(t *testing.T) {
	clk := newClock()
	b := startBrokerWith(t, broker.SignInPolicy{Now: clk.Now, MaxFailures: 3, FailureWindow: time.Minute})
	from := func(ip string) func(*paho.ClientOptions) {
		return func(o *paho.ClientOptions) {
			// One attempt per dial: no fallback to MQTT 3.1 counting twice.
			o.SetProtocolVersion(4)
			o.SetDialer(&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: testTimeout})
		}
	}
	try := func(dn, secret, ip string) error {
		_, err := dialDevice(t, b, dn, secret, from(ip))
		return err
	}
	for i := range 3 {
		if err := try("devA", "wrong", "127.0.0.2"); err == nil {
			t.Fatalf("attempt %d with a wrong secret signed in", i+1)
		}
	}
	if err := try("devA", registry["pk1/devA"], "127.0.0.3"); err == nil {
		t.Fatal("the device that failed 3 times signed in from another address in the same window")
	}
	if err := try("devB", registry["pk1/devB"], "127.0.0.2"); err != nil {
		t.Fatalf("a good device was held to the failures of another device at its address: %v", err)
	}

	// An address: 30 failures, of devices it does not know.
	for i := range 30 {
		if err := try(fmt.Sprintf("ghost%d", i), "x", "127.0.0.4"); err == nil {
			t.Fatal("an unknown device signed in")
		}
	}
	if err := try("devB", registry["pk1/devB"], "127.0.0.4"); err == nil {
		t.Fatal("the address that failed 30 times signed in a good device in the same window")
	}
	if _, err := dial(t, b, "otaserve", opUser, opPass, from("127.0.0.4")); err != nil {
		t.Fatalf("an operator with the right password was held to its address's failures: %v", err)
	}
	if err := try("devB", registry["pk1/devB"], "127.0.0.3"); err != nil {
		t.Fatalf("a good device from another address was held to the failures of others: %v", err)
	}

	clk.Add(time.Minute)
	if err := try("devA", registry["pk1/devA"], "127.0.0.2"); err != nil {
		t.Fatalf("the window passed and the good device is still refused: %v", err)
	}
	if err := try("devB", registry["pk1/devB"], "127.0.0.4"); err != nil {
		t.Fatalf("the window passed and the address is still refused: %v", err)
	}
}

// tlsBroker starts a TLS broker with a self-signed server certificate for
// 127.0.0.1 and, when ca is set, its device CA for client certificates.
func tlsBroker(t *testing.T, ca *pki.CA) (*broker.Broker, *x509.CertPool) {
	t.Helper()
	return tlsBrokerWith(t, ca, "")
}

// tlsBrokerWith is tlsBroker with a listener without TLS at plainAddr
// (none when empty).
func tlsBrokerWith(t *testing.T, ca *pki.CA, plainAddr string) (*broker.Broker, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "broker test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	roots := x509.NewCertPool()
	roots.AddCert(leaf)
	cfg := broker.Config{Addr: "127.0.0.1:0", Lookup: lookup, SignIn: broker.SignInPolicy{Now: newClock().Now},
		TLS:    &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}, MinVersion: tls.VersionTLS12},
		Logger: testLogger(t), PlainAddr: plainAddr}
	if ca != nil {
		cfg.DeviceCAs = ca.Pool()
	}
	b, err := broker.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b, roots
}

// deviceCert issues device pk/dn a client certificate from ca.
func deviceCert(t *testing.T, ca *pki.CA, pk, dn string) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := pki.NewRequest(key, pk, dn)
	if err != nil {
		t.Fatal(err)
	}
	certPEM, _, err := ca.Issue(csr, pk, dn, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := pem.Decode(certPEM)
	return tls.Certificate{Certificate: [][]byte{b.Bytes}, PrivateKey: key}
}

// TestSignIn_ClientCertificate: on a TLS listener with a device CA, a
// device signs in by the certificate the CA issued it, without a password,
// and gets its own topics only; a certificate of an unregistered device, of
// another CA, or used under another device's name is refused; devices
// without a certificate still sign in with their secret.
func TestSignIn_ClientCertificate(t *testing.T) {
	ca, _, err := pki.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	other, _, err := pki.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	b, roots := tlsBroker(t, ca)
	withCert := func(cert *tls.Certificate) func(*paho.ClientOptions) {
		return func(o *paho.ClientOptions) {
			o.Servers = nil
			o.AddBroker("ssl://" + b.Addr().String())
			tc := &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
			if cert != nil {
				tc.Certificates = []tls.Certificate{*cert}
			}
			o.SetTLSConfig(tc)
		}
	}
	devA := deviceCert(t, ca, "pk1", "devA")
	ghost := deviceCert(t, ca, "pk1", "ghost")
	foreign := deviceCert(t, other, "pk1", "devA")

	c, err := dial(t, b, "pk1.devA", "", "", withCert(&devA))
	if err != nil {
		t.Fatalf("certificate sign-in refused: %v", err)
	}
	if got := c.subscribe(t, "/ota/device/upgrade/pk1/devA"); got != 1 {
		t.Errorf("own upgrade topic: granted 0x%02x, want QoS 1", got)
	}
	if got := c.subscribe(t, "/ota/device/upgrade/pk1/devB"); got != 0x80 {
		t.Errorf("another device's upgrade topic: granted 0x%02x, want refused", got)
	}
	if _, err := dial(t, b, "pk1.devA", "devA&pk1", "", withCert(&devA)); err != nil {
		t.Errorf("certificate with its own device as user name refused: %v", err)
	}
	for name, try := range map[string]func() error{
		"unregistered device": func() error { _, err := dial(t, b, "pk1.ghost", "", "", withCert(&ghost)); return err },
		"another CA":          func() error { _, err := dial(t, b, "pk1.devA", "", "", withCert(&foreign)); return err },
		"another device's name": func() error {
			_, err := dial(t, b, "pk1.devB", "devB&pk1", "", withCert(&devA))
			return err
		},
		"no certificate, no password": func() error { _, err := dial(t, b, "pk1.devA", "devA&pk1", "", withCert(nil)); return err },
	} {
		if try() == nil {
			t.Errorf("%s: signed in", name)
		}
	}
	cr, err := cloud.SignIn(cloud.Identity{ProductKey: "pk1", DeviceName: "devB", DeviceSecret: "secret-B"}, cloud.SignOptions{Timestamp: signedAt, TLS: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := dial(t, b, cr.ClientID, cr.Username, cr.Password, withCert(nil)); err != nil {
		t.Errorf("password sign-in over TLS refused beside certificates: %v", err)
	}
}

func TestNew_DeviceCAsNeedTLS(t *testing.T) {
	ca, _, err := pki.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	_, err = broker.New(broker.Config{Addr: "127.0.0.1:0", Lookup: lookup, DeviceCAs: ca.Pool()})
	if err == nil || !strings.Contains(err.Error(), "need a TLS listener") {
		t.Fatalf("New = %v, want a refusal naming TLS", err)
	}
}

// TestSignIn_ReconnectSignsAfresh: a device's client signs each
// reconnection with the time of that reconnection, so a broker that checks
// freshness takes it back after its window has passed since the first
// sign-in.
func TestSignIn_ReconnectSignsAfresh(t *testing.T) {
	clk := newClock()
	b := startBrokerWith(t, broker.SignInPolicy{Now: clk.Now})
	reconnected := make(chan struct{}, 1)
	c, err := cloud.Dial(t.Context(), cloud.Config{
		Broker:   "tcp://" + b.Addr().String(),
		Identity: cloud.Identity{ProductKey: "pk1", DeviceName: "devA", DeviceSecret: registry["pk1/devA"]},
		Now:      clk.Now, MaxReconnectInterval: time.Second,
		OnOrder:   func(*cloud.Order, []byte) {},
		OnConnect: func() { reconnected <- struct{}{} },
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	clk.Add(time.Hour)
	b.Revoke("pk1", "devA") // drops the connection; the device is still registered
	select {
	case <-reconnected:
	case <-time.After(testTimeout):
		t.Fatal("the device did not sign in again an hour after its first sign-in")
	}
}

// TestSignIn_PlainListenerOfAMigration: a TLS broker with a listener
// without TLS, for devices not yet moved: there securemode 3 signs in and
// securemode 2 is refused, on the TLS listener the other way round.
func TestSignIn_PlainListenerOfAMigration(t *testing.T) {
	b, roots := tlsBrokerWith(t, nil, "127.0.0.1:0")
	devA := cloud.Identity{ProductKey: "pk1", DeviceName: "devA", DeviceSecret: "secret-A"}
	overTLS := func(o *paho.ClientOptions) {
		o.Servers = nil
		o.AddBroker("ssl://" + b.Addr().String())
		o.SetTLSConfig(&tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12})
	}
	plain := func(o *paho.ClientOptions) {
		o.Servers = nil
		o.AddBroker("tcp://" + b.PlainAddr().String())
	}
	cases := []struct {
		name     string
		claimTLS bool
		via      func(*paho.ClientOptions)
		ok       bool
	}{
		{"securemode 3 on the plain listener", false, plain, true},
		{"securemode 2 on the plain listener", true, plain, false},
		{"securemode 2 over TLS", true, overTLS, true},
		{"securemode 3 over TLS", false, overTLS, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cr, err := cloud.SignIn(devA, cloud.SignOptions{Timestamp: signedAt, TLS: c.claimTLS})
			if err != nil {
				t.Fatal(err)
			}
			_, err = dial(t, b, cr.ClientID, cr.Username, cr.Password, c.via)
			if c.ok && err != nil {
				t.Fatalf("refused: %v", err)
			}
			if !c.ok && err == nil {
				t.Fatal("signed in; want a refusal")
			}
			if !c.ok {
				return
			}
			// What the fleet sends it must do without TLS as it does: the
			// broker says which listener it is on (a connection taken over
			// lingers until its disconnect reaches the broker).
			deadline := time.Now().Add(testTimeout)
			for b.SignedInPlain("pk1", "devA") != !c.claimTLS && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
			if got := b.SignedInPlain("pk1", "devA"); got != !c.claimTLS {
				t.Errorf("SignedInPlain = %v, want %v", got, !c.claimTLS)
			}
		})
	}
	if _, err := broker.New(broker.Config{Addr: "127.0.0.1:0", Lookup: lookup, PlainAddr: "127.0.0.1:0"}); err == nil {
		t.Error("a plain listener beside a plain broker was taken")
	}
}

// TestSignIn_ConcurrentFloodIsRateLimited: a flood of concurrent sign-ins
// with wrong secrets, for one device and for made-up ones, from one
// address, costs no more secret checks than the limits allow, however many
// arrive at once (a check and its count are one step); the broker keeps
// serving: a good device from another address and the operator sign in.
func TestSignIn_ConcurrentFloodIsRateLimited(t *testing.T) {
	const maxFailures, flood = 3, 200
	var mu sync.Mutex
	checked := 0
	b, err := broker.New(broker.Config{Addr: "127.0.0.1:0", Operators: map[string]string{opUser: opPass},
		Lookup: func(pk, dn string) (string, bool) {
			mu.Lock()
			checked++
			mu.Unlock()
			// A registry read and an unsealing take a while: long enough
			// for other attempts to arrive before this one is counted.
			time.Sleep(5 * time.Millisecond)
			return lookup(pk, dn)
		},
		SignIn: broker.SignInPolicy{Now: newClock().Now, MaxFailures: maxFailures, FailureWindow: time.Minute},
		Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	from := func(ip string) func(*paho.ClientOptions) {
		return func(o *paho.ClientOptions) {
			o.SetProtocolVersion(4)
			o.SetDialer(&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: testTimeout})
		}
	}
	var wg sync.WaitGroup
	var signedIn atomic.Int32
	for i := range flood {
		wg.Add(1)
		go func() {
			defer wg.Done()
			dn := "devA"
			if i%2 == 1 {
				dn = fmt.Sprintf("ghost%d", i)
			}
			if _, err := dialDevice(t, b, dn, "wrong", from("127.0.0.6")); err == nil {
				signedIn.Add(1)
			}
		}()
	}
	wg.Wait()
	if n := signedIn.Load(); n > 0 {
		t.Fatalf("%d sign-ins with wrong secrets succeeded", n)
	}
	mu.Lock()
	n := checked
	mu.Unlock()
	// The address may fail 10 times as often as a device.
	if limit := 10 * maxFailures; n > limit {
		t.Errorf("the flood had %d secrets checked, want at most %d (the address's limit): checks ran past the count", n, limit)
	}
	if _, err := dialDevice(t, b, "devB", registry["pk1/devB"], from("127.0.0.7")); err != nil {
		t.Errorf("a good device from another address after the flood: %v", err)
	}
	if _, err := dial(t, b, "otaserve", opUser, opPass, from("127.0.0.6")); err != nil {
		t.Errorf("the operator after the flood from its address: %v", err)
	}
}

// What a connected device costs the broker. Each client's queue of packets
// waiting to be written is a channel allocated whole at sign-in; its default
// size (8,192 entries) was 64 KiB per device, most of otaserve's memory per
// connected device. 100 devices signed in over raw connections (so that no
// client library's memory is counted) hold less than 24 KiB each.
func TestMemoryPerConnectedDevice(t *testing.T) {
	b, err := broker.New(broker.Config{Addr: "127.0.0.1:0", Logger: testLogger(t),
		Lookup:    func(pk, dn string) (string, bool) { return "s-" + dn, pk == "pk1" },
		SignIn:    broker.SignInPolicy{Now: newClock().Now},
		Operators: map[string]string{opUser: opPass}})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	const n = 100
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	conns := make([]net.Conn, n)
	for i := range conns {
		dn := fmt.Sprintf("mem%03d", i)
		cr, err := cloud.SignIn(cloud.Identity{ProductKey: "pk1", DeviceName: dn, DeviceSecret: "s-" + dn}, cloud.SignOptions{Timestamp: signedAt})
		if err != nil {
			t.Fatal(err)
		}
		conns[i] = rawConnect(t, b, cr)
	}
	for len(b.Connected()) < n {
		// CONNACK is written before the broker records the session.
		time.Sleep(10 * time.Millisecond)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	per := (int64(after.HeapAlloc) - int64(before.HeapAlloc)) / n
	if per > 24<<10 {
		t.Errorf("%d connected devices: %d bytes of heap each, want under 24 KiB", n, per)
	}
	t.Logf("%d connected devices: %d bytes of heap each", n, per)
	runtime.KeepAlive(conns)
}

// rawConnect signs in over a bare TCP connection with an MQTT 3.1.1 CONNECT
// and waits for the broker's CONNACK.
func rawConnect(t *testing.T, b *broker.Broker, cr cloud.Credentials) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", b.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	pk := packets.Packet{
		FixedHeader:     packets.FixedHeader{Type: packets.Connect},
		ProtocolVersion: 4,
		Connect: packets.ConnectParams{ProtocolName: []byte("MQTT"), Clean: true, Keepalive: 60,
			ClientIdentifier: cr.ClientID, UsernameFlag: true, Username: []byte(cr.Username),
			PasswordFlag: true, Password: []byte(cr.Password)},
	}
	var buf bytes.Buffer
	if err := pk.ConnectEncode(&buf); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write(buf.Bytes()); err != nil {
		t.Fatal(err)
	}
	ack := make([]byte, 4)
	c.SetReadDeadline(time.Now().Add(testTimeout))
	if _, err := io.ReadFull(c, ack); err != nil || ack[0] != 0x20 || ack[3] != 0 {
		t.Fatalf("CONNACK: % x, %v", ack, err)
	}
	c.SetReadDeadline(time.Time{})
	return c
}
