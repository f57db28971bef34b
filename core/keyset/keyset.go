// Package keyset is otaport's signed key set: the list of keys a device
// trusts to sign its images, the keys that may sign the next list, and the
// keys revoked for good. It is how an image key is rotated over the air and
// how a leaked one is retired without reflashing a device.
//
// The roles follow TUF's split of root and targets keys. A device is
// provisioned with its anchors (device.yaml's public_keys, the keys its
// bootloader holds); without a key set, images are signed with an anchor,
// as before. A key set names:
//   - roots: the keys that may sign the next key set (threshold of them);
//   - image keys: the keys images may be signed with;
//   - revoked: key hashes never trusted again, in either role.
//
// The first set must be signed by threshold anchors, each later one by
// threshold roots of the set before it, and every set by threshold of its
// own roots too (so a mistyped root cannot lock the fleet out); versions only
// grow and revocations are never dropped. A device keeps only its current
// set: the chain is checked as each set arrives.
//
// A bootloader that cannot read the set (MCUboot and ESP-IDF keep their keys
// in their own image or in eFuses) can only be given keys it already holds:
// Effective then narrows the image keys to the anchors. docs/security.md
// says what that means per bootloader.
package keyset

import (
	"bytes"
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/otaport/otaport/core/hal"
	"github.com/otaport/otaport/core/image"
)

// Set is a parsed, well-formed key set. Parse does not check its
// signatures: Accept does, against what the device trusts.
type Set struct {
	// Version grows with each set: a device takes only a newer one.
	Version uint64
	// Expires is when the set stops being valid (checked by devices whose
	// clock is trusted); zero means never.
	Expires time.Time
	// Threshold is how many distinct roots must sign the next set.
	Threshold int
	Roots     []crypto.PublicKey
	ImageKeys []crypto.PublicKey
	// Revoked are the KeyHash values (image.KeyHash, imgtool getpubhash) of
	// keys never trusted again.
	Revoked [][]byte

	raw  []byte      // the document as it came
	body []byte      // the signed bytes
	sigs []signature // as they came
	ids  [][]byte    // KeyHash of each signature's key ID, parsed
}

// Raw returns the document as it was parsed: what a device stores and
// passes on.
func (s *Set) Raw() []byte { return s.raw }

// The document: the signed body and its signatures. The signatures cover the
// body's bytes in compact form (json.Compact): reindenting the file keeps
// it valid; reordering or rewriting its fields does not.
type document struct {
	Signed     json.RawMessage `json:"signed"`
	Signatures []signature     `json:"signatures"`
}

type signature struct {
	KeyID string `json:"keyid"` // hex image.KeyHash of the signing key
	Sig   string `json:"sig"`   // base64
}

type body struct {
	Type      string   `json:"type"`
	Version   uint64   `json:"version"`
	Expires   int64    `json:"expires,omitempty"` // Unix seconds
	Threshold int      `json:"threshold,omitempty"`
	Roots     []string `json:"roots"`      // base64 SubjectPublicKeyInfo DER
	ImageKeys []string `json:"image_keys"` // base64 SubjectPublicKeyInfo DER
	Revoked   []string `json:"revoked,omitempty"`
}

const (
	docType = "otaport-keyset"
	// domain starts the signed digest's input, so a key set's signature is
	// never an image's, though an image key may make both.
	domain = "otaport keyset v1\x00"
	// MaxSize bounds a document: far above a few dozen RSA-3072 keys.
	MaxSize = 64 << 10
	maxKeys = 32
)

// ErrKeySet is wrapped by every error of this package about a document;
// ErrRefused by Accept's refusals and ErrExpired by an expired set.
var (
	ErrKeySet  = errors.New("key set")
	ErrRefused = errors.New("key set refused")
	ErrExpired = errors.New("key set expired")
)

// Spec is what Sign makes a set of.
type Spec struct {
	Version   uint64
	Expires   time.Time
	Threshold int // 0 means 1
	Roots     []crypto.PublicKey
	ImageKeys []crypto.PublicKey
	Revoked   []crypto.PublicKey
	// RevokedHashes are revoked keys known only by their hash (a previous
	// set's revocations).
	RevokedHashes [][]byte
}

// Sign makes the document of sp signed by each of signers.
func Sign(sp Spec, signers ...crypto.Signer) ([]byte, error) {
	if len(signers) == 0 {
		return nil, fmt.Errorf("%w: no signing key", ErrKeySet)
	}
	b := body{Type: docType, Version: sp.Version, Threshold: sp.Threshold}
	if !sp.Expires.IsZero() {
		b.Expires = sp.Expires.Unix()
	}
	var err error
	if b.Roots, err = encodeKeys("roots", sp.Roots); err != nil {
		return nil, err
	}
	if b.ImageKeys, err = encodeKeys("image keys", sp.ImageKeys); err != nil {
		return nil, err
	}
	revoked := slices.Clone(sp.RevokedHashes)
	for _, k := range sp.Revoked {
		h, err := image.KeyHash(k)
		if err != nil {
			return nil, fmt.Errorf("%w: revoked key: %v", ErrKeySet, err)
		}
		revoked = append(revoked, h)
	}
	for _, h := range revoked {
		if id := hex.EncodeToString(h); !slices.Contains(b.Revoked, id) {
			b.Revoked = append(b.Revoked, id)
		}
	}
	raw, err := json.Marshal(b)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrKeySet, err)
	}
	doc := document{Signed: raw}
	for _, k := range signers {
		id, err := image.KeyHash(k.Public())
		if err != nil {
			return nil, fmt.Errorf("%w: signing key: %v", ErrKeySet, err)
		}
		sig, err := image.SignDigest(k, digest(raw))
		if err != nil {
			return nil, fmt.Errorf("%w: sign: %v", ErrKeySet, err)
		}
		doc.Signatures = append(doc.Signatures, signature{KeyID: hex.EncodeToString(id), Sig: base64.StdEncoding.EncodeToString(sig)})
	}
	out, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrKeySet, err)
	}
	// Check it as a device will, so a set no device could take is never
	// written: a revoked key among the trusted ones, a duplicate, no roots.
	if _, err := Parse(out); err != nil {
		return nil, err
	}
	return append(out, '\n'), nil
}

func digest(signed []byte) []byte {
	h := sha256.New()
	h.Write([]byte(domain))
	h.Write(signed)
	return h.Sum(nil)
}

func encodeKeys(what string, keys []crypto.PublicKey) ([]string, error) {
	var out []string
	for i, k := range keys {
		if _, err := image.KeyType(k); err != nil {
			return nil, fmt.Errorf("%w: %s[%d]: %v", ErrKeySet, what, i, err)
		}
		der, err := x509.MarshalPKIXPublicKey(k)
		if err != nil {
			return nil, fmt.Errorf("%w: %s[%d]: %v", ErrKeySet, what, i, err)
		}
		out = append(out, base64.StdEncoding.EncodeToString(der))
	}
	return out, nil
}

// Parse reads a key set and checks its form: its type, its keys, that no
// trusted key is revoked, that it has roots, image keys and signatures. It
// does not check the signatures (Accept does).
func Parse(raw []byte) (*Set, error) {
	if len(raw) > MaxSize {
		return nil, fmt.Errorf("%w: %d bytes, more than %d", ErrKeySet, len(raw), MaxSize)
	}
	var doc document
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&doc); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrKeySet, err)
	}
	var b body
	dec = json.NewDecoder(bytes.NewReader(doc.Signed))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&b); err != nil {
		return nil, fmt.Errorf("%w: signed: %v", ErrKeySet, err)
	}
	if b.Type != docType {
		return nil, fmt.Errorf("%w: type %q, want %q", ErrKeySet, b.Type, docType)
	}
	if b.Version == 0 {
		return nil, fmt.Errorf("%w: version 0: versions start at 1", ErrKeySet)
	}
	if b.Expires < 0 {
		return nil, fmt.Errorf("%w: expires %d: want a time after 1970, or none", ErrKeySet, b.Expires)
	}
	var compact bytes.Buffer
	if err := json.Compact(&compact, doc.Signed); err != nil {
		return nil, fmt.Errorf("%w: signed: %v", ErrKeySet, err)
	}
	s := &Set{Version: b.Version, Threshold: max(b.Threshold, 1), raw: slices.Clone(raw), body: compact.Bytes(), sigs: doc.Signatures}
	if b.Threshold < 0 {
		return nil, fmt.Errorf("%w: threshold %d: want 1 or more", ErrKeySet, b.Threshold)
	}
	if b.Expires > 0 {
		s.Expires = time.Unix(b.Expires, 0).UTC()
	}
	var err error
	if s.Roots, err = decodeKeys("roots", b.Roots); err != nil {
		return nil, err
	}
	if s.ImageKeys, err = decodeKeys("image_keys", b.ImageKeys); err != nil {
		return nil, err
	}
	if len(s.Roots) < s.Threshold {
		return nil, fmt.Errorf("%w: %d roots for a threshold of %d: the next set could never be signed", ErrKeySet, len(s.Roots), s.Threshold)
	}
	if len(s.ImageKeys) == 0 {
		return nil, fmt.Errorf("%w: no image keys: no image could be installed", ErrKeySet)
	}
	if len(b.Revoked) > 4*maxKeys {
		return nil, fmt.Errorf("%w: %d revoked keys, more than %d", ErrKeySet, len(b.Revoked), 4*maxKeys)
	}
	for i, r := range b.Revoked {
		h, err := hex.DecodeString(r)
		if err != nil || len(h) != sha256.Size {
			return nil, fmt.Errorf("%w: revoked[%d]: %q is not a key hash (64 hex digits, otaimg getpub --hash)", ErrKeySet, i, r)
		}
		s.Revoked = append(s.Revoked, h)
	}
	for _, k := range slices.Concat(s.Roots, s.ImageKeys) {
		if s.IsRevoked(k) {
			return nil, fmt.Errorf("%w: key %s is both trusted and revoked", ErrKeySet, KeyID(k))
		}
	}
	if len(doc.Signatures) == 0 {
		return nil, fmt.Errorf("%w: unsigned", ErrKeySet)
	}
	if len(doc.Signatures) > maxKeys {
		return nil, fmt.Errorf("%w: %d signatures, more than %d", ErrKeySet, len(doc.Signatures), maxKeys)
	}
	for i, sg := range doc.Signatures {
		id, err := hex.DecodeString(sg.KeyID)
		if err != nil || len(id) != sha256.Size {
			return nil, fmt.Errorf("%w: signatures[%d].keyid: %q is not a key hash", ErrKeySet, i, sg.KeyID)
		}
		s.ids = append(s.ids, id)
	}
	return s, nil
}

func decodeKeys(what string, enc []string) ([]crypto.PublicKey, error) {
	if len(enc) > maxKeys {
		return nil, fmt.Errorf("%w: %d %s, more than %d", ErrKeySet, len(enc), what, maxKeys)
	}
	var out []crypto.PublicKey
	var ids []string
	for i, e := range enc {
		der, err := base64.StdEncoding.DecodeString(e)
		if err != nil {
			return nil, fmt.Errorf("%w: %s[%d]: not base64: %v", ErrKeySet, what, i, err)
		}
		k, err := x509.ParsePKIXPublicKey(der)
		if err != nil {
			return nil, fmt.Errorf("%w: %s[%d]: %v", ErrKeySet, what, i, err)
		}
		if _, err := image.KeyType(k); err != nil {
			return nil, fmt.Errorf("%w: %s[%d]: %v", ErrKeySet, what, i, err)
		}
		id := KeyID(k)
		if slices.Contains(ids, id) {
			return nil, fmt.Errorf("%w: %s[%d]: key %s listed twice", ErrKeySet, what, i, id)
		}
		ids = append(ids, id)
		out = append(out, k)
	}
	return out, nil
}

// KeyID names a key as imgtool getpubhash does (hex of image.KeyHash),
// shortened to 16 digits for messages.
func KeyID(k crypto.PublicKey) string {
	h, err := image.KeyHash(k)
	if err != nil {
		return "(unknown key)"
	}
	return hex.EncodeToString(h[:8])
}

// IsRevoked reports whether s revokes k.
func (s *Set) IsRevoked(k crypto.PublicKey) bool {
	h, err := image.KeyHash(k)
	if err != nil {
		return false
	}
	return slices.ContainsFunc(s.Revoked, func(r []byte) bool { return bytes.Equal(r, h) })
}

// signers returns how many distinct keys of keys signed s.
func (s *Set) signers(keys []crypto.PublicKey) int {
	d := digest(s.body)
	n := 0
	for _, k := range keys {
		h, err := image.KeyHash(k)
		if err != nil {
			continue
		}
		for i, id := range s.ids {
			if !bytes.Equal(id, h) {
				continue
			}
			sig, err := base64.StdEncoding.DecodeString(s.sigs[i].Sig)
			if err == nil && image.VerifyDigest(k, d, sig) {
				n++
				break
			}
		}
	}
	return n
}

// Accept checks that a device that trusts cur (nil: no set yet, only its
// anchors) may take next, and says why not. now is the device's trusted
// time, or zero when its clock is not trusted (expiry is then not checked).
func Accept(cur *Set, anchors []crypto.PublicKey, next *Set, now time.Time) error {
	roots, threshold, curVersion := anchors, 1, uint64(0)
	if cur != nil {
		roots, threshold, curVersion = cur.Roots, cur.Threshold, cur.Version
	}
	if next.Version <= curVersion {
		return fmt.Errorf("%w: version %d is not newer than the device's %d (a replayed or older set)", ErrRefused, next.Version, curVersion)
	}
	if !now.IsZero() && !next.Expires.IsZero() && !now.Before(next.Expires) {
		return fmt.Errorf("%w: version %d expired at %s; the device's clock says %s: %w", ErrRefused, next.Version, next.Expires.Format(time.RFC3339), now.UTC().Format(time.RFC3339), ErrExpired)
	}
	if cur != nil {
		for _, r := range cur.Revoked {
			if !slices.ContainsFunc(next.Revoked, func(n []byte) bool { return bytes.Equal(n, r) }) {
				return fmt.Errorf("%w: version %d drops the revocation of key %s that version %d made: revocations are permanent", ErrRefused, next.Version, hex.EncodeToString(r[:8]), cur.Version)
			}
		}
	}
	// A root may sign the set that revokes it: whoever holds it could sign
	// anything the device takes until then, and a leaked root is retired
	// by the first set the rightful roots publish.
	if n := next.signers(roots); n < threshold {
		who := "roots of version " + fmt.Sprint(curVersion)
		if cur == nil {
			who = "the device's provisioned keys (public_keys)"
		}
		return fmt.Errorf("%w: version %d is signed by %d of %s (%s), needs %d", ErrRefused, next.Version, n, who, describe(roots), threshold)
	}
	if n := next.signers(next.Roots); n < next.Threshold {
		return fmt.Errorf("%w: version %d is signed by %d of its own roots (%s), needs %d: sign it with the new roots too, so that they are known to work", ErrRefused, next.Version, n, describe(next.Roots), next.Threshold)
	}
	return nil
}

func describe(keys []crypto.PublicKey) string {
	if len(keys) == 0 {
		return "none left"
	}
	ids := make([]string, len(keys))
	for i, k := range keys {
		ids[i] = KeyID(k)
	}
	return strings.Join(ids, ", ")
}

// Effective returns the keys an image may be signed with on a device that
// trusts set (nil: none yet) and was provisioned with anchors. readsSet is
// whether the device's bootloader reads the set too (otaport's own does);
// when it does not, only anchors it holds can be used, or the device would
// install an image its bootloader refuses. now is the trusted time or zero;
// an expired set then trusts nothing until a fresh one arrives.
func Effective(set *Set, anchors []crypto.PublicKey, readsSet bool, now time.Time) ([]crypto.PublicKey, error) {
	if set == nil {
		return anchors, nil
	}
	if !now.IsZero() && !set.Expires.IsZero() && !now.Before(set.Expires) {
		return nil, fmt.Errorf("key set version %d expired at %s (the device's clock says %s): no image is taken until the operator publishes a fresh set (otaimg keyset sign): %w",
			set.Version, set.Expires.Format(time.RFC3339), now.UTC().Format(time.RFC3339), ErrExpired)
	}
	if readsSet {
		return slices.Clone(set.ImageKeys), nil
	}
	var out []crypto.PublicKey
	for _, k := range set.ImageKeys {
		id := KeyID(k)
		if slices.ContainsFunc(anchors, func(a crypto.PublicKey) bool { return KeyID(a) == id }) {
			out = append(out, k)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("key set version %d trusts image keys %s, none of which this board's bootloader holds (%s): it cannot learn keys over the air, so an image signed with them would not boot",
			set.Version, describe(set.ImageKeys), describe(anchors))
	}
	return out, nil
}

// ReadsSet reports whether a bootloader of this name reads otaport's key
// set from the params partition: only otaport's own does.
func ReadsSet(bootloader string) bool {
	return bootloader == "" || bootloader == hal.BootloaderOtaport
}

// StoreKey is the key under which a device keeps its current set in its
// port's key-value store (the params partition), where its bootloader
// finds it.
const StoreKey = "otaport.keyset"
