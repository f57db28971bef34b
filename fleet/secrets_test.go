package fleet_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/otaport/otaport/fleet"
)

// TestNew_SecretsAreReadableByTheOwnerOnly: the operator token (DATA/token),
// the order key (DATA/order-key.pem), the key that seals the device secrets
// (DATA/secrets.key), the fleet CA's key (DATA/ca.key) and the database are
// created readable and writable by otaserve's user only.
func TestNew_SecretsAreReadableByTheOwnerOnly(t *testing.T) {
	dir := t.TempDir()
	srv, err := fleet.New(fleet.Config{DataDir: dir, HTTPAddr: "127.0.0.1:0", MQTTAddr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	for _, name := range []string{"token", "fleet.db", "order-key.pem", "secrets.key", "ca.key"} {
		st, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if mode := st.Mode().Perm(); mode != 0o600 {
			t.Errorf("%s has mode %04o, want 0600 (owner only)", name, mode)
		}
	}
}
