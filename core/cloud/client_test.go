package cloud_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/otaport/otaport/core/cloud"
	"github.com/otaport/otaport/core/cloud/cloudtest"
	"github.com/otaport/otaport/core/mqtt"
	"github.com/otaport/otaport/core/mqtt/mqtttest"
)

// testTimeout bounds each wait so a broken test fails rather than hangs; no
// test asserts on how long anything took.
const testTimeout = 20 * time.Second

var dev = cloud.Identity{ProductKey: "a1Prod", DeviceName: "dev-01", DeviceSecret: "s3cr3t"}

const opUser, opPass = "fleet", "op-pass"

func lookup(pk, dn string) (string, bool) {
	if pk == dev.ProductKey && dn == dev.DeviceName {
		return dev.DeviceSecret, true
	}
	return "", false
}

// startBroker starts an MQTT broker that signs devices in as the platform
// does and the operator opUser by password.
func startBroker(t *testing.T, addr string, tc *tls.Config) *cloudtest.Broker {
	t.Helper()
	return cloudtest.Start(t, cloudtest.Config{Addr: addr, TLS: tc, Lookup: lookup, Operators: map[string]string{opUser: opPass}})
}

// device is a cloud.Client with what its callbacks saw.
type device struct {
	*cloud.Client
	orders    chan *cloud.Order
	errs      chan error
	connected chan struct{}
}

func dialDevice(t *testing.T, brokerURL string, tweak func(*cloud.Config)) (*device, error) {
	t.Helper()
	d := &device{orders: make(chan *cloud.Order, 16), errs: make(chan error, 16), connected: make(chan struct{}, 16)}
	cfg := cloud.Config{
		Broker:               brokerURL,
		Identity:             dev,
		MaxReconnectInterval: 200 * time.Millisecond,
		OnOrder:              func(o *cloud.Order, raw []byte) { d.orders <- o },
		OnError: func(err error) {
			select {
			case d.errs <- err:
			default:
			}
		},
		OnConnect: func() { d.connected <- struct{}{} },
	}
	if tweak != nil {
		tweak(&cfg)
	}
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	c, err := cloud.Dial(ctx, cfg)
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { c.Close() })
	d.Client = c
	return d, nil
}

func (d *device) nextOrder(t *testing.T) *cloud.Order {
	t.Helper()
	select {
	case o := <-d.orders:
		return o
	case <-time.After(testTimeout):
		t.Fatal("no order arrived")
		return nil
	}
}

// wire is an operator's MQTT client that sees the exact bytes on the wire.
type wire struct {
	mq   paho.Client
	msgs chan paho.Message
}

func dialWire(t *testing.T, b *cloudtest.Broker) *wire {
	t.Helper()
	w := &wire{msgs: make(chan paho.Message, 64)}
	w.mq = paho.NewClient(paho.NewClientOptions().AddBroker("tcp://" + b.Addr()).
		SetClientID("wire").SetUsername(opUser).SetPassword(opPass).SetCleanSession(true).SetAutoReconnect(false))
	if tok := w.mq.Connect(); !tok.WaitTimeout(testTimeout) || tok.Error() != nil {
		t.Fatalf("operator connect: %v", tok.Error())
	}
	t.Cleanup(func() { w.mq.Disconnect(0) })
	tok := w.mq.Subscribe("/ota/device/#", 1, func(_ paho.Client, m paho.Message) { w.msgs <- m })
	if !tok.WaitTimeout(testTimeout) || tok.Error() != nil {
		t.Fatalf("operator subscribe: %v", tok.Error())
	}
	return w
}

func (w *wire) publish(t *testing.T, topic string, payload []byte) {
	t.Helper()
	if tok := w.mq.Publish(topic, 1, false, payload); !tok.WaitTimeout(testTimeout) || tok.Error() != nil {
		t.Fatalf("publish %s: %v", topic, tok.Error())
	}
}

// next returns the next message on topic, skipping the operator's own
// orders that it also sees on /ota/device/#.
func (w *wire) next(t *testing.T, topic string) string {
	t.Helper()
	for {
		select {
		case m := <-w.msgs:
			if m.Topic() == topic {
				return string(m.Payload())
			}
		case <-time.After(testTimeout):
			t.Fatalf("nothing arrived on %s", topic)
			return ""
		}
	}
}

func order(id int64, version string) []byte {
	o := cloud.Order{
		Code: cloud.OrderCodeSuccess, Message: cloud.OrderMessageSuccess, ID: id,
		Data: cloud.OrderData{
			Size: 584064, Version: version, URL: "http://127.0.0.1:9/fw.bin?a=1&b=2",
			SignMethod: "SHA256", Sign: strings.Repeat("5e", 32),
			Otaport: &cloud.Extension{Scheme: "ecdsa-p256", SecurityCounter: 2, Board: "stm32f407-disco", Campaign: "c-1"},
		},
	}
	b, err := cloud.Marshal(o)
	if err != nil {
		panic(err)
	}
	return b
}

func TestClient_OrderProgressInformOnTheWire(t *testing.T) {
	b := startBroker(t, "127.0.0.1:0", nil)
	w := dialWire(t, b)
	d, err := dialDevice(t, "tcp://"+b.Addr(), nil)
	if err != nil {
		t.Fatal(err)
	}
	topics := cloud.Topics(dev.ProductKey, dev.DeviceName)
	if d.Topics() != topics {
		t.Fatalf("Topics = %+v", d.Topics())
	}
	ctx := context.Background()

	if err := d.Inform(ctx, "1.0.1"); err != nil {
		t.Fatal(err)
	}
	if got := w.next(t, topics.Inform); got != `{"id":1,"params":{"version":"1.0.1"}}` {
		t.Errorf("inform on the wire: %s", got)
	}

	w.publish(t, topics.Upgrade, order(1553688236684, "app-1.1.0"))
	o := d.nextOrder(t)
	method, sum := o.Digest()
	if o.ID != 1553688236684 || o.Data.Version != "app-1.1.0" || o.Data.URL != "http://127.0.0.1:9/fw.bin?a=1&b=2" ||
		method != cloud.DigestSHA256 || len(sum) != 32 || o.Data.Otaport.Board != "stm32f407-disco" {
		t.Errorf("order = %+v", o)
	}

	if err := d.Progress(ctx, cloud.StepPercent(45), "downloading"); err != nil {
		t.Fatal(err)
	}
	if got := w.next(t, topics.Progress); got != `{"id":1553688236684,"params":{"step":"45","desc":"downloading"}}` {
		t.Errorf("progress on the wire: %s", got)
	}
	if err := d.Progress(ctx, cloud.StepVerifyFailed, "hash mismatch"); err != nil {
		t.Fatal(err)
	}
	if got := w.next(t, topics.Progress); got != `{"id":1553688236684,"params":{"step":"-3","desc":"hash mismatch"}}` {
		t.Errorf("failure on the wire: %s", got)
	}
	if err := d.Request(ctx, "1.0.1"); err != nil {
		t.Fatal(err)
	}
	if got := w.next(t, topics.Request); got != `{"id":2,"params":{"version":"1.0.1"}}` {
		t.Errorf("request on the wire: %s", got)
	}
	if err := d.Progress(ctx, cloud.Step("150"), ""); err == nil {
		t.Error("Progress accepted step 150")
	}
}

// TestClient_ModulesOnTheWire: a device of several modules informs once per
// module and reports the progress of each module's order with its module and
// its order's id, whichever order came last.
func TestClient_ModulesOnTheWire(t *testing.T) {
	b := startBroker(t, "127.0.0.1:0", nil)
	w := dialWire(t, b)
	d, err := dialDevice(t, "tcp://"+b.Addr(), nil)
	if err != nil {
		t.Fatal(err)
	}
	topics, ctx := d.Topics(), context.Background()
	steps := []struct {
		send  func() error
		topic string
		want  string
	}{
		{func() error { return d.InformModule(ctx, cloud.DefaultModule, "1.0.0") }, topics.Inform, `{"id":1,"params":{"version":"1.0.0"}}`},
		{func() error { return d.InformModule(ctx, "wifi", "2.0.0") }, topics.Inform, `{"id":2,"params":{"version":"2.0.0","module":"wifi"}}`},
		{func() error {
			return d.Report(ctx, cloud.Progress{ID: 11, Params: cloud.ProgressParams{Step: "40", Desc: "downloading", Module: "wifi"}})
		}, topics.Progress, `{"id":11,"params":{"step":"40","desc":"downloading","module":"wifi"}}`},
		{func() error { return d.Report(ctx, cloud.NewFailure(10, cloud.StepFlashFailed, "write")) }, topics.Progress, `{"id":10,"params":{"step":"-4","desc":"write"}}`},
	}
	for i, s := range steps {
		if err := s.send(); err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		if got := w.next(t, s.topic); got != s.want {
			t.Errorf("step %d on the wire: %s, want %s", i, got, s.want)
		}
	}
	if err := d.InformModule(ctx, "wi\x01fi", "1"); err == nil {
		t.Error("InformModule took a module with a control character")
	}
	// Each module's reports carry the hash of its own running image.
	hash := strings.Repeat("ab", 32)
	if err := d.SetImageHash("wifi", hash); err != nil {
		t.Fatal(err)
	}
	if err := d.InformModule(ctx, "wifi", "2.0.0"); err != nil {
		t.Fatal(err)
	}
	if got, want := w.next(t, topics.Inform), `{"id":3,"params":{"version":"2.0.0","module":"wifi","imageHash":"`+hash+`"}}`; got != want {
		t.Errorf("inform with an image hash on the wire: %s, want %s", got, want)
	}
	if err := d.InformModule(ctx, cloud.DefaultModule, "1.0.0"); err != nil {
		t.Fatal(err)
	}
	if got, want := w.next(t, topics.Inform), `{"id":4,"params":{"version":"1.0.0"}}`; got != want {
		t.Errorf("the default module's inform took the wifi module's hash: %s, want %s", got, want)
	}
	if err := d.SetImageHash("wifi", strings.ToUpper(hash)); err == nil {
		t.Error("SetImageHash took upper-case hex, which the fleet would not match against a delta's base")
	}
	if err := d.Report(ctx, cloud.Progress{ID: 1, Params: cloud.ProgressParams{Step: "150"}}); err == nil {
		t.Error("Report took step 150")
	}
}

func TestClient_DuplicateOrderIgnored(t *testing.T) {
	b := startBroker(t, "127.0.0.1:0", nil)
	w := dialWire(t, b)
	d, err := dialDevice(t, "tcp://"+b.Addr(), nil)
	if err != nil {
		t.Fatal(err)
	}
	up := d.Topics().Upgrade
	w.publish(t, up, order(7, "2.0.0"))
	w.publish(t, up, order(7, "2.0.0"))
	w.publish(t, up, order(7, "2.0.0-tampered")) // same id: still the same order
	w.publish(t, up, order(8, "2.0.1"))
	// Orders are handled in arrival order, so when 8 arrives the copies of
	// 7 have been dropped.
	if o := d.nextOrder(t); o.ID != 7 || o.Data.Version != "2.0.0" {
		t.Fatalf("first order %d %s", o.ID, o.Data.Version)
	}
	if o := d.nextOrder(t); o.ID != 8 {
		t.Fatalf("second order delivered is %d, want 8 (duplicates of 7 must be ignored)", o.ID)
	}
	select {
	case o := <-d.orders:
		t.Fatalf("extra order %d", o.ID)
	default:
	}
}

func TestClient_MalformedOrderAnsweredWithFailure(t *testing.T) {
	b := startBroker(t, "127.0.0.1:0", nil)
	w := dialWire(t, b)
	d, err := dialDevice(t, "tcp://"+b.Addr(), nil)
	if err != nil {
		t.Fatal(err)
	}
	topics := d.Topics()
	bad := []struct {
		name, payload, wantDesc string
		wantID                  int64
	}{
		{"zero size", `{"code":"1000","data":{"size":0,"version":"v","url":"https://h/x","md5":"` + strings.Repeat("0", 32) + `"},"id":41,"message":"success"}`, "data.size is 0", 41},
		{"not success", `{"code":"1000","data":{},"id":42,"message":"fail"}`, `message is \"fail\"`, 42},
		{"not JSON", `{{{`, "not JSON", 0},
		{"oversized", `{"id":43,"pad":"` + strings.Repeat("x", cloud.MaxOrderSize) + `"}`, "more than the 16384 accepted", 0},
	}
	for _, c := range bad {
		w.publish(t, topics.Upgrade, []byte(c.payload))
		got := w.next(t, topics.Progress)
		var p cloud.Progress
		if err := json.Unmarshal([]byte(got), &p); err != nil {
			t.Fatalf("%s: progress %s: %v", c.name, got, err)
		}
		if p.ID != c.wantID || p.Params.Step != cloud.StepUpgradeFailed || !strings.Contains(got, c.wantDesc) || !strings.HasPrefix(p.Params.Desc, "invalid upgrade order: ") {
			t.Errorf("%s: progress %s, want step -1, id %d, desc with %q", c.name, got, c.wantID, c.wantDesc)
		}
		select {
		case err := <-d.errs:
			if !errors.Is(err, cloud.ErrInvalidOrder) {
				t.Errorf("%s: OnError got %v", c.name, err)
			}
		case <-time.After(testTimeout):
			t.Errorf("%s: OnError not called", c.name)
		}
	}
	// Nothing else changed: no order was delivered, and a good one still is.
	w.publish(t, topics.Upgrade, order(50, "3.0"))
	if o := d.nextOrder(t); o.ID != 50 {
		t.Errorf("order after the malformed ones: %d", o.ID)
	}
}

func TestClient_ReconnectsAndResubscribes(t *testing.T) {
	b1 := startBroker(t, "127.0.0.1:0", nil)
	addr := b1.Addr()
	// A reconnection attempt may reach the old listener as it closes and
	// wait for a CONNACK that never comes; a short attempt keeps the test
	// quick.
	d, err := dialDevice(t, "tcp://"+addr, func(c *cloud.Config) { c.ConnectTimeout = 2 * time.Second })
	if err != nil {
		t.Fatal(err)
	}
	// The broker goes away and comes back on the same port, with no memory
	// of the device's session.
	if err := b1.Close(); err != nil {
		t.Fatal(err)
	}
	b2 := startBroker(t, addr, nil)
	select {
	case <-d.connected:
	case <-time.After(testTimeout):
		t.Fatal("the client did not reconnect")
	}
	w := dialWire(t, b2)
	w.publish(t, d.Topics().Upgrade, order(99, "4.0"))
	if o := d.nextOrder(t); o.ID != 99 {
		t.Fatalf("order after restart: %d", o.ID)
	}
	if err := d.Progress(context.Background(), cloud.StepPercent(100), ""); err != nil {
		t.Fatal(err)
	}
	if got := w.next(t, d.Topics().Progress); got != `{"id":99,"params":{"step":"100"}}` {
		t.Errorf("progress after restart: %s", got)
	}
}

// TestClient_MovesToTheNextBroker gives the client the nodes of a cluster:
// it signs in to the first, and when that one dies it reconnects to the
// next, subscribes again and takes its orders there.
func TestClient_MovesToTheNextBroker(t *testing.T) {
	b1 := startBroker(t, "127.0.0.1:0", nil)
	b2 := startBroker(t, "127.0.0.1:0", nil)
	w2 := dialWire(t, b2)
	d, err := dialDevice(t, "tcp://"+b1.Addr()+", tcp://"+b2.Addr(), func(c *cloud.Config) { c.ConnectTimeout = 2 * time.Second })
	if err != nil {
		t.Fatal(err)
	}
	w1 := dialWire(t, b1)
	w1.publish(t, d.Topics().Upgrade, order(1, "2.0"))
	if o := d.nextOrder(t); o.ID != 1 {
		t.Fatalf("order on the first broker: %d", o.ID)
	}
	if err := b1.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-d.connected:
	case <-time.After(testTimeout):
		t.Fatal("the client did not reconnect to the second broker")
	}
	w2.publish(t, d.Topics().Upgrade, order(2, "3.0"))
	if o := d.nextOrder(t); o.ID != 2 {
		t.Fatalf("order on the second broker: %d", o.ID)
	}
}

func TestDial_Refusals(t *testing.T) {
	b := startBroker(t, "127.0.0.1:0", nil)
	url := "tcp://" + b.Addr()
	_, err := dialDevice(t, url, func(c *cloud.Config) { c.Identity.DeviceSecret = "wrong" })
	if err == nil {
		t.Fatal("Dial with a wrong secret succeeded")
	}
	_, err = dialDevice(t, url, func(c *cloud.Config) { c.Identity.DeviceName = "stranger" })
	if err == nil {
		t.Fatal("Dial as an unknown device succeeded")
	}
	// The SDK form with hmacmd5 signs in too.
	if _, err := dialDevice(t, url, func(c *cloud.Config) {
		c.Sign = cloud.SignOptions{Form: cloud.FormSDK, Method: cloud.MethodHMACMD5}
	}); err != nil {
		t.Fatalf("SDK form refused: %v", err)
	}
}

func TestDial_HonoursContext(t *testing.T) {
	// A listener that accepts and never answers: CONNACK never comes.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err == nil {
			accepted <- c
		}
	}()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := cloud.Dial(ctx, cloud.Config{Broker: "tcp://" + ln.Addr().String(), Identity: dev, OnOrder: func(*cloud.Order, []byte) {}})
		done <- err
	}()
	var conn net.Conn
	select {
	case conn = <-accepted:
		defer conn.Close()
	case <-time.After(testTimeout):
		t.Fatal("Dial never connected")
	}
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Dial err = %v, want context.Canceled", err)
		}
	case <-time.After(testTimeout):
		t.Fatal("Dial ignored its context")
	}
}

func TestDial_ConfigErrors(t *testing.T) {
	good := cloud.Config{Broker: "tcp://127.0.0.1:1", Identity: dev, OnOrder: func(*cloud.Order, []byte) {}}
	cases := []struct {
		name  string
		tweak func(*cloud.Config)
		want  string
	}{
		{"no OnOrder", func(c *cloud.Config) { c.OnOrder = nil }, "Config.OnOrder is nil"},
		{"bad scheme", func(c *cloud.Config) { c.Broker = "http://127.0.0.1:1" }, `scheme "http"`},
		{"no host", func(c *cloud.Config) { c.Broker = "127.0.0.1:1883" }, "Config.Broker"},
		{"bad second broker", func(c *cloud.Config) { c.Broker = "tcp://127.0.0.1:1,127.0.0.1:2" }, `Config.Broker "127.0.0.1:2"`},
		{"mixed transports", func(c *cloud.Config) { c.Broker = "tcp://127.0.0.1:1, ssl://127.0.0.1:2" }, "mixes TLS and plain TCP"},
		{"keepalive too short", func(c *cloud.Config) { c.KeepAlive = 5 * time.Second }, "Config.KeepAlive is 5s; the platform accepts 30s to 20m0s"},
		{"keepalive too long", func(c *cloud.Config) { c.KeepAlive = time.Hour }, "Config.KeepAlive is 1h0m0s"},
		{"missing CA file", func(c *cloud.Config) {
			c.Broker = "ssl://127.0.0.1:1"
			c.CAFile = filepath.Join(t.TempDir(), "none.pem")
		}, "Config.CAFile"},
		{"bad method", func(c *cloud.Config) { c.Sign.Method = "rsa" }, `method "rsa"`},
		{"no secret", func(c *cloud.Config) { c.Identity.DeviceSecret = "" }, "device secret is empty"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := good
			c.tweak(&cfg)
			_, err := cloud.Dial(context.Background(), cfg)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want it to mention %q", err, c.want)
			}
		})
	}
	// The test override lifts the platform's range.
	cfg := good
	cfg.KeepAlive, cfg.AnyKeepAlive = 5*time.Second, true
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := cloud.Dial(ctx, cfg); err == nil || strings.Contains(err.Error(), "KeepAlive") {
		t.Errorf("AnyKeepAlive: err = %v, want only a connection error", err)
	}
}

func TestClient_TLS(t *testing.T) {
	certPEM, tc := selfSigned(t)
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, certPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	b := startBroker(t, "127.0.0.1:0", tc)
	url := "ssl://" + b.Addr()
	d, err := dialDevice(t, url, func(c *cloud.Config) { c.CAFile = caFile })
	if err != nil {
		t.Fatalf("TLS dial: %v", err)
	}
	if !d.IsConnected() {
		t.Error("not connected")
	}
	// Without the CA the broker's certificate is refused.
	if _, err := dialDevice(t, url, nil); err == nil {
		t.Error("TLS dial without the CA succeeded")
	}
}

// TestClient_TLSWithRootCAs: the broker's certificate is checked against
// the pool given in Config.RootCAs, which many clients may share: one with
// the broker's CA signs in, one with another CA is refused, and a pool
// beside a CA file is a configuration error.
func TestClient_TLSWithRootCAs(t *testing.T) {
	certPEM, tc := selfSigned(t)
	otherPEM, _ := selfSigned(t)
	pool := func(pem []byte) *x509.CertPool {
		p := x509.NewCertPool()
		if !p.AppendCertsFromPEM(pem) {
			t.Fatal("no certificate in the PEM")
		}
		return p
	}
	b := startBroker(t, "127.0.0.1:0", tc)
	url := "ssl://" + b.Addr()
	shared := pool(certPEM)
	for i := range 2 {
		d, err := dialDevice(t, url, func(c *cloud.Config) { c.RootCAs = shared })
		if err != nil {
			t.Fatalf("TLS dial %d with the broker's CA in RootCAs: %v", i, err)
		}
		if !d.IsConnected() {
			t.Errorf("client %d not connected", i)
		}
	}
	_, err := dialDevice(t, url, func(c *cloud.Config) { c.RootCAs = pool(otherPEM) })
	if err == nil {
		t.Error("TLS dial with another CA in RootCAs succeeded")
	}
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, certPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = dialDevice(t, url, func(c *cloud.Config) { c.RootCAs, c.CAFile = shared, caFile })
	if err == nil || !strings.Contains(err.Error(), "RootCAs and CAFile") {
		t.Errorf("RootCAs and CAFile both given: err = %v, want one that names both", err)
	}
}

// selfSigned makes a certificate for 127.0.0.1 and the broker's TLS config.
func selfSigned(t *testing.T) ([]byte, *tls.Config) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "otaport test broker"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IPAddresses:           []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		&tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}, MinVersion: tls.VersionTLS12}
}

// TestClient_ForgeryCannotShadowTheGenuineOrder: a forged order that takes
// the id of the next genuine, signed order reaches the agent (which refuses
// it), and does not make the client drop the genuine one as a duplicate;
// the genuine one delivered again is still a duplicate.
func TestClient_ForgeryCannotShadowTheGenuineOrder(t *testing.T) {
	b := startBroker(t, "127.0.0.1:0", nil)
	w := dialWire(t, b)
	d, err := dialDevice(t, "tcp://"+b.Addr(), nil)
	if err != nil {
		t.Fatal(err)
	}
	signedOrder := func(version, signature string) []byte {
		o := cloud.Order{
			Code: cloud.OrderCodeSuccess, Message: cloud.OrderMessageSuccess, ID: 9,
			Data: cloud.OrderData{Size: 4096, Version: version, URL: "http://127.0.0.1:9/fw.bin",
				SignMethod: "SHA256", Sign: strings.Repeat("5e", 32),
				Otaport: &cloud.Extension{Scheme: "ecdsa-p256", Board: "stm32f407-disco", Signer: strings.Repeat("ab", 32), Signature: signature}},
		}
		raw, err := cloud.Marshal(o)
		if err != nil {
			t.Fatal(err)
		}
		return raw
	}
	forged := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{'f'}, ed25519.SignatureSize))
	genuine := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{'g'}, ed25519.SignatureSize))
	up := d.Topics().Upgrade
	w.publish(t, up, signedOrder("6.6.6", forged))
	w.publish(t, up, signedOrder("2.0.0", genuine))
	w.publish(t, up, signedOrder("2.0.0", genuine)) // redelivered
	w.publish(t, up, order(10, "2.0.1"))
	if o := d.nextOrder(t); o.Data.Version != "6.6.6" {
		t.Fatalf("first order %s, want the forgery (the agent refuses it)", o.Data.Version)
	}
	if o := d.nextOrder(t); o.Data.Version != "2.0.0" {
		t.Fatalf("second order %s, want the genuine one", o.Data.Version)
	}
	// Orders are handled in arrival order: the redelivery came before 10.
	if o := d.nextOrder(t); o.ID != 10 {
		t.Fatalf("third order %d %s, want 10 (the redelivered genuine order is a duplicate)", o.ID, o.Data.Version)
	}
}

// TestClient_ReconnectsWhenItsSubscriptionIsNotAnswered: after a
// reconnection, the broker takes the connection but never answers the
// upgrade topic's subscription (a NATS node whose JetStream has no leader
// for the sessions' stream yet, after a crash). The client must not stay
// connected without its subscription, deaf to every order: it drops that
// connection and subscribes on a new one.
func TestClient_ReconnectsWhenItsSubscriptionIsNotAnswered(t *testing.T) {
	b := startBroker(t, "127.0.0.1:0", nil)
	// Link 0 is cut once the device is up; link 1 loses every SUBSCRIBE.
	p := mqtttest.Start(t, b.Addr(), func(link int, toBroker bool, pk *mqtt.Packet) mqtttest.Action {
		if link == 1 && pk.Type == mqtt.SUBSCRIBE {
			return mqtttest.Drop
		}
		return mqtttest.Pass
	})
	d, err := dialDevice(t, "tcp://"+p.Addr(), func(c *cloud.Config) { c.ConnectTimeout = 2 * time.Second })
	if err != nil {
		t.Fatal(err)
	}
	p.CutAll()
	select {
	case <-d.connected:
	case <-time.After(testTimeout):
		t.Fatalf("the device is not subscribed again after %d connections", p.Links())
	}
	if n := p.Links(); n < 3 {
		t.Fatalf("subscribed on link %d, want a link after the one that lost its SUBSCRIBE", n-1)
	}
	w := dialWire(t, b)
	w.publish(t, d.Topics().Upgrade, order(7, "2.0"))
	if o := d.nextOrder(t); o.ID != 7 {
		t.Fatalf("order %d, want 7", o.ID)
	}
}
