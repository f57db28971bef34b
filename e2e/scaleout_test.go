package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/otaport/otaport/fleet/natsauth/natstest"
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

// TestScaleOut_NATS: the whole of the scale-out design at once. Two
// otaserve replicas on one PostgreSQL database answer the auth callout of
// a three-node NATS cluster and send orders over its MQTT ports; a few
// hundred real agents (otafleet-sim, each over its own emulated flash) sign
// in through it. Every download is held part way (a proxy in front of the
// firmware server) until every device has taken its order and reported
// progress; then the replica holding the campaigns' lease and the broker
// node every client is on are killed together, and the downloads let go.
// The devices move to another node, the other replica takes the lease and
// their reports, and every device confirms. An operator client on a node
// that survives counts the orders on the wire: one per device.
func TestScaleOut_NATS(t *testing.T) {
	const devices = 200 // within the simulator's 256 shared download connections: all are held at once
	db := pg.DB(t)
	c := natstest.Start(t, natstest.Options{})
	r := newFleetRig(t)
	seed, _ := c.Issuer.Seed()
	if err := os.WriteFile(filepath.Join(r.dir, "issuer.nk"), seed, 0o600); err != nil {
		t.Fatal(err)
	}
	// Every client lists the nodes in the same order, so all start on
	// node 0, the one killed.
	nodes := strings.Join(c.MQTTURLs(), ",")
	broker := strings.Replace(nodes, "tcp://", "tcp://otaserve:operator-pw@", 1)

	bPort := freePort(t)
	proxy := newHoldProxy(t, fmt.Sprintf("https://127.0.0.1:%d", bPort), filepath.Join(r.dir, "data", "ca.pem"), 64<<10)
	held := make(chan struct{})
	go func() { // the proxy signals every held download; count them
		for n := 0; ; n++ {
			if n == devices {
				close(held)
			}
			select {
			case <-proxy.started:
			case <-t.Context().Done():
				return
			}
		}
	}()
	common := []string{"--db", db, "--broker", broker, "--public-url", proxy.URL(),
		"--nats-callout", c.CalloutURL(), "--nats-issuer", "issuer.nk", "--nats-account", natstest.Account}
	a := r.otaserve(freePort(t), freePort(t), append(common, "--replica", "a")...)
	if out, err := exec.Command("cp", "-a", filepath.Join(r.dir, "data"), filepath.Join(r.dir, "data-b")).CombinedOutput(); err != nil {
		t.Fatalf("copy the data directory: %v: %s", err, out)
	}
	os.Remove(filepath.Join(r.dir, "data-b", "url"))
	b := start(t, r.dir, "otaserve-b", nil, "otaserve", append([]string{"run", "--data", "data-b",
		"--http", fmt.Sprintf("127.0.0.1:%d", bPort), "--key", "pub.pem", "--replica", "b"}, common...)...)
	eventually(t, "replica b up", func() (bool, string) {
		return fileExists(filepath.Join(r.dir, "data-b", "url")), ""
	})
	c.WaitCallout(t)
	wire := watchOrders(t, c.MQTT(2))

	run(t, r.dir, "otaserve", "order-key", "--data", "data", "-o", "order.pub")
	token, err := os.ReadFile(filepath.Join(r.dir, "data", "token"))
	if err != nil {
		t.Fatal(err)
	}
	sim := start(t, r.dir, "sim", nil, "otafleet-sim", "--server", fmt.Sprintf("https://127.0.0.1:%d", bPort),
		"--token", strings.TrimSpace(string(token)), "--mqtt", nodes, "--client-id", "{pk}_{dn}", "--ca", "data/ca.pem",
		"--order-key", "order.pub", "--key", "pub.pem", "--board", boards[1], "--product", "fleet",
		"--v1", "app-1.0.0.img", "--campaign=false", "-n", fmt.Sprint(devices), "--timeout", "8m",
		// 16 sign-ins at a time, not 64: the test is about the kills, and
		// each sign-in makes a session and three consumers in JetStream.
		"--parallel", "16")
	// A liveness bound, not a speed: with every package's tests sharing two
	// cores, 200 sign-ins through the callout and JetStream took over 2 min.
	waitFor(t, "every simulated device connected", 5*time.Minute, func() (bool, string) {
		b, _ := os.ReadFile(sim.log)
		return bytes.Contains(b, []byte(fmt.Sprintf("connected %d agents", devices))), tail(string(b), 5)
	})

	out := r.serve("image", "upload", "--board", boards[1], "app-1.1.0.img")
	img := regexp.MustCompile(`^image (\d+):`).FindStringSubmatch(out)
	if img == nil {
		t.Fatalf("image upload said %q", out)
	}
	// a started first and holds the lease: it decides the orders, and the
	// request returns once every one is sent.
	out = r.serve("campaign", "create", "--image", img[1], "--target", "group=fleet", "--waves", "100%", "--success", "100")
	cid := regexp.MustCompile(`^campaign (\d+):`).FindStringSubmatch(out)
	if cid == nil {
		t.Fatalf("campaign create said %q", out)
	}
	status := func(data string) campaignJSON {
		var st campaignJSON
		out := run(t, r.dir, "otaserve", "campaign", "status", "--data", data, "--json", cid[1])
		if err := json.Unmarshal([]byte(out), &st); err != nil {
			t.Fatalf("campaign status --json: %v\n%s", err, out)
		}
		return st
	}
	// Kill once every device has reported progress on its order: a device
	// that reconnects before it did is ordered again by design (it may
	// have lost the order), which the count below would take for a
	// duplicate.
	waitFor(t, "every device held mid-download, its progress stored", 120*time.Second, func() (bool, string) {
		select {
		case <-held:
		default:
			return false, "downloads not all held yet"
		}
		st := status("data")
		n := 0
		for _, d := range st.Devices {
			if d.Progressed {
				n++
			}
		}
		return n == devices, fmt.Sprintf("%d of %d devices progressed", n, devices)
	})
	if n := c.Clients(0); n < devices+2 {
		t.Fatalf("node 0 holds %d clients; every device and both replicas should be on it", n)
	}
	killed := time.Now()
	a.stop(syscall.SIGKILL)
	c.Kill(0)
	proxy.open()

	waitFor(t, "replica b takes the campaigns over", 60*time.Second, func() (bool, string) {
		b, _ := os.ReadFile(b.log)
		return bytes.Contains(b, []byte("campaigns taken over")), tail(string(b), 5)
	})
	takeover := time.Since(killed)
	waitFor(t, "campaign finished on replica b", 150*time.Second, func() (bool, string) {
		st := status("data-b")
		return st.Campaign.State == "finished", fmt.Sprintf("%s %s, waves %+v", st.Campaign.State, st.Campaign.Reason, st.Waves)
	})
	finished := time.Since(killed)
	select {
	case <-sim.done:
	case <-time.After(60 * time.Second):
		t.Fatal("the simulator did not end once the campaign finished")
	}
	if code := sim.cmd.ProcessState.ExitCode(); code != 0 {
		b, _ := os.ReadFile(sim.log)
		t.Fatalf("the simulator ended with %d:\n%s", code, tail(string(b), 20))
	}
	st := status("data-b")
	if st.Campaign.Reason != "every wave succeeded" {
		t.Errorf("campaign ended %s: %s", st.Campaign.State, st.Campaign.Reason)
	}
	if len(st.Devices) != devices {
		t.Errorf("campaign holds %d devices, want %d", len(st.Devices), devices)
	}
	for _, d := range st.Devices {
		if d.State != "finished" || d.Orders != 1 {
			t.Errorf("%s: %s (%s) after %d orders stored, want finished after 1", d.Device, d.State, d.Reason, d.Orders)
		}
	}
	// The wire: QoS 1 to a node that lived through it, so every order
	// published reached the counter.
	counts := wire.counts()
	total := 0
	for i := range devices {
		topic := fmt.Sprintf("/ota/device/upgrade/fleet/sim-%06d", i)
		if counts[topic] != 1 {
			t.Errorf("%s: %d orders on the wire, want 1", topic, counts[topic])
		}
		total += counts[topic]
	}
	t.Logf("%d devices confirmed; replica b took over %v after the kills, the campaign finished %v after them; %d orders on the wire",
		devices, takeover.Round(100*time.Millisecond), finished.Round(100*time.Millisecond), total)
}

// campaignJSON is what the test reads of `otaserve campaign status --json`.
type campaignJSON struct {
	Campaign struct {
		State  string `json:"state"`
		Reason string `json:"reason"`
	} `json:"campaign"`
	Waves   []json.RawMessage `json:"waves"`
	Devices []struct {
		Device     string `json:"device"`
		State      string `json:"state"`
		Progressed bool   `json:"progressed"`
		Orders     int    `json:"orders"`
		Reason     string `json:"reason"`
	} `json:"devices"`
}

// orderCounter counts the messages on every order topic, as an operator
// client subscribed through the broker receives them.
type orderCounter struct {
	mu sync.Mutex
	n  map[string]int
}

func (o *orderCounter) counts() map[string]int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return maps.Clone(o.n)
}

// watchOrders subscribes an operator client on node url to every order
// topic and counts what it receives.
func watchOrders(t *testing.T, url string) *orderCounter {
	o := &orderCounter{n: map[string]int{}}
	cl := paho.NewClient(paho.NewClientOptions().AddBroker(url).SetClientID("order-counter").
		SetUsername("otaserve").SetPassword("operator-pw").SetCleanSession(true).SetAutoReconnect(false))
	tok := cl.Connect()
	if !tok.WaitTimeout(30*time.Second) || tok.Error() != nil {
		t.Fatalf("order counter: connect to %s: %v", url, tok.Error())
	}
	t.Cleanup(func() { cl.Disconnect(100) })
	tok = cl.Subscribe("/ota/device/upgrade/#", 1, func(_ paho.Client, m paho.Message) {
		o.mu.Lock()
		o.n[m.Topic()]++
		o.mu.Unlock()
	})
	if !tok.WaitTimeout(30*time.Second) || tok.Error() != nil {
		t.Fatalf("order counter: subscribe: %v", tok.Error())
	}
	return o
}

// waitFor polls cond every 200 ms until it holds or limit passes.
func waitFor(t *testing.T, what string, limit time.Duration, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(limit)
	var last string
	for time.Now().Before(deadline) {
		var ok bool
		if ok, last = cond(); ok {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("%s: not reached in %v; last seen:\n%s", what, limit, last)
}
