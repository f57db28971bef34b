package image

import (
	"crypto"
	"fmt"
	"os"
)

// ReadPublicKey reads the PEM public key in the file at path, as
// LoadPublicKey reads one (a private key file gives its public half). The
// error names the file and says what file to give instead.
func ReadPublicKey(path string) (crypto.PublicKey, error) {
	return readKey(path, LoadPublicKey, "give the PEM file otaimg getpub --key key.pem writes")
}

// ReadPublicKeys reads the PEM public keys in files, in order: the keys a
// device, a server or a tool verifies images with. The first file that
// cannot be read or parsed is the error, never a key left out in silence.
func ReadPublicKeys(files []string) ([]crypto.PublicKey, error) {
	keys := make([]crypto.PublicKey, 0, len(files))
	for _, f := range files {
		k, err := ReadPublicKey(f)
		if err != nil {
			return nil, err
		}
		keys = append(keys, k)
	}
	return keys, nil
}

// ReadPrivateKey reads the PEM signing key in the file at path, as
// LoadPrivateKey reads one. The error names the file and says what file to
// give instead.
func ReadPrivateKey(path string) (crypto.Signer, error) {
	return readKey(path, LoadPrivateKey, "make one with otaimg keygen -o key.pem")
}

// readKey reads the file at path and parses it with load. fix is what to do
// when the file cannot be read; load's own errors carry theirs.
func readKey[K any](path string, load func([]byte) (K, error), fix string) (K, error) {
	var zero K
	b, err := os.ReadFile(path)
	if err != nil {
		return zero, fmt.Errorf("read key: %w (%s)", err, fix)
	}
	k, err := load(b)
	if err != nil {
		return zero, fmt.Errorf("key %s: %w", path, err)
	}
	return k, nil
}
