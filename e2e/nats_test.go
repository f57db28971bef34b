package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/otaport/otaport/fleet/natsauth/natstest"
)

// TestNATS_CampaignOverCluster runs the flow with the built otaserve and
// otarun on a three-node NATS cluster: otaserve answers the cluster's auth
// callout (--nats-callout) and sends orders over its MQTT ports (--broker
// with every node), the agent lists every node and a client id NATS takes.
// The node both are on is killed in the middle of the download: both move
// to another node, and the campaign finishes.
func TestNATS_CampaignOverCluster(t *testing.T) {
	c := natstest.Start(t, natstest.Options{})
	r := newFleetRig(t)
	seed, _ := c.Issuer.Seed()
	if err := os.WriteFile(filepath.Join(r.dir, "issuer.nk"), seed, 0o600); err != nil {
		t.Fatal(err)
	}
	nodes := strings.Join(c.MQTTURLs(), ",")
	httpPort := freePort(t)
	proxy := newHoldProxy(t, fmt.Sprintf("https://127.0.0.1:%d", httpPort), filepath.Join(r.dir, "data", "ca.pem"), 100<<10)
	r.otaserve(httpPort, freePort(t), "--public-url", proxy.URL(),
		"--broker", strings.Replace(nodes, "tcp://", "tcp://otaserve:operator-pw@", 1),
		"--nats-callout", c.CalloutURL(), "--nats-issuer", "issuer.nk", "--nats-account", natstest.Account)
	c.WaitCallout(t)
	board, dn := boards[1], "dev-a"
	r.provision(board, dn)
	r.serve("device", "add", "--product", "demo", "--name", dn, "--board", board, "--secret", "s-a")
	r.deviceYAML(dn, nodes, "s-a", "client_id: demo_dev-a\n")
	r.agent(board, dn)
	eventually(t, "device reports 1.0.0+0", func() (bool, string) { v := r.versionOf(dn); return v == "1.0.0+0", v })
	if n := c.Clients(0); n < 2 {
		t.Fatalf("node 0 holds %d clients; otaserve and the agent should be on it", n)
	}

	id := r.campaign(board, dn, "1.1.0")
	select {
	case <-proxy.started:
	case <-time.After(60 * time.Second):
		t.Fatal("the download never started")
	}
	c.Kill(0)
	proxy.open()
	eventually(t, "campaign finished", func() (bool, string) {
		s := r.campaignState(id)
		return strings.HasSuffix(s, "finished: every wave succeeded"), s
	})
	eventually(t, "device reports 1.1.0+0", func() (bool, string) { v := r.versionOf(dn); return v == "1.1.0+0", v })
}
