package agent_test

import (
	"testing"

	"github.com/otaport/otaport/core/cloud"
)

// A failure that is not the version's own does not block it: an order
// whose download fails (a dead URL, a network outage) and an order whose
// bytes are not the ones signed (a forged or corrupted file) are failed and
// reported, and the genuine order of the same version installs afterwards.
// Remembered by version alone, either one froze the device on its old
// version ("not retried").
func TestAgent_FailuresNotOfTheVersionDoNotBlockIt(t *testing.T) {
	r := newRig(t)
	defer r.start(r.config())()
	i := r.waitFor("inform 1.0.0+0", 0, informOf("1.0.0+0"))

	// A dead URL: the download fails.
	r.order(2001, "1.1.0", func(o *cloud.Order) { o.Data.URL = r.fw.URL + "/firmware/none" })
	i = r.waitFor("download failure", i, progressOf(cloud.StepDownloadFailed, ""))

	// Bytes that are not the image signed: a file of the same size, its
	// own digest announced, so only the signature check refuses it.
	forged := r.newOrder(2002, "1.1.0", nil)
	r.mu.Lock()
	bad := append([]byte(nil), r.images["/firmware/1.1.0"]...)
	bad[len(bad)/2] ^= 0x40
	r.images["/firmware/forged"] = bad
	r.mu.Unlock()
	forged.Data.URL, forged.Data.Sign = r.fw.URL+"/firmware/forged", sha256Hex(bad)
	r.publish(forged)
	i = r.waitFor("verification failure", i, progressOf(cloud.StepVerifyFailed, ""))

	// The genuine order.
	r.order(2003, "1.1.0", nil)
	j := r.waitFor("inform 1.1.0+0", i, informOf("1.1.0+0"))
	for _, m := range r.since(i)[:j-i] {
		if progressOf(cloud.StepUpgradeFailed, "not retried")(m) {
			t.Fatalf("the genuine 1.1.0 was refused: %s", m.payload)
		}
	}
	if s := r.running(); s.Version != "1.1.0+0" || !s.Confirmed {
		t.Fatalf("running %+v, want 1.1.0+0 confirmed", s)
	}
}
