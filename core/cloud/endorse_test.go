package cloud

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"errors"
	"testing"
)

func TestEndorse_OnlyTheImageKeyForThatOrderKey(t *testing.T) {
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	_, ed, _ := ed25519.GenerateKey(rand.Reader)
	rs, _ := rsa.GenerateKey(rand.Reader, 2048)
	orderKey, _, _ := ed25519.GenerateKey(rand.Reader)
	otherOrderKey, _, _ := ed25519.GenerateKey(rand.Reader)
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	for _, tc := range []struct {
		name string
		key  crypto.Signer
	}{{"ecdsa-p256", ec}, {"ed25519", ed}, {"rsa-2048", rs}} {
		t.Run(tc.name, func(t *testing.T) {
			e, err := Endorse(tc.key, orderKey)
			if err != nil {
				t.Fatal(err)
			}
			keys := []crypto.PublicKey{other.Public(), tc.key.Public()}
			if err := VerifyEndorsement(keys, orderKey, e); err != nil {
				t.Errorf("endorsement refused by the key that made it: %v", err)
			}
			if err := VerifyEndorsement([]crypto.PublicKey{other.Public()}, orderKey, e); !errors.Is(err, ErrEndorsement) {
				t.Errorf("endorsement taken by another image key: %v", err)
			}
			if err := VerifyEndorsement(keys, otherOrderKey, e); !errors.Is(err, ErrEndorsement) {
				t.Errorf("endorsement taken for another order key: %v", err)
			}
			o := &Order{Data: OrderData{Otaport: &Extension{OrderKey: base64.StdEncoding.EncodeToString(orderKey), Endorsement: e}}}
			got, err := EndorsedKey(o, keys)
			if err != nil || !got.Equal(orderKey) {
				t.Errorf("EndorsedKey = %x, %v; want the order key", got, err)
			}
			o.Data.Otaport.OrderKey = base64.StdEncoding.EncodeToString(otherOrderKey)
			if _, err := EndorsedKey(o, keys); !errors.Is(err, ErrEndorsement) {
				t.Errorf("EndorsedKey took a swapped order key: %v", err)
			}
		})
	}
	// The domain string: the image key's signature over the bare key, or
	// over its hash, is no endorsement.
	bare := base64.StdEncoding.EncodeToString(ed25519.Sign(ed, orderKey))
	if err := VerifyEndorsement([]crypto.PublicKey{ed.Public()}, orderKey, bare); err == nil {
		t.Error("a signature over the bare order key was taken as an endorsement")
	}
}

func FuzzEndorsedKey(f *testing.F) {
	_, ed, _ := ed25519.GenerateKey(rand.Reader)
	orderKey, _, _ := ed25519.GenerateKey(rand.Reader)
	e, _ := Endorse(ed, orderKey)
	f.Add(base64.StdEncoding.EncodeToString(orderKey), e)
	f.Add("", "")
	f.Add("AAAA", "!!!")
	keys := []crypto.PublicKey{ed.Public()}
	f.Fuzz(func(t *testing.T, key, endorsement string) {
		o := &Order{Data: OrderData{Otaport: &Extension{OrderKey: key, Endorsement: endorsement}}}
		got, err := EndorsedKey(o, keys)
		if err == nil && !got.Equal(orderKey) {
			t.Fatalf("EndorsedKey took %x, which the image key never endorsed", got)
		}
	})
}
