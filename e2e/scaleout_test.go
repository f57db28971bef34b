package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"

	"github.com/otaport/otaport/fleet/store/pgtest"
)

// pg is the package's PostgreSQL server, started by the first test that
// asks for a database; TestMain stops it.
var pg pgtest.Server

// TestScaleOut: two otaserve replicas, built as users run them, on one
// PostgreSQL database and one external broker (Mosquitto), with agents
// (otarun and a port plugin over an emulated flash) as the devices. The
// replica that holds the campaigns' lease is killed (SIGKILL) as the
// campaign starts; the other takes over and every device confirms, each
// having been sent one order (counted on the wire). The clustered broker
// and its kill come with the NATS cluster.
func TestScaleOut(t *testing.T) {
	const devices = 4
	db := pg.DB(t)
	r := newFleetRig(t)
	devs := map[string]string{}
	for i := range devices {
		devs[fmt.Sprintf("dev-%d", i)] = fmt.Sprintf("s-%d", i)
	}
	m := newMosquitto(t, r.dir, devs)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w := m.watch(ctx, "watcher-scaleout")
	broker := fmt.Sprintf("tcp://otaserve:operator-pw@127.0.0.1:%d", m.port)

	// Replica a makes the data directory's keys; b runs on a copy of it,
	// so that the client commands of the rig (--data data) speak to a,
	// and those given --data data-b to b.
	// Devices download from one address whichever replica ordered them:
	// a load balancer's in production (--public-url), b's here, as b
	// outlives a.
	bPort := freePort(t)
	public := fmt.Sprintf("https://127.0.0.1:%d", bPort)
	a := r.otaserve(freePort(t), freePort(t), "--db", db, "--broker", broker, "--replica", "a", "--public-url", public)
	if out, err := exec.Command("cp", "-a", filepath.Join(r.dir, "data"), filepath.Join(r.dir, "data-b")).CombinedOutput(); err != nil {
		t.Fatalf("copy the data directory: %v: %s", err, out)
	}
	os.Remove(filepath.Join(r.dir, "data-b", "url"))
	start(t, r.dir, "otaserve-b", nil, "otaserve", "run", "--data", "data-b", "--http", fmt.Sprintf("127.0.0.1:%d", bPort),
		"--key", "pub.pem", "--db", db, "--broker", broker, "--replica", "b", "--public-url", public)
	eventually(t, "replica b up", func() (bool, string) {
		return fileExists(filepath.Join(r.dir, "data-b", "url")), ""
	})
	onB := func(args ...string) string {
		return run(t, r.dir, "otaserve", append([]string{args[0], args[1], "--data", "data-b"}, args[2:]...)...)
	}

	board := boards[1]
	for i := range devices {
		dn := fmt.Sprintf("dev-%d", i)
		r.provision(board, dn)
		r.serve("device", "add", "--product", "demo", "--name", dn, "--board", board, "--group", "scale", "--secret", devs[dn])
		r.deviceYAML(dn, fmt.Sprintf("tcp://127.0.0.1:%d", m.port), devs[dn], "sign_form: sdk\n")
		r.agent(board, dn)
	}
	for dn := range devs {
		eventually(t, dn+" reports 1.0.0+0", func() (bool, string) { v := r.versionOf(dn); return v == "1.0.0+0", v })
	}
	out := r.serve("image", "upload", "--board", board, "app-1.1.0.img")
	img := regexp.MustCompile(`^image (\d+):`).FindStringSubmatch(out)
	if img == nil {
		t.Fatalf("image upload said %q", out)
	}
	// a started first and holds the lease: it creates the campaign.
	out = r.serve("campaign", "create", "--image", img[1], "--target", "group=scale", "--waves", "1,100%", "--success", "100")
	c := regexp.MustCompile(`^campaign (\d+):`).FindStringSubmatch(out)
	if c == nil {
		t.Fatalf("campaign create said %q", out)
	}
	a.stop(syscall.SIGKILL)

	eventually(t, "campaign finished on replica b", func() (bool, string) {
		out := onB("campaign", "status", c[1])
		first, _, _ := strings.Cut(out, "\n")
		return strings.HasSuffix(first, "finished: every wave succeeded"), out
	})
	for dn := range devs {
		orders := w.find("/ota/device/upgrade/demo/"+dn, nil)
		if len(orders) == 0 {
			t.Errorf("%s: no order on the wire", dn)
		}
		for _, o := range orders[min(1, len(orders)):] {
			if o != orders[0] {
				t.Errorf("%s: %d different orders on the wire, want one:\n%s", dn, len(orders), strings.Join(orders, "\n"))
				break
			}
		}
	}
}
