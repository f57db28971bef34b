package agent_test

import (
	"crypto/ed25519"
	"encoding/base64"
	"testing"

	"github.com/otaport/otaport/core/cloud"
	"github.com/otaport/otaport/core/image"
)

// informSays matches a version report of version v that says (or not)
// that the device takes unsigned orders.
func informSays(v string, unsigned bool) func(m msg) bool {
	return func(m msg) bool {
		in, err := cloud.ParseInform(m.payload)
		return m.kind == cloud.KindInform && err == nil && in.Params.Version == v && in.Params.UnsignedOrders == unsigned && in.Params.Nonce != ""
	}
}

// TestAgent_MigrationModeLearnsTheEndorsedOrderKey: a device.yaml without
// order_key and signed_orders (written before signed orders) takes
// unsigned orders and says so in its version reports, which carry nonces;
// an order whose order key is endorsed by another image key teaches it
// nothing; the order that brings otaserve's order key endorsed by the
// device's image key is checked with it and taken, and from then on, across
// a restart, unsigned orders are refused and the reports no longer say
// unsigned.
func TestAgent_MigrationModeLearnsTheEndorsedOrderKey(t *testing.T) {
	r := newRig(t)
	s := newOrderSigner(t, r.dir)
	cfg := r.config()
	cfg.SignedOrders = nil // nor order_key: migration mode
	if !cfg.Migration() {
		t.Fatal("a configuration without order_key and signed_orders is not in migration mode")
	}
	stop := r.start(cfg)
	i := r.waitFor("inform 1.0.0+0 saying unsigned", 0, informSays("1.0.0+0", true))

	r.order(4001, "1.1.0", nil)
	i = r.waitFor("unsigned order taken", i, informSays("1.1.0+0", true))

	pub := s.key.Public().(ed25519.PublicKey)
	carry := func(o *cloud.Order, endorsement string) {
		o.Data.Otaport.OrderKey = base64.StdEncoding.EncodeToString(pub)
		o.Data.Otaport.Endorsement = endorsement
	}
	stranger, err := image.GenerateKey(r.scheme)
	if err != nil {
		t.Fatal(err)
	}
	forged, err := cloud.Endorse(stranger, pub)
	if err != nil {
		t.Fatal(err)
	}
	r.order(4002, "1.3.0", func(o *cloud.Order) { carry(o, forged) })
	i = r.waitFor("order with a stranger's endorsement taken as unsigned", i, informSays("1.3.0+0", true))

	endorsed, err := cloud.Endorse(r.key, pub)
	if err != nil {
		t.Fatal(err)
	}
	o := r.newOrder(4003, "1.4.0", func(o *cloud.Order) { carry(o, endorsed) })
	s.seal(o, r.lastNonce())
	s.sign(o, s.key)
	r.publish(o)
	i = r.waitFor("endorsed signed order taken, unsigned no more", i, informSays("1.4.0+0", false))

	refuseUnsigned := func(id int64, from int) int {
		ops := r.flash.Ops()
		r.order(id, "1.5.0", nil)
		from = r.waitFor("unsigned order refused", from, progressOf(cloud.StepUpgradeFailed, "the order is not signed"))
		if got := r.flash.Ops(); got != ops {
			t.Errorf("%d flash operations for a refused unsigned order, want none", got-ops)
		}
		return from
	}
	i = refuseUnsigned(4004, i)

	stop()
	r.start(cfg)
	i = r.waitFor("inform 1.4.0+0 after a restart, not unsigned", i, informSays("1.4.0+0", false))
	refuseUnsigned(4005, i)
	if v := r.running().Version; v != "1.4.0+0" {
		t.Errorf("runs %s, want 1.4.0+0", v)
	}
}
