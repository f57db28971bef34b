package agent_test

import (
	"bytes"
	"context"
	"testing"

	"github.com/otaport/otaport/core/cloud"
	"github.com/otaport/otaport/core/image"
)

// TestAgent_OrderCannotFastForwardTheSecurityCounter: TUF's fast-forward
// through an order. An order claims a security counter far above its
// image's; the device installs the image and its counter becomes the
// image's, not the order's, so a genuine later image with a modest
// counter still installs. Were the claim taken, the second order would be
// refused as a rollback.
func TestAgent_OrderCannotFastForwardTheSecurityCounter(t *testing.T) {
	r := newRig(t)
	r.start(r.config())
	i := r.waitFor("inform 1.0.0+0 at start", 0, informOf("1.0.0+0"))

	// orderWithCounter publishes an order for version v whose image has
	// security counter cnt and whose extension claims claim.
	orderWithCounter := func(id int64, v string, cnt, claim uint32) {
		o := r.newOrder(id, v, func(o *cloud.Order) { o.Data.Otaport.SecurityCounter = claim })
		img := r.sign(v)
		ver, err := image.ParseVersion(v)
		if err != nil {
			t.Fatal(err)
		}
		// The rig's images carry no counter: sign the same payload again
		// with one.
		parsed, err := image.Parse(bytes.NewReader(img), int64(len(img)))
		if err != nil {
			t.Fatal(err)
		}
		start := int(parsed.Header.HeaderSize)
		img, err = image.Sign(img[start:start+int(parsed.Header.ImageSize)], r.key,
			image.SignOptions{Version: ver, SecurityCounter: &cnt})
		if err != nil {
			t.Fatal(err)
		}
		r.mu.Lock()
		r.images["/firmware/"+v] = img
		r.mu.Unlock()
		o.Data.Size, o.Data.Sign = int64(len(img)), sha256Hex(img)
		r.publish(o)
	}
	counter := func() uint32 {
		info, err := r.port.Describe(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		return info.Boot.SecurityCounter
	}

	orderWithCounter(1001, "1.1.0", 3, 1<<30)
	j := r.waitFor("inform 1.1.0+0", i, informOf("1.1.0+0"))
	if got := counter(); got != 3 {
		t.Fatalf("after an image with counter 3 ordered as counter %d, the device's counter is %d, want 3", 1<<30, got)
	}
	orderWithCounter(1002, "1.3.0", 4, 4)
	r.waitFor("inform 1.3.0+0", j, informOf("1.3.0+0"))
	if got := counter(); got != 4 {
		t.Errorf("after an image with counter 4 the device's counter is %d, want 4", got)
	}
}
