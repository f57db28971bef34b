package campaign

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/otaport/otaport/core/cloud"
	"github.com/otaport/otaport/core/event"
	"github.com/otaport/otaport/fleet/store"
)

// Hashes of running images as devices report them.
var (
	hashV1    = strings.Repeat("a1", 32)
	hashV1b   = strings.Repeat("b1", 32) // another build of 1.x
	hashOther = strings.Repeat("c0", 32)
)

// TestChooseDelta: a device is ordered the delta made from the image it
// reports running, and the full image in every other case.
func TestChooseDelta(t *testing.T) {
	deltas := []store.Image{
		{ID: 10, Size: 900, DeltaTarget: 1, DeltaBase: 2, DeltaBaseHash: hashV1},
		{ID: 11, Size: 700, DeltaTarget: 1, DeltaBase: 3, DeltaBaseHash: hashV1b},
		{ID: 12, Size: 500, DeltaTarget: 1, DeltaBase: 3, DeltaBaseHash: hashV1b}, // the same pair made smaller
	}
	for _, c := range []struct {
		name   string
		deltas []store.Image
		p      store.Progress
		want   uint64 // 0: the full image
	}{
		{"the base matches", deltas, store.Progress{FromHash: hashV1}, 10},
		{"the smallest delta of the pair", deltas, store.Progress{FromHash: hashV1b}, 12},
		{"no hash reported", deltas, store.Progress{}, 0},
		{"runs another version", deltas, store.Progress{FromHash: hashOther}, 0},
		{"no delta uploaded", nil, store.Progress{FromHash: hashV1}, 0},
		{"a delta failed before: the full image", deltas, store.Progress{FromHash: hashV1, FailedDelta: 10}, 0},
		{"a full image is never a delta", []store.Image{{ID: 13, Size: 1, Hash: hashV1}}, store.Progress{FromHash: hashV1}, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			d, ok := ChooseDelta(c.deltas, c.p)
			if ok != (c.want != 0) || d.ID != c.want {
				t.Errorf("ChooseDelta = image %d, %v; want %d", d.ID, ok, c.want)
			}
		})
	}
}

// TestMachine_DeltaOrders: the machine orders each device the delta of
// the image it reported before the order, and after a delta fails orders
// the full image instead of failing the device.
func TestMachine_DeltaOrders(t *testing.T) {
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	c, ps, err := NewCampaign(store.Campaign{ID: 1, Images: []store.CampaignImage{{ID: 1, Version: target}}, SuccessPercent: 100}, devs(3), []WaveSpec{{Count: 100, Percent: true}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := range ps {
		ps[i].Image = 1
	}
	m := NewMachine(c, ps)
	m.SetDeltas(map[uint64][]store.Image{1: {{ID: 10, Size: 100, DeltaTarget: 1, DeltaBaseHash: hashV1}}})
	for dev, hash := range map[string]string{"pk/d0": hashV1, "pk/d1": hashOther} {
		if _, err := m.Apply(Event{Kind: event.Inform, Device: dev, Version: "1.0.0", Hash: hash, At: at}); err != nil {
			t.Fatal(err)
		}
	}
	m.Start(at)
	for dev, want := range map[string]uint64{"pk/d0": 10, "pk/d1": 0, "pk/d2": 0} {
		if p, _ := m.Device(dev); p.Delta != want || p.Orders != 1 {
			t.Errorf("%s ordered delta %d (%d orders), want %d", dev, p.Delta, p.Orders, want)
		}
	}
	// d0 refuses the delta: it runs another base than it said.
	orders, err := m.Apply(Event{Kind: event.Progress, Device: "pk/d0", Step: -1, Desc: "delta base mismatch", At: at})
	if err != nil {
		t.Fatal(err)
	}
	p, _ := m.Device("pk/d0")
	if len(orders) != 1 || orders[0] != "pk/d0" || p.State != store.ProgressOrdered || p.Delta != 0 || p.FailedDelta != 10 || p.Orders != 2 {
		t.Fatalf("after the delta failed: orders %v, progress %+v; want d0 ordered again with the full image", orders, p)
	}
	if !strings.Contains(p.Reason, "delta image 10") || !strings.Contains(p.Reason, "delta base mismatch") {
		t.Errorf("reason %q: want it to name the delta and the device's reason", p.Reason)
	}
	// A reconnect before it starts keeps it on the full image.
	if _, err := m.Apply(Event{Kind: event.Inform, Device: "pk/d0", Version: "1.0.0", Hash: hashV1, At: at}); err != nil {
		t.Fatal(err)
	}
	if p, _ := m.Device("pk/d0"); p.Delta != 0 || p.Orders != 3 {
		t.Errorf("after a reconnect: delta %d, %d orders; want the full image, 3 orders", p.Delta, p.Orders)
	}
	// A failure of the full image fails the device, as without deltas.
	if _, err := m.Apply(Event{Kind: event.Progress, Device: "pk/d0", Step: -3, At: at}); err != nil {
		t.Fatal(err)
	}
	if p, _ := m.Device("pk/d0"); p.State != store.ProgressFailed {
		t.Errorf("a failed full image left d0 %s, want failed", p.State)
	}
	// Bytes: d0 was ordered the delta (100) and then the full image; the
	// others the full image.
	st := MakeStatus(m.Campaign(), m.Devices(), map[uint64]int64{1: 1000, 10: 100})
	if want := (Bytes{Sent: 100 + 3*1000, Full: 3 * 1000}); st.Bytes != want {
		t.Errorf("bytes = %+v, want %+v", st.Bytes, want)
	}
}

// TestService_DeltaOrders: a device that reports the delta's base is sent
// the delta's file, signed like any order, another device the full image;
// a delta uploaded while the campaign runs is offered from the next order.
func TestService_DeltaOrders(t *testing.T) {
	svc, st := newService(t, filepath.Join(t.TempDir(), "fleet.db"))
	img := seed(t, st, 3)
	ctx := context.Background()
	base, err := svc.AddImage(ctx, store.Image{Version: "1.0.0+0", Board: "b", Size: 4000, SHA256: fmt.Sprintf("%064x", 3), MD5: fmt.Sprintf("%032x", 4), Hash: hashV1})
	if err != nil {
		t.Fatal(err)
	}
	d, err := svc.AddImage(ctx, store.Image{Version: "2.0.0+0", Board: "b", Size: 512, SHA256: fmt.Sprintf("%064x", 5), MD5: fmt.Sprintf("%032x", 6),
		SecurityCounter: 5, SignatureType: "ed25519", KeyID: "ab", DeltaTarget: img.ID, DeltaBase: base.ID, DeltaBaseHash: hashV1})
	if err != nil {
		t.Fatal(err)
	}
	rec := &recorder{}
	svc.SetPublisher(rec)
	msg(t, svc, "inform", "d0", `{"id":1,"params":{"version":"1.0.0+0","imageHash":"`+hashV1+`"}}`)
	msg(t, svc, "inform", "d1", `{"id":1,"params":{"version":"1.0.0+0","imageHash":"`+hashOther+`"}}`)
	if dev, _ := st.Device("pk", "d0"); dev.ImageHash != hashV1 {
		t.Errorf("registry: d0's image hash %q, want the one it reported", dev.ImageHash)
	}
	c, err := svc.Create(ctx, CreateRequest{ImageIDs: []uint64{img.ID}, Target: store.Target{Product: "pk"}, Waves: "100%", SuccessPercent: 100, ErrorPercent: 100})
	if err != nil {
		t.Fatal(err)
	}
	flush(t, svc)
	o := one(t, rec, "d0")
	if o.Data.Size != d.Size || o.Data.Sign != d.SHA256 || o.Data.MD5 != d.MD5 || !strings.HasSuffix(o.Data.URL, "/"+d.SHA256) ||
		o.Data.IsDiff != 1 || o.Data.Version != img.Version {
		t.Errorf("d0's order = %+v; want delta image %d's file for version %s", o.Data, d.ID, img.Version)
	}
	for _, dn := range []string{"d1", "d2"} {
		if o := one(t, rec, dn); o.Data.Sign != img.SHA256 || o.Data.IsDiff != 0 {
			t.Errorf("%s's order = %+v; want the full image", dn, o.Data)
		}
	}
	// d0 refuses it: the next order carries the full image.
	msg(t, svc, "progress", "d0", fmt.Sprintf(`{"id":%d,"params":{"step":"-1","desc":"delta base mismatch"}}`, o.ID))
	ords := rec.orders(t, "pk", "d0")
	if len(ords) != 2 || ords[1].Data.Sign != img.SHA256 || ords[1].Data.IsDiff != 0 {
		t.Fatalf("after the delta failed d0 got %d orders, the last %+v; want a second one with the full image", len(ords), ords[len(ords)-1].Data)
	}
	stat, err := svc.Status(c.ID)
	if err != nil {
		t.Fatal(err)
	}
	if want := (Bytes{Sent: d.Size + 3*img.Size, Full: 3 * img.Size}); stat.Bytes != want {
		t.Errorf("bytes = %+v, want %+v", stat.Bytes, want)
	}
	// A delta of an image the campaign sends cannot be deleted meanwhile,
	// nor the full images it links.
	for _, id := range []uint64{d.ID, base.ID} {
		if _, _, err := svc.DeleteImage(ctx, id); err == nil {
			t.Errorf("image %d deleted while the campaign sends delta %d", id, d.ID)
		}
	}
	// A delta uploaded now reaches d1 at its next order.
	d1, err := svc.AddImage(ctx, store.Image{Version: "2.0.0+0", Board: "b", Size: 256, SHA256: fmt.Sprintf("%064x", 7), MD5: fmt.Sprintf("%032x", 8),
		DeltaTarget: img.ID, DeltaBaseHash: hashOther})
	if err != nil {
		t.Fatal(err)
	}
	msg(t, svc, "inform", "d1", `{"id":2,"params":{"version":"1.0.0+0","imageHash":"`+hashOther+`"}}`)
	if ords := rec.orders(t, "pk", "d1"); len(ords) != 2 || ords[1].Data.Sign != d1.SHA256 {
		t.Errorf("d1's orders after the new delta: %d, want a second one carrying delta %d", len(ords), d1.ID)
	}
}

// TestService_SignedDeltaOrder: the order key's signature covers the
// delta's URL, size and digest, so a device verifies a delta order as any.
func TestService_SignedDeltaOrder(t *testing.T) {
	st, err := store.Open(filepath.Join(t.TempDir(), "fleet.db"))
	if err != nil {
		t.Fatal(err)
	}
	key, _, err := LoadOrderKey(filepath.Join(t.TempDir(), OrderKeyFile), true)
	if err != nil {
		t.Fatal(err)
	}
	svc, err := NewService(Config{Store: st, OrderKey: key, FirmwareURL: func(img store.Image) string { return "http://h/firmware/" + img.SHA256 }})
	if err != nil {
		t.Fatal(err)
	}
	img := seed(t, st, 1)
	if _, err := svc.AddImage(context.Background(), store.Image{Version: "2.0.0+0", Board: "b", Size: 512, SHA256: fmt.Sprintf("%064x", 5), MD5: fmt.Sprintf("%032x", 6),
		DeltaTarget: img.ID, DeltaBaseHash: hashV1}); err != nil {
		t.Fatal(err)
	}
	rec := &recorder{}
	svc.SetPublisher(rec)
	msg(t, svc, "inform", "d0", `{"id":1,"params":{"version":"1.0.0+0","nonce":"00ff","imageHash":"`+hashV1+`"}}`)
	if _, err := svc.Create(context.Background(), CreateRequest{ImageIDs: []uint64{img.ID}, Target: store.Target{Product: "pk"}, Waves: "100%", SuccessPercent: 100}); err != nil {
		t.Fatal(err)
	}
	flush(t, svc)
	o := one(t, rec, "d0")
	if o.Data.IsDiff != 1 {
		t.Fatalf("order %+v: want the delta", o.Data)
	}
	if err := cloud.VerifyOrder(o, key.Public().(ed25519.PublicKey)); err != nil {
		t.Errorf("the delta order does not verify: %v", err)
	}
	o.Data.Size++
	if err := cloud.VerifyOrder(o, key.Public().(ed25519.PublicKey)); err == nil {
		t.Error("a delta order whose size was changed still verifies")
	}
}

// one returns the only order sent to device pk/dn.
func one(t *testing.T, rec *recorder, dn string) *cloud.Order {
	t.Helper()
	ords := rec.orders(t, "pk", dn)
	if len(ords) != 1 {
		t.Fatalf("%s got %d orders, want 1", dn, len(ords))
	}
	return ords[0]
}
