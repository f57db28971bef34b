package agent_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/otaport/otaport/core/cloud"
	"github.com/otaport/otaport/core/image"
)

// TestAgent_EncryptedImagesNeedEncKey: an order for an encrypted image is
// refused, and says why, while device.yaml has no enc_key; with the
// device's key in enc_key the same kind of order installs, boots and is
// confirmed.
func TestAgent_EncryptedImagesNeedEncKey(t *testing.T) {
	r := newRig(t)
	priv, err := image.GenerateEncryptionKey()
	if err != nil {
		t.Fatal(err)
	}
	r.encrypt = priv.PublicKey()
	pemBytes, err := image.MarshalEncryptionPEM(priv)
	if err != nil {
		t.Fatal(err)
	}
	encFile := filepath.Join(r.dir, "enc.pem")
	if err := os.WriteFile(encFile, pemBytes, 0o600); err != nil {
		t.Fatal(err)
	}

	stop := r.start(r.config())
	i := r.waitFor("inform 1.0.0+0 at start", 0, informOf("1.0.0+0"))
	r.order(1001, "1.1.0", nil)
	r.waitFor("refusal without enc_key", i, progressOf(cloud.StepUpgradeFailed, "the device has no decryption key"))
	stop()

	cfg := r.config()
	cfg.EncKey = encFile
	// Counted before the start: the new agent's inform may come before
	// the test reads the messages again.
	restart := len(r.since(0))
	r.start(cfg)
	i = r.waitFor("inform 1.0.0+0 after the restart", restart, informOf("1.0.0+0"))
	r.order(1002, "1.1.1", nil)
	r.waitFor("inform 1.1.1+0", i, informOf("1.1.1+0"))
	if s := r.running(); s.Version != "1.1.1+0" || !s.Confirmed {
		t.Fatalf("the running slot is %+v, want 1.1.1+0 confirmed", s)
	}
}
