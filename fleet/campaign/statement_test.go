package campaign

import (
	"context"
	"crypto/ed25519"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/otaport/otaport/core/cloud"
	"github.com/otaport/otaport/fleet/store"
)

// TestService_PublishesReleaseStatements: each product with devices gets a
// statement on its release topic, signed with the order key, issued now,
// valid for the ttl, naming the version of the newest campaign not
// canceled for each board and module its devices have; a device that
// parses it as devices do verifies it. Canceled campaigns name nothing.
func TestService_PublishesReleaseStatements(t *testing.T) {
	key, _, err := LoadOrderKey(filepath.Join(t.TempDir(), OrderKeyFile), true)
	if err != nil {
		t.Fatal(err)
	}
	svc, st := newSigningService(t, filepath.Join(t.TempDir(), "fleet.db"), key)
	img := seed(t, st, 2) // pk/d0 and pk/d1 on board b, image 2.0.0+0
	if err := st.AddDevice(store.Device{ProductKey: "pk2", DeviceName: "x", Board: "c"}); err != nil {
		t.Fatal(err)
	}
	svc.SetPublisher(&recorder{})
	c, err := svc.Create(context.Background(), CreateRequest{ImageIDs: []uint64{img.ID}, Target: store.Target{Product: "pk"}, Waves: "100%", SuccessPercent: 100, ErrorPercent: 100})
	if err != nil {
		t.Fatal(err)
	}
	rec := &recorder{}
	now := time.Unix(1800000000, 0)
	if err := svc.PublishStatements(context.Background(), rec, now, 30*time.Minute); err != nil {
		t.Fatal(err)
	}
	pub := key.Public().(ed25519.PublicKey)
	got := func(pk string) *cloud.Statement {
		t.Helper()
		msgs := rec.msgs[cloud.ReleaseTopic(pk)]
		if len(msgs) != 1 {
			t.Fatalf("%d statements on %s, want 1", len(msgs), cloud.ReleaseTopic(pk))
		}
		s, err := cloud.ParseStatement(msgs[0])
		if err != nil {
			t.Fatal(err)
		}
		if err := cloud.VerifyStatement(s, pub); err != nil {
			t.Fatal(err)
		}
		if s.Product != pk || s.Issued != now.UnixMilli() || s.Expires != now.Add(30*time.Minute).Unix() {
			t.Errorf("statement of %s: %+v", pk, s)
		}
		return s
	}
	if s := got("pk"); !slices.Equal(s.Releases, []cloud.Release{{Board: "b", Version: "2.0.0+0"}}) {
		t.Errorf("releases of pk: %+v, want b at 2.0.0+0", s.Releases)
	}
	if s := got("pk2"); len(s.Releases) != 0 {
		t.Errorf("releases of pk2: %+v, want none (no campaign for board c)", s.Releases)
	}

	if _, err := svc.Cancel(context.Background(), c.ID); err != nil {
		t.Fatal(err)
	}
	rec = &recorder{}
	now = now.Add(time.Minute)
	if err := svc.PublishStatements(context.Background(), rec, now, 30*time.Minute); err != nil {
		t.Fatal(err)
	}
	if s := got("pk"); len(s.Releases) != 0 {
		t.Errorf("releases of pk after its only campaign was canceled: %+v, want none", s.Releases)
	}
}

// TestService_KeepsWhatTheDeviceSaysOfFreeze: each version report sets
// whether the device says it may be frozen, one way or the other.
func TestService_KeepsWhatTheDeviceSaysOfFreeze(t *testing.T) {
	svc, st := newService(t, filepath.Join(t.TempDir(), "fleet.db"))
	seed(t, st, 1)
	frozen := func() bool {
		t.Helper()
		d, err := st.Device("pk", "d0")
		if err != nil {
			t.Fatal(err)
		}
		return d.PossiblyFrozen
	}
	msg(t, svc, "inform", "d0", `{"id":1,"params":{"version":"1.0.0+0","possiblyFrozen":true}}`)
	if !frozen() {
		t.Error("a report saying possibly frozen was not kept")
	}
	msg(t, svc, "inform", "d0", `{"id":2,"params":{"version":"1.0.0+0"}}`)
	if frozen() {
		t.Error("a report no longer saying it left the device possibly frozen")
	}
}
