package agent_test

import (
	"crypto"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/otaport/otaport/core/cloud"
	"github.com/otaport/otaport/core/event"
	"github.com/otaport/otaport/core/image"
	"github.com/otaport/otaport/core/keyset"
)

// publishKeySets sends a key set chain on the rig's product topic.
func (r *rig) publishKeySets(docs ...[]byte) {
	r.t.Helper()
	raw := make([]json.RawMessage, len(docs))
	for i, d := range docs {
		raw[i] = d
	}
	b, err := json.Marshal(raw)
	if err != nil {
		r.t.Fatal(err)
	}
	if err := r.broker.Publish(cloud.KeySetTopic(pk), b); err != nil {
		r.t.Fatal(err)
	}
}

func keySetInform(v uint64) func(m msg) bool {
	return func(m msg) bool {
		if m.kind != cloud.KindInform {
			return false
		}
		in, err := cloud.ParseInform(m.payload)
		return err == nil && in.Params.KeySet == v
	}
}

// keySetEvents returns the messages of the agent's key set events so far.
func (r *rig) keySetEvents() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, ev := range r.events {
		if ev.Kind == event.KeySet {
			out = append(out, ev.Message)
		}
	}
	return out
}

// TestAgent_TakesKeySetsAndReportsThem: the agent takes the sets of a chain
// newer than its own, says which version it holds in its version reports,
// refuses a forged set with the reason, and after a restart still holds and
// reports the set it took.
func TestAgent_TakesKeySetsAndReportsThem(t *testing.T) {
	r := newRig(t)
	stop := r.start(r.config())
	i := r.waitFor("inform 1.0.0+0 at start", 0, informOf("1.0.0+0"))
	if !keySetInform(0)(r.since(i - 1)[0]) {
		t.Fatal("the first version report names a key set the device never took")
	}
	next, err := image.GenerateKey(r.scheme)
	if err != nil {
		t.Fatal(err)
	}
	stranger, err := image.GenerateKey(r.scheme)
	if err != nil {
		t.Fatal(err)
	}
	own := []crypto.PublicKey{r.key.Public()}
	mk := func(sp keyset.Spec, by ...crypto.Signer) []byte {
		raw, err := keyset.Sign(sp, by...)
		if err != nil {
			t.Fatal(err)
		}
		return raw
	}
	v1 := mk(keyset.Spec{Version: 1, Roots: own, ImageKeys: []crypto.PublicKey{r.key.Public(), next.Public()}}, r.key)
	forged := mk(keyset.Spec{Version: 2, Roots: []crypto.PublicKey{stranger.Public()}, ImageKeys: []crypto.PublicKey{stranger.Public()}}, stranger)
	v2 := mk(keyset.Spec{Version: 2, Roots: own, ImageKeys: own}, r.key)

	r.publishKeySets(v1)
	i = r.waitFor("a version report with key set 1", i, keySetInform(1))
	// The chain again with a forged set on top: v1 is not taken twice, the
	// forgery is refused and said why.
	r.publishKeySets(v1, forged)
	waitUntil(t, "the forged set's refusal", func() bool {
		evs := r.keySetEvents()
		return len(evs) > 0 && strings.Contains(evs[len(evs)-1], "refused: version 2") && strings.Contains(evs[len(evs)-1], "signed by 0")
	})
	r.publishKeySets(v1, v2)
	r.waitFor("a version report with key set 2", i, keySetInform(2))
	if evs := r.keySetEvents(); len(evs) != 3 || !strings.HasPrefix(evs[0], "key set version 1 taken") || !strings.HasPrefix(evs[2], "key set version 2 taken") {
		t.Fatalf("key set events %q, want v1 taken, the forgery refused, v2 taken", evs)
	}

	stop()
	n := len(r.since(0))
	r.start(r.config())
	j := r.waitFor("inform after the restart", n, informOf("1.0.0+0"))
	if !keySetInform(2)(r.since(j - 1)[0]) {
		t.Fatalf("after a restart the version report says %s, want key set 2", r.since(j - 1)[0].payload)
	}
}

// waitUntil polls cond until it holds, or fails the test after a while.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for range 3000 {
		if cond() {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("no %s", what)
}
