package agent_test

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"log/slog"
	"strings"
	"sync"
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

// syncBuffer is a log destination the agent writes while the test reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestAgent_StatementReplayRefusedAfterRestart: the issue time of the last
// release statement taken is kept in the agent's record, so after a
// restart a device without a trusted clock (which cannot judge expiry)
// refuses an older, replayed statement. Before, the last one was kept in
// memory only, and the first statement after a restart was taken however
// old.
func TestAgent_StatementReplayRefusedAfterRestart(t *testing.T) {
	r := newRig(t)
	s := newOrderSigner(t, r.dir)
	cfg := r.config()
	cfg.OrderKey, cfg.SignedOrders = s.file, nil
	off := false
	cfg.TrustedClock = &off
	cfg.FreezeAfter = agent.Duration(300 * time.Millisecond)
	stop := r.start(cfg)
	i := r.waitFor("a version report saying possibly frozen", 0, frozenInform(true))
	now := time.Now()
	r.publishStatement(s.key, pk, now)
	i = r.waitFor("the statement taken: no longer frozen", i, frozenInform(false))
	// Kept between orders, which the unit reaches at once: a stop waits
	// for it.
	stop()

	var log syncBuffer
	r.startWith(agent.Options{Config: cfg, Port: r.dev, Logger: slog.New(slog.NewTextHandler(&log, nil))})
	i = r.waitFor("possibly frozen after the restart", i, frozenInform(true))
	r.publishStatement(s.key, pk, now.Add(-time.Hour))
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(log.String(), "not after the last one taken") {
		if time.Now().After(deadline) {
			t.Fatalf("the replayed statement was not refused after the restart; log:\n%s", log.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	r.publishStatement(s.key, pk, now.Add(time.Minute))
	r.waitFor("a newer statement taken", i, frozenInform(false))
}
