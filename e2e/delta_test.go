package e2e

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestDeltaCampaign: a campaign for 1.1.0 to three devices, two running
// 1.0.0 and one running 1.0.1. otaserve has the delta image 1.0.0 -> 1.1.0,
// made on upload with --delta-from on the command line's side: the devices
// on its base download the delta and rebuild 1.1.0 from their running
// slot, the other downloads the full image, and all three confirm 1.1.0.
// What the firmware server sent is counted by a proxy in front of it.
func TestDeltaCampaign(t *testing.T) {
	r := newFleetRig(t)
	run(t, r.dir, "otaimg", "sign", "--key", "key.pem", "--version", "1.0.1", "--pad-header", "app.bin", "app-1.0.1.img")
	httpPort, mqttPort := freePort(t), freePort(t)
	proxy := newHoldProxy(t, fmt.Sprintf("https://127.0.0.1:%d", httpPort), filepath.Join(r.dir, "data", "ca.pem"), 0)
	proxy.open()
	r.otaserve(httpPort, mqttPort, "--public-url", proxy.URL())
	board := boards[0]
	from := map[string]string{"dev-0": "1.0.0", "dev-1": "1.0.0", "dev-2": "1.0.1"}
	for _, dn := range []string{"dev-0", "dev-1", "dev-2"} {
		run(t, r.dir, "otarun", "--plugin", filepath.Join(bin, "otaport-"+board), "provision",
			"--key", "pub.pem", "--flash", dn+".flash", "app-"+from[dn]+".img")
		r.serve("device", "add", "--product", "demo", "--name", dn, "--board", board, "--group", "delta", "--secret", "s-"+dn)
		r.deviceYAML(dn, fmt.Sprintf("ssl://127.0.0.1:%d", mqttPort), "s-"+dn, "")
		r.agent(board, dn)
	}

	// The base, then the target with the delta to it from 1.0.0.
	r.serve("image", "upload", "--board", board, "app-1.0.0.img")
	out := r.serve("image", "upload", "--board", board, "--delta-from", "1.0.0", "--key", "key.pem", "--json", "app-1.1.0.img")
	var imgs []struct {
		ID          uint64 `json:"id"`
		Size        int64  `json:"size"`
		SHA256      string `json:"sha256"`
		Hash        string `json:"hash"`
		DeltaTarget uint64 `json:"delta_target"`
		DeltaBase   uint64 `json:"delta_base"`
	}
	if err := json.Unmarshal([]byte(out), &imgs); err != nil || len(imgs) != 2 || imgs[1].DeltaTarget != imgs[0].ID || imgs[1].DeltaBase != 1 {
		t.Fatalf("image upload --delta-from: %v\n%s", err, out)
	}
	full, delta := imgs[0], imgs[1]
	t.Logf("full image %d: %d bytes; delta image %d: %d bytes (%.1f %%)", full.ID, full.Size, delta.ID, delta.Size, 100*float64(delta.Size)/float64(full.Size))

	// Each device reports its version and the hash of the image it runs.
	for dn, v := range from {
		eventually(t, dn+" reports "+v+" with its image hash", func() (bool, string) {
			out := r.serve("device", "get", "demo/"+dn, "--json")
			var d struct {
				Version   string `json:"version"`
				ImageHash string `json:"image_hash"`
			}
			json.Unmarshal([]byte(out), &d)
			return d.Version == v+"+0" && len(d.ImageHash) == 64, out
		})
	}

	out = r.serve("campaign", "create", "--image", fmt.Sprint(full.ID), "--target", "group=delta", "--waves", "100%", "--success", "100")
	c := regexp.MustCompile(`^campaign (\d+): 1.1.0\+0 to 3 devices in 1 waves, running`).FindStringSubmatch(out)
	if c == nil {
		t.Fatalf("campaign create said %q", out)
	}
	eventually(t, "campaign finished", func() (bool, string) {
		s := r.campaignState(c[1])
		return strings.HasSuffix(s, "finished: every wave succeeded"), s
	})
	for dn := range from {
		if v := r.versionOf(dn); v != "1.1.0+0" {
			t.Errorf("otaserve has %s for %s, want 1.1.0+0", v, dn)
		}
	}

	// What each device was ordered, and what the firmware server sent.
	var st struct {
		Devices []struct {
			Device      string `json:"device"`
			Delta       uint64 `json:"delta"`
			FailedDelta uint64 `json:"failed_delta"`
		} `json:"devices"`
		Bytes struct {
			Sent, Full int64
			Deltas     int
		} `json:"bytes"`
	}
	out = r.serve("campaign", "status", c[1], "--json")
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("campaign status --json: %v\n%s", err, out)
	}
	for _, p := range st.Devices {
		want := delta.ID
		if p.Device == "demo/dev-2" {
			want = 0
		}
		if p.Delta != want || p.FailedDelta != 0 {
			t.Errorf("%s was ordered delta image %d (failed delta %d), want %d and none failed", p.Device, p.Delta, p.FailedDelta, want)
		}
	}
	if st.Bytes.Sent != 2*delta.Size+full.Size || st.Bytes.Full != 3*full.Size || st.Bytes.Deltas != 2 {
		t.Errorf("campaign bytes %+v, want sent %d (two deltas and one full image) of full %d, 2 deltas", st.Bytes, 2*delta.Size+full.Size, 3*full.Size)
	}
	// A device may fetch part of a file again (a resume by Range): each
	// device on the base fetched the delta from its start, and at most
	// twice over; only the device on 1.0.1 fetched the full image, once.
	served := func(img string) int64 { return proxy.bytesServed("/firmware/" + img) }
	proxy.mu.Lock()
	whole := map[string]int{}
	for _, r := range proxy.requests {
		whole[r]++
	}
	t.Logf("downloads: %s", strings.Join(proxy.requests, "; "))
	proxy.mu.Unlock()
	if n := whole["/firmware/"+delta.SHA256]; n != 2 {
		t.Errorf("the delta image was fetched from its start %d times, want twice (once by each device on its base)", n)
	}
	if got := served(delta.SHA256); got < 2*delta.Size || got > 4*delta.Size {
		t.Errorf("the firmware server sent %d bytes of the delta image, want %d..%d (each device on its base the whole file, resumes included)", got, 2*delta.Size, 4*delta.Size)
	}
	if n, got := whole["/firmware/"+full.SHA256], served(full.SHA256); n != 1 || got != full.Size {
		t.Errorf("the full image was fetched %d times, %d bytes; want once, %d bytes (by the device on 1.0.1)", n, got, full.Size)
	}
	t.Logf("sent: %d bytes of delta, %d of full image; without deltas: %d", served(delta.SHA256), served(full.SHA256), 3*full.Size)
	status := r.serve("campaign", "status", c[1])
	if !regexp.MustCompile(`(?m)^bytes: \d+ ordered of \d+ in full images \(\d+\.\d %\), 2 devices on delta images$`).MatchString(status) {
		t.Errorf("campaign status lacks the bytes line:\n%s", status)
	}
}
