package cloud

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
)

// An order key endorsement is how a device provisioned before signed orders
// learns otaserve's order key without trusting the network: the holder of
// the image signing key, which the device already trusts with everything it
// runs, signs the order key's public half. otaserve sends the key and the
// endorsement in data.otaport of its orders (Extension.OrderKey and
// Extension.Endorsement); a device in the migration mode of its agent takes
// the key only if one of its public_keys verifies the endorsement.

// endorseDomain starts the endorsed bytes, so that an endorsement can never be
// taken for an image signature or anything else the image key signs.
const endorseDomain = "otaport order key endorsement v1"

// ErrEndorsement is wrapped by VerifyEndorsement's errors.
var ErrEndorsement = errors.New("order key endorsement")

// maxEndorsementLen bounds the base64 of an endorsement: an RSA-3072
// signature is 384 bytes.
const maxEndorsementLen = 1024

// EndorsementDigest is what an endorsement of orderKey signs: the SHA-256 of
// the domain string and the key, as MCUboot's signatures sign a SHA-256.
func EndorsementDigest(orderKey ed25519.PublicKey) []byte {
	sum := sha256.Sum256(append([]byte(endorseDomain), orderKey...))
	return sum[:]
}

// Endorse signs orderKey with an image signing key (ECDSA, Ed25519 or RSA,
// signed as MCUboot signs an image's hash) and returns the endorsement in
// base64.
func Endorse(imageKey crypto.Signer, orderKey ed25519.PublicKey) (string, error) {
	digest := EndorsementDigest(orderKey)
	var opts crypto.SignerOpts
	switch imageKey.Public().(type) {
	case ed25519.PublicKey:
		opts = crypto.Hash(0)
	case *ecdsa.PublicKey:
		opts = crypto.SHA256
	case *rsa.PublicKey:
		opts = &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash, Hash: crypto.SHA256}
	default:
		return "", fmt.Errorf("endorse the order key: a %T is not an image signing key", imageKey.Public())
	}
	sig, err := imageKey.Sign(rand.Reader, digest, opts)
	if err != nil {
		return "", fmt.Errorf("endorse the order key: %w", err)
	}
	return base64.StdEncoding.EncodeToString(sig), nil
}

// VerifyEndorsement checks that one of imageKeys signed endorsement for
// orderKey.
func VerifyEndorsement(imageKeys []crypto.PublicKey, orderKey ed25519.PublicKey, endorsement string) error {
	if len(orderKey) != ed25519.PublicKeySize {
		return fmt.Errorf("%w: the order key is %d bytes, an Ed25519 public key %d", ErrEndorsement, len(orderKey), ed25519.PublicKeySize)
	}
	if endorsement == "" || len(endorsement) > maxEndorsementLen {
		return fmt.Errorf("%w: empty or longer than %d characters", ErrEndorsement, maxEndorsementLen)
	}
	sig, err := base64.StdEncoding.DecodeString(endorsement)
	if err != nil {
		return fmt.Errorf("%w: not base64", ErrEndorsement)
	}
	digest := EndorsementDigest(orderKey)
	for _, k := range imageKeys {
		switch k := k.(type) {
		case ed25519.PublicKey:
			if ed25519.Verify(k, digest, sig) {
				return nil
			}
		case *ecdsa.PublicKey:
			if ecdsa.VerifyASN1(k, digest, sig) {
				return nil
			}
		case *rsa.PublicKey:
			if rsa.VerifyPSS(k, crypto.SHA256, digest, sig, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthAuto, Hash: crypto.SHA256}) == nil {
				return nil
			}
		}
	}
	return fmt.Errorf("%w: none of the %d image keys signed order key %s", ErrEndorsement, len(imageKeys), short(OrderKeyID(orderKey)))
}

// EndorsedKey returns the order key an order carries (data.otaport.orderKey)
// if one of imageKeys endorsed it (data.otaport.endorsement).
func EndorsedKey(o *Order, imageKeys []crypto.PublicKey) (ed25519.PublicKey, error) {
	x := o.Data.Otaport
	if x == nil || x.OrderKey == "" || x.Endorsement == "" {
		return nil, fmt.Errorf("%w: the order carries no order key with an endorsement (data.otaport.orderKey, endorsement)", ErrEndorsement)
	}
	raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(x.OrderKey))
	if err != nil || len(raw) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("%w: data.otaport.orderKey is not the base64 of an Ed25519 public key", ErrEndorsement)
	}
	key := ed25519.PublicKey(raw)
	if err := VerifyEndorsement(imageKeys, key, x.Endorsement); err != nil {
		return nil, err
	}
	return key, nil
}
