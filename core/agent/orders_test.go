package agent_test

import (
	"crypto/ed25519"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/otaport/otaport/core/agent"
	"github.com/otaport/otaport/core/cloud"
)

// orderSigner is otaserve's side of signed orders in the rig: its order key
// and its counter of the device's orders.
type orderSigner struct {
	t       *testing.T
	key     ed25519.PrivateKey
	file    string // the public key's PEM file, for device.yaml's order_key
	counter uint64
}

func newOrderSigner(t *testing.T, dir string) *orderSigner {
	t.Helper()
	pub, key, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "order.pub")
	if err := os.WriteFile(file, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	return &orderSigner{t: t, key: key, file: file}
}

// seal fills in what a signed order carries, for this rig's device, the
// given nonce and the signer's next counter, valid for an hour.
func (s *orderSigner) seal(o *cloud.Order, nonce string) {
	s.counter++
	x := o.Data.Otaport
	x.ProductKey, x.DeviceName = pk, dn
	x.Expires, x.Counter, x.Nonce = time.Now().Add(time.Hour).Unix(), s.counter, nonce
}

func (s *orderSigner) sign(o *cloud.Order, key ed25519.PrivateKey) {
	s.t.Helper()
	if err := cloud.SignOrder(o, key); err != nil {
		s.t.Fatal(err)
	}
}

// lastNonce returns the nonce of the device's latest version report.
func (r *rig) lastNonce() string {
	r.t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := len(r.msgs) - 1; i >= 0; i-- {
		if r.msgs[i].kind != cloud.KindInform {
			continue
		}
		in, err := cloud.ParseInform(r.msgs[i].payload)
		if err != nil {
			r.t.Fatal(err)
		}
		if in.Params.Nonce == "" {
			r.t.Fatalf("version report %s carries no nonce", r.msgs[i].payload)
		}
		return in.Params.Nonce
	}
	r.t.Fatal("no version report yet")
	return ""
}

// TestAgent_SignedOrders: with order_key set, the agent takes an order only
// when otaserve's key signed it for this device and board, unexpired, with
// a counter above the last it took and the nonce of its latest version
// report. Each refusal is reported with its reason and leaves the flash as
// it was; the genuine order installs, and replayed after a restart (the
// cloud client's memory of order ids gone with the process) it is refused
// for its counter, which the device record kept.
func TestAgent_SignedOrders(t *testing.T) {
	r := newRig(t)
	s := newOrderSigner(t, r.dir)
	cfg := r.config()
	cfg.OrderKey, cfg.SignedOrders = s.file, nil
	stop := r.start(cfg)
	i := r.waitFor("inform 1.0.0+0 at start", 0, informOf("1.0.0+0"))
	nonce := r.lastNonce()

	_, otherKey, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	refusals := []struct {
		name string
		edit func(o *cloud.Order) // after seal, before signing, unless it signs
		sign bool                 // sign after edit with the order key
		want string
	}{
		{"unsigned", nil, false, "the order is not signed (no data.otaport.signature)"},
		{"another key", func(o *cloud.Order) { s.sign(o, otherKey) }, false, "signed by order key"},
		{"another device", func(o *cloud.Order) { o.Data.Otaport.DeviceName = "dev-2" }, true, "the order is for device pk/dev-2, this is pk/dev"},
		{"another board", func(o *cloud.Order) { o.Data.Otaport.Board = "b-l475e-iot01a" }, true, `the order is for board "b-l475e-iot01a", this device is a nucleo-h743zi`},
		{"expired", func(o *cloud.Order) { o.Data.Otaport.Expires = time.Now().Add(-time.Minute).Unix() }, true, "the order expired at"},
		{"stale nonce", func(o *cloud.Order) { o.Data.Otaport.Nonce = strings.Repeat("0", 32) }, true, "the order answers version report nonce \"" + strings.Repeat("0", 32) + "\""},
		{"tampered", func(o *cloud.Order) {
			s.sign(o, s.key)
			o.Data.URL += "?evil"
		}, false, "the signature does not match the order"},
	}
	for n, c := range refusals {
		ops := r.flash.Ops()
		o := r.newOrder(int64(2001+n), "1.1.0", nil)
		s.seal(o, nonce)
		if c.edit != nil {
			c.edit(o)
		}
		if c.sign {
			s.sign(o, s.key)
		}
		r.publish(o)
		i = r.waitFor(c.name+" refused", i, progressOf(cloud.StepUpgradeFailed, c.want))
		if got := r.flash.Ops(); got != ops {
			t.Errorf("%s: %d flash operations for a refused order, want none", c.name, got-ops)
		}
		if v := r.running().Version; v != "1.0.0+0" {
			t.Fatalf("%s: runs %s after a refused order", c.name, v)
		}
	}

	// The genuine order.
	genuine := r.newOrder(2100, "1.1.0", nil)
	s.seal(genuine, nonce)
	s.sign(genuine, s.key)
	r.publish(genuine)
	i = r.waitFor("inform 1.1.0+0", i, informOf("1.1.0+0"))
	if st := r.running(); st.Version != "1.1.0+0" || !st.Confirmed {
		t.Fatalf("after the signed order the running slot is %+v, want 1.1.0+0 confirmed", st)
	}

	// Delivered again to a restarted agent: the order it took, as a broker
	// redelivers it or a replica that took over a campaign sends it again.
	// It is ignored, without a report: a failure reported for it would
	// count the device's upgrade as failed. An older order is a replay,
	// refused and reported; the agent handles orders in turn, so the
	// duplicate's report, had there been one, would come before.
	stop()
	r.start(cfg)
	i = r.waitFor("inform 1.1.0+0 after the restart", i, informOf("1.1.0+0"))
	ops := r.flash.Ops()
	r.publish(genuine)
	older := r.newOrder(2101, "1.2.0", nil)
	s.seal(older, r.lastNonce())
	older.Data.Otaport.Counter = genuine.Data.Otaport.Counter - 1
	s.sign(older, s.key)
	r.publish(older)
	j := r.waitFor("replay refused", i, progressOf(cloud.StepUpgradeFailed, fmt.Sprintf("order counter %d is not above %d, the last this device took: a replayed order",
		older.Data.Otaport.Counter, genuine.Data.Otaport.Counter)))
	r.mu.Lock()
	for _, m := range r.msgs[i : j-1] {
		if m.kind == cloud.KindProgress {
			t.Errorf("the order taken, delivered again, was answered: %s", m.payload)
		}
	}
	r.mu.Unlock()
	if got := r.flash.Ops(); got != ops {
		t.Errorf("replay: %d flash operations for a refused order, want none", got-ops)
	}
}

// TestAgent_UntrustedClockSkipsExpiry: trusted_clock: false takes an order
// past its expiry (a device without a clock cannot tell), and the nonce
// still refuses one made before its latest version report.
func TestAgent_UntrustedClockSkipsExpiry(t *testing.T) {
	r := newRig(t)
	s := newOrderSigner(t, r.dir)
	cfg := r.config()
	cfg.OrderKey, cfg.SignedOrders = s.file, nil
	off := false
	cfg.TrustedClock = &off
	r.start(cfg)
	i := r.waitFor("inform 1.0.0+0 at start", 0, informOf("1.0.0+0"))
	nonce := r.lastNonce()

	stale := r.newOrder(3001, "1.1.0", nil)
	s.seal(stale, strings.Repeat("ab", 16))
	s.sign(stale, s.key)
	r.publish(stale)
	i = r.waitFor("stale nonce refused", i, progressOf(cloud.StepUpgradeFailed, "the order answers version report nonce"))

	old := r.newOrder(3002, "1.1.0", nil)
	s.seal(old, nonce)
	old.Data.Otaport.Expires = time.Now().Add(-24 * time.Hour).Unix()
	s.sign(old, s.key)
	r.publish(old)
	r.waitFor("inform 1.1.0+0", i, informOf("1.1.0+0"))
}

// TestNew_OrderKeyMustBeEd25519: an image key given as the order key is
// refused at the start, with the field and the fix.
func TestNew_OrderKeyMustBeEd25519(t *testing.T) {
	r := newRig(t)
	cfg := r.config()
	cfg.OrderKey, cfg.SignedOrders = r.keyFile, nil // the image key: ECDSA P-256
	_, err := agent.New(agent.Options{Config: cfg, Port: r.dev})
	if err == nil || !strings.Contains(err.Error(), "order_key") || !strings.Contains(err.Error(), "want otaserve's Ed25519 order key") {
		t.Errorf("New with an image key as order key: %v, want an error naming order_key and the fix", err)
	}
}
