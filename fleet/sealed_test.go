package fleet

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/otaport/otaport/core/cloud"
	"github.com/otaport/otaport/fleet/api"
	"github.com/otaport/otaport/fleet/secrets"
	"github.com/otaport/otaport/fleet/store"
)

// TestServer_DeviceSecretsSealedAtRest: a device added through the API has
// its secret sealed in the database (the file never holds it in the
// clear), a secret an earlier version stored in the clear is sealed at the
// first start, and both devices still sign in with their secrets.
func TestServer_DeviceSecretsSealedAtRest(t *testing.T) {
	dir := t.TempDir()
	st, err := store.Open(filepath.Join(dir, "fleet.db"))
	if err != nil {
		t.Fatal(err)
	}
	if err := st.AddDevice(store.Device{ProductKey: "pkA", DeviceName: "old", DeviceSecret: "legacy-secret-in-the-clear",
		Board: "board-a", State: store.DeviceRegistered, Added: time.Now()}); err != nil {
		t.Fatal(err)
	}
	st.Close()

	r := start(t, dir, nil)
	defer r.stop(t)
	var added api.Device
	if code := r.post(t, "/devices", api.AddDevice{ProductKey: "pkA", DeviceName: "new", Board: "board-a"}, &added); code != 201 {
		t.Fatalf("add device: %d", code)
	}
	for _, dn := range []string{"old", "new"} {
		d, err := r.srv.store.Device("pkA", dn)
		if err != nil {
			t.Fatal(err)
		}
		if !secrets.Sealed(d.DeviceSecret) {
			t.Errorf("pkA/%s: the database holds its secret in the clear: %q", dn, d.DeviceSecret)
		}
	}
	raw, err := os.ReadFile(filepath.Join(dir, "fleet.db"))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(raw, []byte(added.DeviceSecret)) {
		t.Error("the database file holds the new device's secret in the clear")
	}
	for dn, secret := range map[string]string{"old": "legacy-secret-in-the-clear", "new": added.DeviceSecret} {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		cl, err := cloud.Dial(ctx, cloud.Config{Broker: "tcp://" + r.srv.Addrs().MQTT,
			Identity: cloud.Identity{ProductKey: "pkA", DeviceName: dn, DeviceSecret: secret}, OnOrder: func(*cloud.Order, []byte) {}})
		cancel()
		if err != nil {
			t.Errorf("pkA/%s cannot sign in with its secret: %v", dn, err)
			continue
		}
		cl.Close()
	}
}
