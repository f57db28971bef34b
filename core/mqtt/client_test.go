package mqtt_test

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
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/otaport/otaport/core/mqtt"
	"github.com/otaport/otaport/core/mqtt/mqtttest"
)

// testTimeout bounds each wait so that a broken test fails rather than
// hangs; no test asserts on how long anything took.
const testTimeout = 20 * time.Second

const mosquittoPath = "/usr/sbin/mosquitto"

// broker is a Mosquitto process on a free loopback port.
type broker struct {
	addr string
	cmd  *exec.Cmd
	log  *bytes.Buffer
}

// startBroker starts Mosquitto with conf added to its configuration, or
// skips t when Mosquitto is not installed.
func startBroker(t testing.TB, conf string) *broker {
	t.Helper()
	bin, err := exec.LookPath(mosquittoPath)
	if err != nil {
		if bin, err = exec.LookPath("mosquitto"); err != nil {
			t.Skipf("Mosquitto is not installed (%s, or mosquitto on PATH): these tests need a real broker", mosquittoPath)
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	_, port, _ := net.SplitHostPort(addr)
	dir := confDir(t)
	path := filepath.Join(dir, "mosquitto.conf")
	full := fmt.Sprintf("listener %s 127.0.0.1\npersistence false\nlog_dest stderr\nmax_keepalive 65535\n%s\n", port, conf)
	if !strings.Contains(conf, "allow_anonymous") {
		full += "allow_anonymous true\n"
	}
	if err := os.WriteFile(path, []byte(full), 0o644); err != nil {
		t.Fatal(err)
	}
	b := &broker{addr: addr, log: &bytes.Buffer{}}
	b.cmd = exec.Command(bin, "-c", path)
	b.cmd.Stdout, b.cmd.Stderr = b.log, b.log
	if err := b.cmd.Start(); err != nil {
		t.Fatalf("start Mosquitto: %v", err)
	}
	t.Cleanup(func() {
		b.stop()
		if t.Failed() {
			t.Logf("Mosquitto on %s said:\n%s", addr, b.log)
		}
	})
	deadline := time.Now().Add(testTimeout)
	for {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			return b
		}
		if time.Now().After(deadline) {
			t.Fatalf("Mosquitto never listened on %s: %v\n%s", addr, err, b.log)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (b *broker) stop() {
	if b.cmd.ProcessState == nil {
		b.cmd.Process.Kill()
		b.cmd.Wait()
	}
}

// events collects what a Client's callbacks heard.
type events struct {
	connected chan struct{}
	lost      chan error
}

// dial connects a Client to addrs with id and tweak applied; it is closed
// when the test ends.
func dial(t testing.TB, id string, tweak func(*mqtt.Config), addrs ...string) (*mqtt.Client, *events, error) {
	t.Helper()
	ev := &events{connected: make(chan struct{}, 16), lost: make(chan error, 16)}
	cfg := mqtt.Config{
		Brokers:              addrs,
		Credentials:          func() (mqtt.Credentials, error) { return mqtt.Credentials{ClientID: id}, nil },
		KeepAlive:            30 * time.Second,
		ConnectTimeout:       2 * time.Second,
		MaxReconnectInterval: 200 * time.Millisecond,
		OnConnect:            func() { ev.connected <- struct{}{} },
		OnConnectionLost:     func(err error) { ev.lost <- err },
	}
	if tweak != nil {
		tweak(&cfg)
	}
	c, err := mqtt.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	if err := c.Connect(ctx); err != nil {
		c.Close()
		return nil, nil, err
	}
	t.Cleanup(func() { c.Close() })
	return c, ev, nil
}

func mustDial(t testing.TB, id string, tweak func(*mqtt.Config), addrs ...string) (*mqtt.Client, *events) {
	t.Helper()
	c, ev, err := dial(t, id, tweak, addrs...)
	if err != nil {
		t.Fatal(err)
	}
	return c, ev
}

func wait[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(testTimeout):
		t.Fatalf("%s never happened", what)
		panic("unreachable")
	}
}

func ctx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	t.Cleanup(cancel)
	return ctx
}

// subscribe subscribes c to filter and returns the messages it receives.
func subscribe(t *testing.T, c *mqtt.Client, filter string) <-chan mqtt.Message {
	t.Helper()
	msgs := make(chan mqtt.Message, 64)
	if err := c.Subscribe(ctx(t), filter, 1, func(m mqtt.Message) { msgs <- m }); err != nil {
		t.Fatal(err)
	}
	return msgs
}

func TestConnect_RefusalsAreNamed(t *testing.T) {
	dir := confDir(t)
	pw := filepath.Join(dir, "passwd")
	if out, err := exec.Command("mosquitto_passwd", "-b", "-c", pw, "dev", "right").CombinedOutput(); err != nil {
		t.Skipf("mosquitto_passwd cannot make a password file: %v: %s", err, out)
	}
	if err := os.Chmod(pw, 0o644); err != nil {
		t.Fatal(err)
	}
	b := startBroker(t, "allow_anonymous false\npassword_file "+pw)
	cases := []struct {
		name  string
		creds mqtt.Credentials
		want  mqtt.RefusedError
		text  string
	}{
		{"wrong password", mqtt.Credentials{ClientID: "c1", Username: "dev", Password: "wrong"}, mqtt.RefusedNotAuthorized, "not authorized"},
		{"empty client id, persistent session", mqtt.Credentials{Username: "dev", Password: "right"}, mqtt.RefusedIdentifier, "identifier rejected"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, _, err := dial(t, "", func(cfg *mqtt.Config) {
				cfg.Credentials = func() (mqtt.Credentials, error) { return c.creds, nil }
			}, b.addr)
			if !errors.Is(err, c.want) || !strings.Contains(err.Error(), c.text) {
				t.Fatalf("Connect err = %v; want %v", err, c.want)
			}
		})
	}
	// The right credentials sign in, so the refusals above were theirs.
	mustDial(t, "c2", func(cfg *mqtt.Config) {
		cfg.Credentials = func() (mqtt.Credentials, error) {
			return mqtt.Credentials{ClientID: "c2", Username: "dev", Password: "right"}, nil
		}
	}, b.addr)
}

func TestConnect_TriesEveryBrokerAndNamesEach(t *testing.T) {
	b := startBroker(t, "")
	dead := deadAddr(t)
	// The dead broker first: the client moves on to the live one.
	c, _ := mustDial(t, "c", nil, dead, b.addr)
	if !c.IsConnected() {
		t.Fatal("not connected")
	}
	dead2 := deadAddr(t)
	_, _, err := dial(t, "c2", nil, dead, dead2)
	if err == nil || !strings.Contains(err.Error(), "connect to "+dead) || !strings.Contains(err.Error(), "connect to "+dead2) {
		t.Fatalf("Connect to two dead brokers: %v; want both named", err)
	}
}

// confDir returns a directory for Mosquitto's files that Mosquitto can
// read when it drops root's privileges for its own user.
func confDir(t testing.TB) string {
	dir := t.TempDir()
	// The test's temporary directory and its parent are private.
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// deadAddr returns a loopback address nothing listens on.
func deadAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// dynsecPlugin is Mosquitto's dynamic security plugin, the part of
// Mosquitto that checks subscriptions (its ACL file only filters delivery).
const dynsecPlugin = "/usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so"

// dynsecConfig lets anonymous clients subscribe to open/# only.
const dynsecConfig = `{
	"anonymousGroup": "anon",
	"groups": [{"groupname": "anon", "roles": [{"rolename": "open"}], "clients": []}],
	"roles": [{"rolename": "open", "acls": [{"acltype": "subscribePattern", "topic": "open/#", "allow": true}]}],
	"clients": [],
	"defaultACLAccess": {"publishClientSend": true, "publishClientReceive": true, "subscribe": false, "unsubscribe": true}
}`

func TestSubscribe_RefusalIsAnError(t *testing.T) {
	if _, err := os.Stat(dynsecPlugin); err != nil {
		t.Skipf("Mosquitto's dynamic security plugin is missing (%v): it is what refuses a subscription", err)
	}
	dir := confDir(t)
	conf := filepath.Join(dir, "dynsec.json")
	// The plugin rewrites its file, as Mosquitto's user.
	if err := os.WriteFile(conf, []byte(dynsecConfig), 0o666); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	b := startBroker(t, "plugin "+dynsecPlugin+"\nplugin_opt_config_file "+conf)
	c, _ := mustDial(t, "c", nil, b.addr)
	err := c.Subscribe(ctx(t), "closed/x", 1, func(mqtt.Message) {})
	if !errors.Is(err, mqtt.ErrSubscriptionRefused) {
		t.Fatalf("subscribe to a denied topic: %v; want ErrSubscriptionRefused", err)
	}
	if err := c.Subscribe(ctx(t), "open/x", 1, func(mqtt.Message) {}); err != nil {
		t.Fatalf("subscribe to an allowed topic: %v", err)
	}
}

func TestPublish_QoS1RoundTrip(t *testing.T) {
	b := startBroker(t, "")
	sub, _ := mustDial(t, "sub", nil, b.addr)
	pub, _ := mustDial(t, "pub", nil, b.addr)
	msgs := subscribe(t, sub, "ota/+/x")
	for i := range 20 {
		body := fmt.Sprintf("message %d", i)
		if err := pub.Publish(ctx(t), "ota/a/x", 1, []byte(body)); err != nil {
			t.Fatal(err)
		}
		// Arrival order is publication order on one topic at QoS 1.
		if m := wait(t, msgs, body); string(m.Payload) != body || m.Topic != "ota/a/x" || m.QoS != 1 {
			t.Fatalf("got %+v, want %q", m, body)
		}
	}
	if err := pub.Publish(ctx(t), "ota/a/x", 0, []byte("zero")); err != nil {
		t.Fatal(err)
	}
	if m := wait(t, msgs, "QoS 0 message"); string(m.Payload) != "zero" {
		t.Fatalf("got %+v", m)
	}
	if err := pub.Publish(ctx(t), "ota/#", 1, nil); err == nil {
		t.Fatal("publish to a wildcard topic succeeded")
	}
}

// A message bigger than the client takes is acknowledged and dropped, and
// the link stays: refusing it dropped the link, and a broker keeping it in
// the persistent session sent it again at every reconnection, for ever.
func TestPublish_TooLargeIsDroppedNotRefused(t *testing.T) {
	b := startBroker(t, "")
	dropped := make(chan string, 4)
	sub, ev := mustDial(t, "sub", func(c *mqtt.Config) {
		c.MaxPacketSize = 1024
		c.OnDropped = func(topic string, err error) {
			if !errors.Is(err, mqtt.ErrTooLarge) {
				t.Errorf("OnDropped(%q, %v); want ErrTooLarge", topic, err)
			}
			dropped <- topic
		}
	}, b.addr)
	pub, _ := mustDial(t, "pub", nil, b.addr)
	msgs := subscribe(t, sub, "ota/+/x")
	if err := pub.Publish(ctx(t), "ota/big/x", 1, make([]byte, 4096)); err != nil {
		t.Fatal(err)
	}
	if topic := wait(t, dropped, "the drop"); topic != "ota/big/x" {
		t.Errorf("dropped a message on %q; want ota/big/x", topic)
	}
	if err := pub.Publish(ctx(t), "ota/small/x", 1, []byte("small")); err != nil {
		t.Fatal(err)
	}
	if m := wait(t, msgs, "the small message"); string(m.Payload) != "small" {
		t.Fatalf("got %+v; want the small message, the big one dropped", m)
	}
	select {
	case err := <-ev.lost:
		t.Fatalf("the link dropped: %v", err)
	default:
	}
}

// TestPublish_ResentWithDupAfterTheLinkDrops loses the PUBACK of a QoS 1
// message and cuts the link: the client sends the message again, same
// packet identifier, DUP set, on the next link, and Publish returns then.
func TestPublish_ResentWithDupAfterTheLinkDrops(t *testing.T) {
	b := startBroker(t, "")
	sub, _ := mustDial(t, "sub", nil, b.addr)
	msgs := subscribe(t, sub, "t")
	p := mqtttest.Start(t, b.addr, func(conn int, toBroker bool, pk *mqtt.Packet) mqtttest.Action {
		if conn == 0 && !toBroker && pk.Type == mqtt.PUBACK {
			return mqtttest.Cut
		}
		return mqtttest.Pass
	})
	c, ev := mustDial(t, "pub", nil, p.Addr())
	wait(t, ev.connected, "first connection")
	if err := c.Publish(ctx(t), "t", 1, []byte("once")); err != nil {
		t.Fatal(err)
	}
	wait(t, ev.lost, "the loss of the first link")
	first, again := p.Sent(0, mqtt.PUBLISH), p.Sent(1, mqtt.PUBLISH)
	if len(first) != 1 || first[0].Dup || len(again) != 1 || !again[0].Dup || again[0].ID != first[0].ID || string(again[0].Payload) != "once" {
		t.Fatalf("first link sent %+v, second %+v; want the message again with DUP and the same id", first, again)
	}
	if m := wait(t, msgs, "the message"); string(m.Payload) != "once" {
		t.Fatalf("got %+v", m)
	}
}

// TestPublish_WaitsForALinkAtQoS1 publishes while the broker is away: the
// message goes out, without DUP, once the client is back.
func TestPublish_WaitsForALinkAtQoS1(t *testing.T) {
	b := startBroker(t, "")
	sub, _ := mustDial(t, "sub", nil, b.addr)
	msgs := subscribe(t, sub, "t")
	blocked := make(chan struct{})
	p := mqtttest.Start(t, b.addr, func(conn int, toBroker bool, pk *mqtt.Packet) mqtttest.Action {
		if conn == 0 && toBroker && pk.Type == mqtt.PINGREQ {
			return mqtttest.Cut
		}
		return mqtttest.Pass
	})
	p.Hold(blocked) // the second link waits until the message is queued
	c, ev := mustDial(t, "pub", func(cfg *mqtt.Config) { cfg.KeepAlive = time.Second }, p.Addr())
	wait(t, ev.lost, "the loss of the first link")
	if err := c.Publish(ctx(t), "t", 0, []byte("q0")); !errors.Is(err, mqtt.ErrNotConnected) {
		t.Errorf("QoS 0 publish while down: %v; want ErrNotConnected", err)
	}
	done := make(chan error, 1)
	go func() { done <- c.Publish(ctx(t), "t", 1, []byte("later")) }()
	close(blocked)
	if err := wait(t, done, "the publication"); err != nil {
		t.Fatal(err)
	}
	if got := p.Sent(1, mqtt.PUBLISH); len(got) != 1 || got[0].Dup {
		t.Fatalf("second link sent %+v; want the message once without DUP", got)
	}
	if m := wait(t, msgs, "the message"); string(m.Payload) != "later" {
		t.Fatalf("got %+v", m)
	}
}

func TestReconnect_MovesToTheNextBroker(t *testing.T) {
	b1, b2 := startBroker(t, ""), startBroker(t, "")
	c, ev := mustDial(t, "dev", nil, b1.addr, b2.addr)
	wait(t, ev.connected, "first connection")
	sub2, _ := mustDial(t, "sub", nil, b2.addr)
	msgs := subscribe(t, sub2, "t")
	b1.stop()
	if err := wait(t, ev.lost, "the loss of the first broker"); err == nil {
		t.Fatal("connection lost with a nil error")
	}
	wait(t, ev.connected, "a connection to the second broker")
	if err := c.Publish(ctx(t), "t", 1, []byte("on b2")); err != nil {
		t.Fatal(err)
	}
	if m := wait(t, msgs, "the message on the second broker"); string(m.Payload) != "on b2" {
		t.Fatalf("got %+v", m)
	}
}

func TestKeepAlive_DropsALinkWithoutPingresp(t *testing.T) {
	b := startBroker(t, "")
	p := mqtttest.Start(t, b.addr, func(conn int, toBroker bool, pk *mqtt.Packet) mqtttest.Action {
		if conn == 0 && pk.Type == mqtt.PINGRESP {
			return mqtttest.Drop
		}
		return mqtttest.Pass
	})
	creds := 0
	var mu sync.Mutex
	_, ev := mustDial(t, "dev", func(cfg *mqtt.Config) {
		cfg.KeepAlive, cfg.PingTimeout = time.Second, 300*time.Millisecond
		cfg.Credentials = func() (mqtt.Credentials, error) {
			mu.Lock()
			defer mu.Unlock()
			creds++
			return mqtt.Credentials{ClientID: "dev", Username: fmt.Sprint("u", creds)}, nil
		}
	}, p.Addr())
	wait(t, ev.connected, "first connection")
	if err := wait(t, ev.lost, "the loss of the link"); !errors.Is(err, mqtt.ErrNoPingResponse) {
		t.Fatalf("lost: %v; want ErrNoPingResponse", err)
	}
	wait(t, ev.connected, "a reconnection")
	if len(p.Sent(0, mqtt.PINGREQ)) == 0 {
		t.Fatal("no PINGREQ on the first link")
	}
	// Each connection signed in with credentials made for it.
	c0, c1 := p.Sent(0, mqtt.CONNECT), p.Sent(1, mqtt.CONNECT)
	if len(c0) != 1 || len(c1) != 1 || *c0[0].Username == *c1[0].Username || c1[0].CleanSession {
		t.Fatalf("CONNECTs %+v then %+v; want fresh credentials and a persistent session", c0, c1)
	}
}

// TestClient_OneGoroutinePerConnection counts the goroutines of connected,
// subscribed, idle clients: one each, the reader.
func TestClient_OneGoroutinePerConnection(t *testing.T) {
	b := startBroker(t, "")
	const n = 50
	before := runtime.NumGoroutine()
	for i := range n {
		c, _ := mustDial(t, fmt.Sprint("g", i), func(cfg *mqtt.Config) { cfg.OnConnect, cfg.OnConnectionLost = nil, nil }, b.addr)
		if err := c.Subscribe(ctx(t), fmt.Sprint("t/", i), 1, func(mqtt.Message) {}); err != nil {
			t.Fatal(err)
		}
	}
	got := runtime.NumGoroutine() - before
	if got > n {
		t.Fatalf("%d clients run %d goroutines; want at most one each", n, got)
	}
	t.Logf("%d clients: %d goroutines", n, got)
}

// TestClient_MemoryPerConnection reports the heap and stack that a
// connected, subscribed, idle client holds, over TCP and over TLS, and
// bounds it.
func TestClient_MemoryPerConnection(t *testing.T) {
	certFile, keyFile, roots := selfSigned(t)
	for _, c := range []struct {
		name, conf string
		tls        *tls.Config
		max        float64
	}{
		// A goroutine's stack (8 KiB) and a few small buffers.
		{"tcp", "", nil, 16 << 10},
		// crypto/tls keeps its record buffers and session state.
		{"tls", "certfile " + certFile + "\nkeyfile " + keyFile, &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}, 32 << 10},
	} {
		t.Run(c.name, func(t *testing.T) {
			b := startBroker(t, c.conf)
			const n = 200
			var clients []*mqtt.Client
			inUse := func() uint64 {
				runtime.GC()
				var ms runtime.MemStats
				runtime.ReadMemStats(&ms)
				return ms.HeapAlloc + ms.StackInuse
			}
			before := inUse()
			for i := range n {
				cl, _ := mustDial(t, fmt.Sprint("m", i), func(cfg *mqtt.Config) {
					cfg.OnConnect, cfg.OnConnectionLost, cfg.TLS = nil, nil, c.tls
				}, b.addr)
				if err := cl.Subscribe(ctx(t), fmt.Sprint("t/", i), 1, func(mqtt.Message) {}); err != nil {
					t.Fatal(err)
				}
				clients = append(clients, cl)
			}
			per := float64(inUse()-before) / n
			runtime.KeepAlive(clients)
			t.Logf("%.0f bytes of heap and stack per connected client over %s", per, c.name)
			if per > c.max {
				t.Fatalf("%.0f bytes per connected client over %s; want under %.0f", per, c.name, c.max)
			}
		})
	}
}

// selfSigned writes a certificate for 127.0.0.1 and its key where
// Mosquitto can read them, and returns their paths and a pool that trusts
// the certificate.
func selfSigned(t *testing.T) (certFile, keyFile string, roots *x509.CertPool) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := confDir(t)
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o644); err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	roots = x509.NewCertPool()
	roots.AddCert(cert)
	return certFile, keyFile, roots
}
