package cloud

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
)

// Statement is otaserve's signed, short-lived word on a product's release
// topic (ReleaseTopic), published every few minutes: the server is alive,
// and this is the current release of each board and module of the product.
// A device that hears none for long enough may be cut off from its orders
// (Uptane's freeze) and says so in its version reports. Statements are
// otaport's addition; the platform sends none.
type Statement struct {
	Product string `json:"product"`
	// Issued is when otaserve made the statement, in Unix milliseconds; a
	// device takes only statements issued after the last it took, so a
	// replayed one is refused even without a clock.
	Issued int64 `json:"issued"`
	// Expires is when it stops being valid, in Unix seconds (checked by
	// devices whose clock is trusted).
	Expires  int64     `json:"expires"`
	Releases []Release `json:"releases,omitempty"`
	// Signer and Signature are as in an order's data.otaport: the order
	// key's ID and its Ed25519 signature over StatementSigningBytes.
	Signer    string `json:"signer"`
	Signature string `json:"signature"`
}

// Release is the current version of one board and module.
type Release struct {
	Board   string `json:"board"`
	Module  string `json:"module"`
	Version string `json:"version"`
}

// ReleaseTopic is the topic of product pk's statements. It is otaport's,
// outside the platform's /ota/device/ tree: devices subscribe to it and
// only otaserve publishes there.
func ReleaseTopic(pk string) string { return "/otaport/release/" + pk }

// KeySetTopic is the topic of product pk's key sets (core/keyset): one
// retained message, a JSON array of the set documents, oldest first, so
// that a device that missed some can follow the chain. Each set carries
// its own signatures; only otaserve publishes there.
func KeySetTopic(pk string) string { return "/otaport/keyset/" + pk }

// MaxKeySetChain bounds a key set message: 16 sets of the largest size
// core/keyset takes is far more than a fleet's rotations.
const MaxKeySetChain = 1 << 20

// ParseKeySetChain splits a key set message into its documents (not
// checked: core/keyset's Parse and Accept do that).
func ParseKeySetChain(b []byte) ([][]byte, error) {
	if len(b) > MaxKeySetChain {
		return nil, fmt.Errorf("%w: key set message of %d bytes, more than %d", ErrInvalidMessage, len(b), MaxKeySetChain)
	}
	var docs []json.RawMessage
	if err := json.Unmarshal(b, &docs); err != nil {
		return nil, fmt.Errorf("%w: key set message: %w", ErrInvalidMessage, err)
	}
	out := make([][]byte, len(docs))
	for i, d := range docs {
		out[i] = d
	}
	return out, nil
}

// statementDomain starts the signed bytes: a statement's signature is never
// an order's, though the same key makes both.
const statementDomain = "otaport release v1"

// Bounds of a statement, far above a product's boards and modules.
const (
	maxStatementSize = 64 << 10
	maxReleases      = 256
)

// ErrStatement is wrapped by the errors of ParseStatement and
// VerifyStatement.
var ErrStatement = errors.New("release statement")

// StatementSigningBytes is what a statement's signature covers: every
// field but the signature, each length-prefixed.
func StatementSigningBytes(s *Statement) []byte {
	fields := []string{s.Product, strconv.FormatInt(s.Issued, 10), strconv.FormatInt(s.Expires, 10), strconv.Itoa(len(s.Releases))}
	for _, r := range s.Releases {
		fields = append(fields, r.Board, ModuleName(r.Module), r.Version)
	}
	b := []byte(statementDomain)
	for _, f := range fields {
		b = binary.AppendUvarint(b, uint64(len(f)))
		b = append(b, f...)
	}
	return b
}

// SignStatement signs s with the order key.
func SignStatement(s *Statement, key ed25519.PrivateKey) {
	s.Signer = OrderKeyID(key.Public().(ed25519.PublicKey))
	s.Signature = base64.StdEncoding.EncodeToString(ed25519.Sign(key, StatementSigningBytes(s)))
}

// VerifyStatement checks s's signature with the order key pub.
func VerifyStatement(s *Statement, pub ed25519.PublicKey) error {
	if s.Signer != OrderKeyID(pub) {
		return fmt.Errorf("%w: signed by key %s, not this device's order key", ErrStatement, short(s.Signer))
	}
	sig, err := base64.StdEncoding.DecodeString(s.Signature)
	if err != nil || !ed25519.Verify(pub, StatementSigningBytes(s), sig) {
		return fmt.Errorf("%w: the signature does not match it", ErrStatement)
	}
	return nil
}

// ParseStatement reads a statement and checks its fields' forms (not its
// signature: VerifyStatement).
func ParseStatement(raw []byte) (*Statement, error) {
	if len(raw) > maxStatementSize {
		return nil, fmt.Errorf("%w: %d bytes, more than %d", ErrStatement, len(raw), maxStatementSize)
	}
	var s Statement
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&s); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrStatement, err)
	}
	if err := checkIdentity(s.Product, "x"); err != nil {
		return nil, fmt.Errorf("%w: product: %v", ErrStatement, err)
	}
	if s.Issued <= 0 || s.Expires <= 0 {
		return nil, fmt.Errorf("%w: issued %d, expires %d: want times after 1970", ErrStatement, s.Issued, s.Expires)
	}
	if len(s.Releases) > maxReleases {
		return nil, fmt.Errorf("%w: %d releases, more than %d", ErrStatement, len(s.Releases), maxReleases)
	}
	for i, r := range s.Releases {
		if err := checkText(fmt.Sprintf("releases[%d].version", i), r.Version, maxVersionLen, true); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrStatement, err)
		}
		if err := checkText(fmt.Sprintf("releases[%d].module", i), r.Module, maxModuleLen, false); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrStatement, err)
		}
		if err := checkText(fmt.Sprintf("releases[%d].board", i), r.Board, maxModuleLen, true); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrStatement, err)
		}
	}
	if s.Signer == "" || s.Signature == "" {
		return nil, fmt.Errorf("%w: unsigned", ErrStatement)
	}
	return &s, nil
}
