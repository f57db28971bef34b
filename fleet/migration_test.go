package fleet_test

import (
	"crypto"
	"crypto/ed25519"
	"os"
	"strings"
	"testing"

	"github.com/otaport/otaport/core/cloud"
	"github.com/otaport/otaport/core/image"
	"github.com/otaport/otaport/fleet"
	"github.com/otaport/otaport/fleet/campaign"
)

// TestNew_OrderKeyEndorsementCheckedAtStart: an endorsement of the order key
// by an image key otaserve runs with is taken; one by another image key, or
// for another order key, stops the start with the file and the fix (devices
// would refuse it, and the migration would stall without a word); the plain
// firmware listener needs the plain MQTT listener whose devices it serves.
func TestNew_OrderKeyEndorsementCheckedAtStart(t *testing.T) {
	imageKey, err := image.GenerateKey("ecdsa-p256")
	if err != nil {
		t.Fatal(err)
	}
	stranger, err := image.GenerateKey("ecdsa-p256")
	if err != nil {
		t.Fatal(err)
	}
	otherOrderKey, _, _ := ed25519.GenerateKey(nil)
	start := func(t *testing.T, dir string, endorse func(orderKey ed25519.PublicKey) string, cfg fleet.Config) error {
		t.Helper()
		key, _, err := campaign.LoadOrderKey(fleet.OrderKeyPath(dir), true)
		if err != nil {
			t.Fatal(err)
		}
		if endorse != nil {
			if err := os.WriteFile(fleet.EndorsementPath(dir), []byte(endorse(key.Public().(ed25519.PublicKey))+"\n"), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		cfg.DataDir, cfg.HTTPAddr, cfg.MQTTAddr, cfg.Keys = dir, "127.0.0.1:0", "127.0.0.1:0", []crypto.PublicKey{imageKey.Public()}
		s, err := fleet.New(cfg)
		if err == nil {
			s.Close()
		}
		return err
	}
	by := func(k crypto.Signer, forKey ed25519.PublicKey) func(ed25519.PublicKey) string {
		return func(orderKey ed25519.PublicKey) string {
			if forKey != nil {
				orderKey = forKey
			}
			e, err := cloud.Endorse(k, orderKey)
			if err != nil {
				t.Fatal(err)
			}
			return e
		}
	}
	if err := start(t, t.TempDir(), by(imageKey, nil), fleet.Config{}); err != nil {
		t.Errorf("a good endorsement: %v", err)
	}
	for name, e := range map[string]func(ed25519.PublicKey) string{
		"another image key":  by(stranger, nil),
		"another order key":  by(imageKey, otherOrderKey),
		"not an endorsement": func(ed25519.PublicKey) string { return "not base64!" },
	} {
		err := start(t, t.TempDir(), e, fleet.Config{})
		if err == nil || !strings.Contains(err.Error(), fleet.EndorsementFile) || !strings.Contains(err.Error(), "otaserve order-key --data") {
			t.Errorf("%s: %v, want an error naming %s and the fix", name, err, fleet.EndorsementFile)
		}
	}
	err = start(t, t.TempDir(), nil, fleet.Config{AutoTLS: true, FirmwarePlainAddr: "127.0.0.1:0"})
	if err == nil || !strings.Contains(err.Error(), "give --insecure-plain-mqtt too") {
		t.Errorf("plain firmware without the plain MQTT listener: %v, want it refused", err)
	}
}
