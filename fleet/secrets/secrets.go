// Package secrets seals the devices' secrets at rest: the fleet database
// holds each one encrypted (AES-256-GCM) under a key kept in a file of its
// own, outside the database, so a copy of the database alone gives no
// device's sign-in away. The HMAC sign-in needs the secret itself, so it
// cannot be stored hashed; sealing is the next best thing.
//
// A sealed secret is "sealed:v1:" and the base64 of the nonce and the
// ciphertext; the device's key ("{pk}/{dn}") is the additional data, so a
// sealed secret copied into another device's record does not open.
package secrets

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// KeyFile is the key's file in the data directory.
const KeyFile = "secrets.key"

// prefix marks a sealed secret; a value without it is a secret stored in
// the clear by an earlier version.
const prefix = "sealed:v1:"

// Sealer seals and opens device secrets. It is safe for concurrent use.
type Sealer struct {
	aead cipher.AEAD
}

// Open loads the key of dir, or makes one there (created true) readable by
// the owner only.
func Open(dir string) (s *Sealer, created bool, err error) {
	path := filepath.Join(dir, KeyFile)
	key, err := os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		key = make([]byte, 32)
		if _, err := rand.Read(key); err != nil {
			return nil, false, fmt.Errorf("secrets key: %w", err)
		}
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, false, fmt.Errorf("secrets key: %w", err)
		}
		// O_EXCL: two starts racing keep one key.
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return nil, false, fmt.Errorf("secrets key %s: %w", path, err)
		}
		if _, err := f.Write(key); err != nil {
			f.Close()
			return nil, false, fmt.Errorf("secrets key %s: %w", path, err)
		}
		if err := f.Close(); err != nil {
			return nil, false, fmt.Errorf("secrets key %s: %w", path, err)
		}
		created = true
	case err != nil:
		return nil, false, fmt.Errorf("secrets key: %w", err)
	case len(key) != 32:
		return nil, false, fmt.Errorf("secrets key %s: %d bytes, want 32: restore the file (without it the devices' secrets cannot be read, and every device must be given a new one)", path, len(key))
	}
	s, err = New(key)
	return s, created, err
}

// New returns a sealer with a 32-byte key.
func New(key []byte) (*Sealer, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("secrets key: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("secrets key: %w", err)
	}
	return &Sealer{aead: aead}, nil
}

// Sealed reports whether v is a sealed secret.
func Sealed(v string) bool { return strings.HasPrefix(v, prefix) }

// Seal encrypts secret for the device of key device ("{pk}/{dn}").
func (s *Sealer) Seal(device, secret string) (string, error) {
	nonce := make([]byte, s.aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return "", fmt.Errorf("seal the secret of %s: %w", device, err)
	}
	out := s.aead.Seal(nonce, nonce, []byte(secret), []byte(device))
	return prefix + base64.StdEncoding.EncodeToString(out), nil
}

// Open returns the secret v holds for device: v decrypted when sealed, v as
// it is when an earlier version stored it in the clear.
func (s *Sealer) Open(device, v string) (string, error) {
	if !Sealed(v) {
		return v, nil
	}
	raw, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(v, prefix))
	n := s.aead.NonceSize()
	if err != nil || len(raw) < n {
		return "", fmt.Errorf("the sealed secret of %s is malformed", device)
	}
	secret, err := s.aead.Open(nil, raw[:n], raw[n:], []byte(device))
	if err != nil {
		return "", fmt.Errorf("the sealed secret of %s does not open with this key (another data directory's %s, or a record copied from another device)", device, KeyFile)
	}
	return string(secret), nil
}
