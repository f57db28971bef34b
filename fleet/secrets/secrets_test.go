package secrets

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestOpen_MakesTheKeyOnceOwnerOnly(t *testing.T) {
	dir := t.TempDir()
	s, created, err := Open(dir)
	if err != nil || !created {
		t.Fatalf("first Open: created %v, %v", created, err)
	}
	st, err := os.Stat(filepath.Join(dir, KeyFile))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v, mode %v; want 0600", err, st.Mode().Perm())
	}
	sealed, err := s.Seal("pk/dn", "s3cret")
	if err != nil {
		t.Fatal(err)
	}
	again, created, err := Open(dir)
	if err != nil || created {
		t.Fatalf("second Open: created %v, %v", created, err)
	}
	if got, err := again.Open("pk/dn", sealed); err != nil || got != "s3cret" {
		t.Errorf("the key read back does not open what the first sealed: %q, %v", got, err)
	}
	os.WriteFile(filepath.Join(dir, KeyFile), []byte("short"), 0o600)
	if _, _, err := Open(dir); err == nil || !strings.Contains(err.Error(), "want 32") {
		t.Errorf("a key file of 5 bytes: %v, want a refusal", err)
	}
}

func TestSeal_OpensOnlyForItsDeviceAndKey(t *testing.T) {
	s, _, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	other, _, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	sealed, err := s.Seal("pk/dev-a", "s3cret")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(sealed, "s3cret") || !Sealed(sealed) {
		t.Fatalf("sealed %q", sealed)
	}
	if got, err := s.Open("pk/dev-a", sealed); err != nil || got != "s3cret" {
		t.Fatalf("Open = %q, %v", got, err)
	}
	tampered := sealed[:len(sealed)-4] + "AAA="
	for name, try := range map[string]func() error{
		"another device's record": func() error { _, err := s.Open("pk/dev-b", sealed); return err },
		"another key":             func() error { _, err := other.Open("pk/dev-a", sealed); return err },
		"tampered":                func() error { _, err := s.Open("pk/dev-a", tampered); return err },
		"not base64":              func() error { _, err := s.Open("pk/dev-a", prefix+"%%%"); return err },
	} {
		if try() == nil {
			t.Errorf("%s: opened", name)
		}
	}
	// A secret an earlier version stored in the clear reads as it is.
	if got, err := s.Open("pk/dev-a", "plain"); err != nil || got != "plain" {
		t.Errorf("a clear secret: %q, %v", got, err)
	}
}
