package agent_test

import (
	"crypto/ed25519"
	"encoding/json"
	"testing"
	"time"

	"github.com/otaport/otaport/core/agent"
	"github.com/otaport/otaport/core/cloud"
)

// publishStatement sends a release statement of the rig's product, issued
// at issued, signed with key, on the product's release topic.
func (r *rig) publishStatement(key ed25519.PrivateKey, product string, issued time.Time) {
	r.t.Helper()
	s := cloud.Statement{Product: product, Issued: issued.UnixMilli(), Expires: issued.Add(time.Hour).Unix(),
		Releases: []cloud.Release{{Board: "nucleo-h743zi", Version: "1.0.0+0"}}}
	cloud.SignStatement(&s, key)
	b, err := json.Marshal(s)
	if err != nil {
		r.t.Fatal(err)
	}
	if err := r.broker.Publish(cloud.ReleaseTopic(product), b); err != nil {
		r.t.Fatal(err)
	}
}

func frozenInform(frozen bool) func(m msg) bool {
	return func(m msg) bool {
		if m.kind != cloud.KindInform {
			return false
		}
		in, err := cloud.ParseInform(m.payload)
		return err == nil && in.Params.PossiblyFrozen == frozen
	}
}

// TestAgent_ReportsPossiblyFrozen: an agent that hears no release
// statement from otaserve for freeze_after says so in its version report
// (Uptane's freeze: orders withheld from it); statements that are not
// otaserve's, of another product or replayed do not end it; a genuine one
// does, in the next version report.
func TestAgent_ReportsPossiblyFrozen(t *testing.T) {
	r := newRig(t)
	s := newOrderSigner(t, r.dir)
	cfg := r.config()
	cfg.OrderKey, cfg.SignedOrders = s.file, nil
	cfg.FreezeAfter = agent.Duration(300 * time.Millisecond)
	r.start(cfg)
	i := r.waitFor("inform 1.0.0+0 at start", 0, informOf("1.0.0+0"))
	if !frozenInform(false)(r.since(i - 1)[0]) {
		t.Fatal("the first version report already says possibly frozen")
	}
	i = r.waitFor("a version report saying possibly frozen", i, frozenInform(true))

	_, other, _ := ed25519.GenerateKey(nil)
	now := time.Now()
	r.publishStatement(other, pk, now)                   // not otaserve's: refused
	r.publishStatement(s.key, pk, now.Add(-time.Minute)) // genuine: taken
	r.publishStatement(s.key, pk, now.Add(-time.Minute)) // the same again: a replay, refused
	i = r.waitFor("a version report no longer frozen", i, frozenInform(false))
	// The watch goes on: silent again for freeze_after, frozen again.
	r.waitFor("a version report possibly frozen again", i, frozenInform(true))
}
