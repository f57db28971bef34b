package pki

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestOpen_MakesOnceThenLoads(t *testing.T) {
	dir := t.TempDir()
	ca, created, err := Open(dir)
	if err != nil || !created {
		t.Fatalf("first Open: created %v, %v", created, err)
	}
	st, err := os.Stat(filepath.Join(dir, KeyFile))
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("key file mode %v, want 0600", st.Mode().Perm())
	}
	again, created, err := Open(dir)
	if err != nil || created {
		t.Fatalf("second Open: created %v, %v", created, err)
	}
	if !bytes.Equal(ca.CertPEM(), again.CertPEM()) {
		t.Error("the second Open made another CA")
	}
}

func TestOpen_Refusals(t *testing.T) {
	other := t.TempDir()
	if _, _, err := Open(other); err != nil {
		t.Fatal(err)
	}
	otherKey, _ := os.ReadFile(filepath.Join(other, KeyFile))
	cases := []struct {
		name  string
		setup func(dir string)
		want  string
	}{
		{"key missing", func(dir string) { os.Remove(filepath.Join(dir, KeyFile)) }, "is missing"},
		{"certificate missing", func(dir string) { os.Remove(filepath.Join(dir, CertFile)) }, "is missing"},
		{"another CA's key", func(dir string) { os.WriteFile(filepath.Join(dir, KeyFile), otherKey, 0o600) }, "not the certificate's"},
		{"not PEM", func(dir string) { os.WriteFile(filepath.Join(dir, CertFile), []byte("x"), 0o644) }, "no PEM certificate"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			if _, _, err := Open(dir); err != nil {
				t.Fatal(err)
			}
			c.setup(dir)
			_, _, err := Open(dir)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Open = %v, want an error saying %q", err, c.want)
			}
		})
	}
}

func TestIssue_ClientCertificateOfTheDevice(t *testing.T) {
	ca, _, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	// The request names another device: the certificate names the one
	// the operator asked for.
	csr, err := NewRequest(key, "pk1", "someone-else")
	if err != nil {
		t.Fatal(err)
	}
	certPEM, notAfter, err := ca.Issue(csr, "pk1", "dev1", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := pem.Decode(certPEM)
	cert, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if cert.Subject.CommonName != "dev1&pk1" {
		t.Errorf("common name %q, want dev1&pk1", cert.Subject.CommonName)
	}
	if cert.NotAfter.Sub(notAfter).Abs() > time.Second {
		t.Errorf("not after %v, reported %v", cert.NotAfter, notAfter)
	}
	if !publicEqual(cert.PublicKey, key.Public()) {
		t.Error("the certificate is not of the requester's key")
	}
	if _, err := cert.Verify(x509.VerifyOptions{Roots: ca.Pool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("the certificate does not verify as a client certificate of the CA: %v", err)
	}
	if _, err := cert.Verify(x509.VerifyOptions{Roots: ca.Pool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err == nil {
		t.Error("a device certificate verifies as a server's")
	}
}

func TestIssue_Refusals(t *testing.T) {
	ca, _, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	csr, _ := NewRequest(key, "pk1", "dev1")
	b, _ := pem.Decode(csr)
	b.Bytes[len(b.Bytes)-3] ^= 0x01 // the request's signature
	forged := pem.EncodeToMemory(b)
	for name, in := range map[string][]byte{
		"not PEM":         []byte("hello"),
		"a certificate":   ca.CertPEM(),
		"a bad signature": forged,
	} {
		t.Run(name, func(t *testing.T) {
			if _, _, err := ca.Issue(in, "pk1", "dev1", 0); err == nil {
				t.Fatal("issued")
			}
		})
	}
}

func FuzzIssue(f *testing.F) {
	ca, _, err := Open(f.TempDir())
	if err != nil {
		f.Fatal(err)
	}
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	csr, _ := NewRequest(key, "pk1", "dev1")
	f.Add(csr)
	f.Add([]byte("-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		_, _, _ = ca.Issue(in, "pk1", "dev1", 0)
	})
}
