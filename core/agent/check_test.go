package agent

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/otaport/otaport/core/cloud"
)

func TestCheckOrder(t *testing.T) {
	dev := Device{Board: "b1", SlotSize: 1000, Running: "1.1.0+0", SecurityCounter: 5,
		Schemes: []string{"ecdsa-p256"}, KeyIDs: []string{"aabb"}}
	order := func(edit func(*cloud.Order)) *cloud.Order {
		o := &cloud.Order{Data: cloud.OrderData{Size: 500, Version: "1.2.0",
			Otaport: &cloud.Extension{Board: "b1", Scheme: "ecdsa-p256", KeyID: "AABB", SecurityCounter: 5}}}
		if edit != nil {
			edit(o)
		}
		return o
	}
	cases := []struct {
		name      string
		edit      func(*cloud.Order)
		downgrade bool
		want      Verdict
		err       string
	}{
		{"newer", nil, false, Install, ""},
		{"no extension", func(o *cloud.Order) { o.Data.Otaport = nil }, false, Install, ""},
		{"same version", func(o *cloud.Order) { o.Data.Version = "1.1.0" }, false, AlreadyRunning, ""},
		{"same version with build", func(o *cloud.Order) { o.Data.Version = "1.1.0+0" }, false, AlreadyRunning, ""},
		{"older", func(o *cloud.Order) { o.Data.Version = "1.0.9" }, false, 0, "older than the running 1.1.0+0"},
		{"older allowed", func(o *cloud.Order) { o.Data.Version = "1.0.9" }, true, Install, ""},
		{"other board", func(o *cloud.Order) { o.Data.Otaport.Board = "b2" }, false, 0, "built for board b2, this device is a b1"},
		{"too large", func(o *cloud.Order) { o.Data.Size = 1001 }, false, 0, "1001 bytes and the update slot holds 1000"},
		{"counter below", func(o *cloud.Order) { o.Data.Otaport.SecurityCounter = 4 }, true, 0, "security counter 4 is below this device's 5"},
		{"scheme", func(o *cloud.Order) { o.Data.Otaport.Scheme = "rsa-2048" }, false, 0, "signed with rsa-2048"},
		{"key", func(o *cloud.Order) { o.Data.Otaport.KeyID = "ccdd" }, false, 0, "key ccdd"},
		{"free version", func(o *cloud.Order) { o.Data.Version = "app-1.2" }, false, 0, `version "app-1.2"`},
		{"delta", func(o *cloud.Order) { o.Data.IsDiff = 1 }, false, Install, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			v, err := CheckOrder(order(c.edit), dev, c.downgrade)
			if c.err == "" {
				if err != nil || v != c.want {
					t.Fatalf("CheckOrder = %v, %v; want %v", v, err, c.want)
				}
				return
			}
			if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), c.err) {
				t.Fatalf("CheckOrder error %v, want ErrRefused with %q", err, c.err)
			}
		})
	}
}

func TestRunHealthCheck(t *testing.T) {
	info := HealthInfo{Version: "1.2.0+0", Previous: "1.1.0+0", Board: "b1"}
	cases := []struct {
		name    string
		h       HealthCheck
		wantErr string
	}{
		{"none", HealthCheck{}, ""},
		{"healthy", HealthCheck{Command: []string{"sh", "-c", `test "$OTARUN_VERSION" = 1.2.0+0 && test "$OTARUN_PREVIOUS_VERSION" = 1.1.0+0 && test "$OTARUN_BOARD" = b1`}}, ""},
		{"unhealthy", HealthCheck{Command: []string{"sh", "-c", "echo first; echo 'sensor timeout' >&2; exit 3"}}, "failed (exit status 3): sensor timeout"},
		{"missing program", HealthCheck{Command: []string{"./no-such-health-check"}}, "no-such-health-check"},
		{"hangs", HealthCheck{Command: []string{"sh", "-c", "echo started; sleep 30"}, Timeout: Duration(200 * time.Millisecond)}, "did not finish within 200ms: started"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := RunHealthCheck(context.Background(), c.h, info)
			if c.wantErr == "" {
				if err != nil {
					t.Fatalf("RunHealthCheck: %v, want healthy", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), c.wantErr) {
				t.Fatalf("RunHealthCheck: %v, want an error with %q", err, c.wantErr)
			}
		})
	}
}

func TestRecord_RemembersFailuresBounded(t *testing.T) {
	var rec record
	for i := range maxFailures + 3 {
		rec.remember(failure{Version: "1." + string(rune('0'+i)) + ".0"})
	}
	if len(rec.Failed) != maxFailures {
		t.Fatalf("%d failures kept, want %d", len(rec.Failed), maxFailures)
	}
	o := &cloud.Order{Data: cloud.OrderData{Version: rec.Failed[len(rec.Failed)-1].Version}}
	if _, ok := rec.failedBefore(o); !ok {
		t.Errorf("the newest failure %s is not remembered", o.Data.Version)
	}
	o.Data.Version = "1.0.0"
	if _, ok := rec.failedBefore(o); ok {
		t.Errorf("the oldest failure is still remembered past the bound")
	}
}
