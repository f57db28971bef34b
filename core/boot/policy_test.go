package boot_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"strings"
	"testing"

	"github.com/otaport/otaport/core/hal"
)

// TestBoot_RefusesAnotherSignatureAlgorithm: the bootloader of a board
// whose image.signature is ecdsa-p256 boots no ed25519-signed image, even
// with an ed25519 key among its keys (issue 9, reproduction 4).
func TestBoot_RefusesAnotherSignatureAlgorithm(t *testing.T) {
	for _, scheme := range []hal.Scheme{hal.SingleBank, hal.DualBank} {
		t.Run(string(scheme), func(t *testing.T) {
			f := newFixture(t, testBoards[0], scheme, 1)
			f.layout.Signature = "ecdsa-p256"
			ed := f.key
			ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
			if err != nil {
				t.Fatal(err)
			}
			f.opts.Keys = []crypto.PublicKey{ec.Public(), ed.Public()}
			f.key = ec
			f.flashImage(hal.PartApp, f.image("1.0.0", 0))
			pl := f.platform()
			if res := reboot(t, pl); res.Version != "1.0.0+0" {
				t.Fatalf("factory image: %+v", res)
			}
			f.key = ed
			img := f.image("1.1.0", 0)
			ctx := context.Background()
			if err := pl.Init(ctx, hal.InitRequest{Size: uint64(len(img))}); err != nil {
				t.Fatal(err)
			}
			if err := pl.Write(ctx, 0, img); err != nil {
				t.Fatal(err)
			}
			err = pl.SetBoot(ctx, hal.BootRequest{Mode: hal.BootTest, Size: uint64(len(img))})
			if err == nil || !strings.Contains(err.Error(), "ed25519") || !strings.Contains(err.Error(), "ecdsa-p256") {
				t.Errorf("set boot of an ed25519 image on an ecdsa-p256 board: %v, want a refusal naming both", err)
			}
			for range 3 {
				if res := reboot(t, pl); res.Version != "1.0.0+0" {
					t.Fatalf("booted %+v, want 1.0.0 still", res)
				}
			}
			if s := slotState(describe(t, pl), hal.PartOTA); s.Bootable {
				t.Errorf("the ed25519 image in ota is reported bootable: %+v", s)
			}
		})
	}
}
