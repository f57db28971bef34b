package cloud

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// ErrOrderSignature is wrapped by VerifyOrder's errors: the order is not
// signed, signed by another key, or its signature does not match it.
var ErrOrderSignature = errors.New("order signature")

// orderDomain starts the signed bytes, so that a signature over an order can
// never be taken for one over anything else the key might sign.
const orderDomain = "otaport order v1"

// maxNonceLen bounds a nonce: 32 hex digits are 16 random bytes.
const maxNonceLen = 64

// OrderKeyID is the hex SHA-256 of an order key, as data.otaport.signer names
// it.
func OrderKeyID(pub ed25519.PublicKey) string {
	sum := sha256.Sum256(pub)
	return hex.EncodeToString(sum[:])
}

// NewNonce returns a fresh random nonce for a version report: 16 bytes from
// the system's random source, in hex.
func NewNonce() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("make a nonce: %w", err)
	}
	return hex.EncodeToString(b[:]), nil
}

// OrderSigningBytes is what an order's signature covers: the device it is
// for, its board and module, the image (digest, size, version, URL,
// security counter), its expiry, counter and nonce. Each field is
// length-prefixed, so no two orders share the same bytes. The order must
// carry data.otaport.
func OrderSigningBytes(o *Order) []byte {
	x := o.Data.Otaport
	if x == nil {
		x = &Extension{}
	}
	method, sum := o.Digest()
	fields := []string{
		x.ProductKey, x.DeviceName, x.Board, ModuleName(o.Data.Module),
		method, hex.EncodeToString(sum),
		strconv.FormatInt(o.Data.Size, 10), o.Data.Version, o.Data.URL,
		strconv.FormatUint(uint64(x.SecurityCounter), 10),
		strconv.FormatInt(x.Expires, 10), strconv.FormatUint(x.Counter, 10), strings.ToLower(x.Nonce),
	}
	b := []byte(orderDomain)
	for _, f := range fields {
		b = binary.AppendUvarint(b, uint64(len(f)))
		b = append(b, f...)
	}
	return b
}

// SignOrder signs o with otaserve's order key: it sets data.otaport.signer
// and data.otaport.signature. The fields the signature covers must be set
// before (see OrderSigningBytes).
func SignOrder(o *Order, key ed25519.PrivateKey) error {
	x := o.Data.Otaport
	if x == nil {
		return errors.New("sign order: no data.otaport to carry the signature")
	}
	x.Signer = OrderKeyID(key.Public().(ed25519.PublicKey))
	x.Signature = base64.StdEncoding.EncodeToString(ed25519.Sign(key, OrderSigningBytes(o)))
	return nil
}

// VerifyOrder checks that o is signed by pub and that no signed field was
// changed since. It does not check what the fields say (the device, the
// expiry, the counter, the nonce): that is the device's part.
func VerifyOrder(o *Order, pub ed25519.PublicKey) error {
	x := o.Data.Otaport
	if x == nil || x.Signature == "" {
		return fmt.Errorf("%w: the order is not signed (no data.otaport.signature)", ErrOrderSignature)
	}
	if want := OrderKeyID(pub); x.Signer != "" && !strings.EqualFold(x.Signer, want) {
		return fmt.Errorf("%w: signed by order key %s, not by %s, the one this device trusts", ErrOrderSignature, short(x.Signer), short(want))
	}
	sig, err := base64.StdEncoding.DecodeString(x.Signature)
	if err != nil {
		return fmt.Errorf("%w: data.otaport.signature is not base64", ErrOrderSignature)
	}
	if !ed25519.Verify(pub, OrderSigningBytes(o), sig) {
		return fmt.Errorf("%w: the signature does not match the order: a field was changed after signing, or another key signed it", ErrOrderSignature)
	}
	return nil
}

// checkNonce checks a nonce field: empty, or up to maxNonceLen hex digits.
func checkNonce(field, s string) error {
	if s != "" && (len(s) > maxNonceLen || !isHex(s)) {
		return fmt.Errorf("%s %q: want up to %d hex digits", field, clip(s), maxNonceLen)
	}
	return nil
}

func short(s string) string {
	if len(s) > 16 {
		return s[:16] + "…"
	}
	return s
}
