package campaign

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// OrderKeyFile is the order key's file in otaserve's data directory.
const OrderKeyFile = "order-key.pem"

// DefaultOrderTTL is how long a signed order stays valid. A device that
// was offline gets a new order, signed afresh, when it reports its version,
// so an order need not outlive the broker's delivery by much.
const DefaultOrderTTL = time.Hour

// LoadOrderKey reads the Ed25519 private key that signs orders from the PEM
// file at path (PKCS #8). With create, a missing file is made first: a new
// key, readable by this user only, created whole or not at all (two
// otaserve commands starting at once end up with the same key). created
// reports whether this call made it.
func LoadOrderKey(path string, create bool) (key ed25519.PrivateKey, created bool, err error) {
	if create {
		if created, err = createOrderKey(path); err != nil {
			return nil, false, err
		}
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, false, fmt.Errorf("order key: %w (give the PEM file otaserve made in its data directory, %s)", err, OrderKeyFile)
	}
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "PRIVATE KEY" {
		return nil, false, fmt.Errorf("order key %s: not a PEM \"PRIVATE KEY\" (PKCS #8): give otaserve's %s", path, OrderKeyFile)
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, false, fmt.Errorf("order key %s: %w", path, err)
	}
	ek, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, false, fmt.Errorf("order key %s: a %T, want an Ed25519 key (orders are signed with Ed25519; an image key is another key)", path, k)
	}
	return ek, created, nil
}

// createOrderKey writes a new key at path unless a file is there already.
func createOrderKey(path string) (bool, error) {
	if _, err := os.Stat(path); err == nil {
		return false, nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return false, fmt.Errorf("order key: %w", err)
	}
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return false, fmt.Errorf("order key: generate: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return false, fmt.Errorf("order key: encode: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return false, fmt.Errorf("order key: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".order-key-*")
	if err != nil {
		return false, fmt.Errorf("order key: %w", err)
	}
	defer os.Remove(tmp.Name())
	// CreateTemp makes the file 0600: the key is never readable by others.
	_, err = tmp.Write(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return false, fmt.Errorf("order key: write %s: %w", tmp.Name(), err)
	}
	// A link appears whole and fails when the name is taken: of two
	// starts, one key wins and both use it.
	if err := os.Link(tmp.Name(), path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return false, nil
		}
		return false, fmt.Errorf("order key: %w", err)
	}
	return true, nil
}

// OrderPublicKeyPEM is the PEM "PUBLIC KEY" of an order key, what a
// device's order_key names.
func OrderPublicKeyPEM(key ed25519.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(key.Public())
	if err != nil {
		return nil, fmt.Errorf("encode the order public key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), nil
}
