package agent_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/otaport/otaport/core/agent"
)

// TestNew_CertificateAndKeyChecked: a device that signs in by certificate
// learns at start, not at its first sign-in in the background, that its
// key is not the certificate's or its certificate is missing.
func TestNew_CertificateAndKeyChecked(t *testing.T) {
	dir := t.TempDir()
	writeKey := func(name string) *ecdsa.PrivateKey {
		k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		der, _ := x509.MarshalPKCS8PrivateKey(k)
		os.WriteFile(filepath.Join(dir, name), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600)
		return k
	}
	k := writeKey("dev.key")
	writeKey("other.key")
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "dev&pk"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, k.Public(), k)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "dev.crt"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)

	r := newRig(t)
	cases := []struct {
		cert, key, want string
	}{
		{"dev.crt", "dev.key", ""},
		{"dev.crt", "other.key", "identity.key: tls: private key does not match public key: give the private key of"},
		{"missing.crt", "dev.key", "identity.cert: stat"},
	}
	for _, c := range cases {
		t.Run(c.cert+"+"+c.key, func(t *testing.T) {
			cfg := r.config()
			cfg.Broker = "ssl://127.0.0.1:1"
			cfg.Identity.Cert, cfg.Identity.Key = filepath.Join(dir, c.cert), filepath.Join(dir, c.key)
			_, err := agent.New(agent.Options{Config: cfg, Port: r.dev})
			switch {
			case c.want == "" && err != nil:
				t.Fatalf("New: %v", err)
			case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
				t.Fatalf("New: %v, want an error with %q", err, c.want)
			}
		})
	}
}
