package cloud_test

import (
	"crypto/ed25519"
	"errors"
	"strings"
	"testing"

	"github.com/otaport/otaport/core/cloud"
)

func signedOrder(t *testing.T, key ed25519.PrivateKey) *cloud.Order {
	t.Helper()
	o := &cloud.Order{
		Code: cloud.OrderCodeSuccess, Message: cloud.OrderMessageSuccess, ID: 7,
		Data: cloud.OrderData{
			Size: 1000, Version: "1.1.0", URL: "http://fw/firmware/x", SignMethod: "SHA256", Sign: strings.Repeat("ab", 32),
			Module: "wifi",
			Otaport: &cloud.Extension{
				Board: "nucleo-h743zi", SecurityCounter: 3, ProductKey: "pk", DeviceName: "dev",
				Expires: 1_800_000_000, Counter: 5, Nonce: strings.Repeat("0f", 16),
			},
		},
	}
	if err := cloud.SignOrder(o, key); err != nil {
		t.Fatal(err)
	}
	if err := o.Validate(); err != nil {
		t.Fatalf("a signed order does not validate: %v", err)
	}
	return o
}

// TestVerifyOrder_EveryFieldIsSigned changes each field the signature
// covers, one at a time, and expects the signature to fail.
func TestVerifyOrder_EveryFieldIsSigned(t *testing.T) {
	pub, key, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := cloud.VerifyOrder(signedOrder(t, key), pub); err != nil {
		t.Fatalf("VerifyOrder of a genuine order: %v", err)
	}
	edits := map[string]func(o *cloud.Order){
		"product key":      func(o *cloud.Order) { o.Data.Otaport.ProductKey = "pk2" },
		"device name":      func(o *cloud.Order) { o.Data.Otaport.DeviceName = "dev2" },
		"board":            func(o *cloud.Order) { o.Data.Otaport.Board = "esp32-devkitc" },
		"module":           func(o *cloud.Order) { o.Data.Module = "" },
		"digest":           func(o *cloud.Order) { o.Data.Sign = strings.Repeat("cd", 32) },
		"size":             func(o *cloud.Order) { o.Data.Size++ },
		"version":          func(o *cloud.Order) { o.Data.Version = "1.0.0" },
		"url":              func(o *cloud.Order) { o.Data.URL += "?x" },
		"security counter": func(o *cloud.Order) { o.Data.Otaport.SecurityCounter = 0 },
		"expiry":           func(o *cloud.Order) { o.Data.Otaport.Expires++ },
		"counter":          func(o *cloud.Order) { o.Data.Otaport.Counter = 6 },
		"nonce":            func(o *cloud.Order) { o.Data.Otaport.Nonce = strings.Repeat("1f", 16) },
	}
	for name, edit := range edits {
		t.Run(name, func(t *testing.T) {
			o := signedOrder(t, key)
			edit(o)
			err := cloud.VerifyOrder(o, pub)
			if !errors.Is(err, cloud.ErrOrderSignature) || !strings.Contains(err.Error(), "does not match") {
				t.Errorf("VerifyOrder after changing the %s: %v, want a signature that does not match", name, err)
			}
		})
	}
	o := signedOrder(t, key)
	o.Data.Otaport.Signature = ""
	if err := cloud.VerifyOrder(o, pub); err == nil || !strings.Contains(err.Error(), "not signed") {
		t.Errorf("VerifyOrder of an unsigned order: %v", err)
	}
	other, _, _ := ed25519.GenerateKey(nil)
	if err := cloud.VerifyOrder(signedOrder(t, key), other); err == nil || !strings.Contains(err.Error(), "signed by order key") {
		t.Errorf("VerifyOrder with another key: %v", err)
	}
}

// TestParseInform_Nonce: a version report's nonce is read, and one that is
// not hex refused.
func TestParseInform_Nonce(t *testing.T) {
	in, err := cloud.ParseInform([]byte(`{"id":1,"params":{"version":"1.0.0","nonce":"00ff"}}`))
	if err != nil || in.Params.Nonce != "00ff" {
		t.Fatalf("ParseInform = %+v, %v", in, err)
	}
	if _, err := cloud.ParseInform([]byte(`{"id":1,"params":{"version":"1.0.0","nonce":"xyz"}}`)); err == nil || !strings.Contains(err.Error(), "params.nonce") {
		t.Errorf("ParseInform of a nonce that is not hex: %v", err)
	}
}
