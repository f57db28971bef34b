package campaign

import (
	"context"
	"crypto"
	"crypto/ed25519"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/otaport/otaport/core/cloud"
	"github.com/otaport/otaport/core/image"
	"github.com/otaport/otaport/fleet/store"
)

func newSigningService(t *testing.T, path string, key ed25519.PrivateKey) (*Service, *store.Store) {
	t.Helper()
	st, err := store.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	svc, err := NewService(Config{Store: st, OrderKey: key, FirmwareURL: func(img store.Image) string {
		return "http://127.0.0.1:8080/firmware/" + img.SHA256
	}})
	if err != nil {
		t.Fatal(err)
	}
	return svc, st
}

// TestService_SignsOrders: every order is signed for its device and board
// with an expiry, the nonce of the device's latest version report and a
// counter that rises across a restart (it is in the store); a failure
// report about an order a newer one replaced does not fail the device.
func TestService_SignsOrders(t *testing.T) {
	path := filepath.Join(t.TempDir(), "fleet.db")
	key, _, err := LoadOrderKey(filepath.Join(t.TempDir(), OrderKeyFile), true)
	if err != nil {
		t.Fatal(err)
	}
	pub := key.Public().(ed25519.PublicKey)
	svc, st := newSigningService(t, path, key)
	img := seed(t, st, 1)
	rec := &recorder{}
	svc.SetPublisher(rec)
	n1, n2, n3 := strings.Repeat("a1", 16), strings.Repeat("b2", 16), strings.Repeat("c3", 16)
	msg(t, svc, "inform", "d0", `{"id":1,"params":{"version":"1.0.0+0","nonce":"`+n1+`"}}`)
	c, err := svc.Create(context.Background(), CreateRequest{ImageIDs: []uint64{img.ID}, Target: store.Target{Product: "pk"}, Waves: "100%", SuccessPercent: 100, ErrorPercent: 100})
	if err != nil {
		t.Fatal(err)
	}
	flush(t, svc)

	// informed sends d0's version report with nonce and returns its
	// orders, want of them.
	informed := func(svc *Service, rec *recorder, nonce string, want int) []*cloud.Order {
		t.Helper()
		msg(t, svc, "inform", "d0", `{"id":2,"params":{"version":"1.0.0+0","nonce":"`+nonce+`"}}`)
		ords := rec.orders(t, "pk", "d0")
		if len(ords) != want {
			t.Fatalf("%d orders after version report %s, want %d", len(ords), nonce, want)
		}
		return ords
	}
	// refused reports the refusal of order id; the device is then state.
	refused := func(svc *Service, id int64, state store.ProgressState) {
		t.Helper()
		msg(t, svc, "progress", "d0", `{"id":`+strconv.FormatInt(id, 10)+`,"params":{"step":"-1","desc":"order refused"}}`)
		if stat, _ := svc.Status(c.ID); stat.Devices[0].State != state {
			t.Errorf("after the refusal of order %d the device is %s, want %s", id, stat.Devices[0].State, state)
		}
	}
	check := func(o *cloud.Order, counter uint64, nonce string) {
		t.Helper()
		if err := cloud.VerifyOrder(o, pub); err != nil {
			t.Fatalf("order %d: %v", o.ID, err)
		}
		x := o.Data.Otaport
		if x.ProductKey != "pk" || x.DeviceName != "d0" || x.Board != "b" || x.Counter != counter || x.Nonce != nonce {
			t.Errorf("order %d: device %s/%s board %s counter %d nonce %s, want pk/d0 b %d %s", o.ID, x.ProductKey, x.DeviceName, x.Board, x.Counter, x.Nonce, counter, nonce)
		}
		if left := time.Until(time.Unix(x.Expires, 0)); left <= DefaultOrderTTL-time.Minute || left > DefaultOrderTTL {
			t.Errorf("order %d expires in %v, want about %v", o.ID, left, DefaultOrderTTL)
		}
	}
	ords := rec.orders(t, "pk", "d0")
	if len(ords) != 1 {
		t.Fatalf("%d orders, want 1", len(ords))
	}
	check(ords[0], 1, n1)

	// A new version report before the order was taken: ordered again,
	// with its nonce; the device's refusal of the first order is ignored.
	ords = informed(svc, rec, n2, 2)
	check(ords[1], 2, n2)
	refused(svc, ords[0].ID, store.ProgressOrdered)

	// A restart does not reuse a counter.
	svc.SetPublisher(nil)
	st.Close()
	svc, st = newSigningService(t, path, key)
	defer st.Close()
	rec = &recorder{}
	svc.SetPublisher(rec)
	defer svc.SetPublisher(nil)
	ords = informed(svc, rec, n3, 1)
	check(ords[0], 3, n3)
	// The refusal of the order in hand counts.
	refused(svc, ords[0].ID, store.ProgressFailed)
}

// TestLoadOrderKey_MadeOnceReadableByOwnerOnly: the first load makes the
// key (mode 0600), later ones read the same key; a key of another type is
// refused with the fix.
func TestLoadOrderKey_MadeOnceReadableByOwnerOnly(t *testing.T) {
	path := filepath.Join(t.TempDir(), "data", OrderKeyFile)
	k1, created, err := LoadOrderKey(path, true)
	if err != nil || !created {
		t.Fatalf("first LoadOrderKey: created %v, %v", created, err)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("order key mode %v, want 0600", st.Mode().Perm())
	}
	k2, created, err := LoadOrderKey(path, true)
	if err != nil || created || !k1.Equal(k2) {
		t.Errorf("second LoadOrderKey: created %v, same key %v, %v", created, k1.Equal(k2), err)
	}
	if _, _, err := LoadOrderKey(filepath.Join(t.TempDir(), "missing.pem"), false); err == nil || !strings.Contains(err.Error(), "order key") {
		t.Errorf("LoadOrderKey of a missing file: %v", err)
	}
	pubPEM, err := OrderPublicKeyPEM(k1)
	if err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(t.TempDir(), "pub.pem")
	if err := os.WriteFile(bad, pubPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := LoadOrderKey(bad, false); err == nil || !strings.Contains(err.Error(), `not a PEM "PRIVATE KEY"`) {
		t.Errorf("LoadOrderKey of a public key: %v", err)
	}
}

// TestService_MigrationOrders: with an endorsement of the order key, every
// signed order carries the key and its endorsement, which the image key
// verifies, and the URL made for its device; the device's version reports
// say whether it still takes unsigned orders (an agent in migration mode
// says so; one without a nonce cannot take a signed order), and the store
// keeps the latest.
func TestService_MigrationOrders(t *testing.T) {
	key, _, err := LoadOrderKey(filepath.Join(t.TempDir(), OrderKeyFile), true)
	if err != nil {
		t.Fatal(err)
	}
	pub := key.Public().(ed25519.PublicKey)
	imageKey, err := image.GenerateKey("ecdsa-p256")
	if err != nil {
		t.Fatal(err)
	}
	endorsement, err := cloud.Endorse(imageKey, pub)
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(filepath.Join(t.TempDir(), "fleet.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	svc, err := NewService(Config{Store: st, OrderKey: key, Endorsement: endorsement,
		FirmwareURL:       func(img store.Image) string { return "https://fleet/firmware/" + img.SHA256 },
		DeviceFirmwareURL: func(img store.Image, dev string) string { return "http://plain/" + dev + "/" + img.SHA256 },
	})
	if err != nil {
		t.Fatal(err)
	}
	img := seed(t, st, 1)
	rec := &recorder{}
	svc.SetPublisher(rec)
	defer svc.SetPublisher(nil)
	unsigned := func(want bool) {
		t.Helper()
		d, err := st.Device("pk", "d0")
		if err != nil {
			t.Fatal(err)
		}
		if d.UnsignedOrders != want {
			t.Errorf("the store has unsigned_orders %v for d0, want %v", d.UnsignedOrders, want)
		}
	}
	msg(t, svc, "inform", "d0", `{"id":1,"params":{"version":"1.0.0+0"}}`)
	unsigned(true)
	msg(t, svc, "inform", "d0", `{"id":2,"params":{"version":"1.0.0+0","nonce":"`+strings.Repeat("a1", 16)+`"}}`)
	unsigned(false)
	msg(t, svc, "inform", "d0", `{"id":3,"params":{"version":"1.0.0+0","nonce":"`+strings.Repeat("b2", 16)+`","unsignedOrders":true}}`)
	unsigned(true)
	if _, err := svc.Create(context.Background(), CreateRequest{ImageIDs: []uint64{img.ID}, Target: store.Target{Product: "pk"}, Waves: "100%", SuccessPercent: 100, ErrorPercent: 100}); err != nil {
		t.Fatal(err)
	}
	flush(t, svc)
	ords := rec.orders(t, "pk", "d0")
	if len(ords) != 1 {
		t.Fatalf("%d orders, want 1", len(ords))
	}
	o := ords[0]
	if err := cloud.VerifyOrder(o, pub); err != nil {
		t.Fatal(err)
	}
	got, err := cloud.EndorsedKey(o, []crypto.PublicKey{imageKey.Public()})
	if err != nil || !got.Equal(pub) {
		t.Errorf("the order's endorsed key: %x, %v; want the order key", got, err)
	}
	if want := "http://plain/pk/d0/" + img.SHA256; o.Data.URL != want {
		t.Errorf("order URL %s, want the device's %s", o.Data.URL, want)
	}
}
