package fleet

import (
	"bufio"
	"context"
	"crypto"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/jackc/pgx/v5"

	"github.com/otaport/otaport/core/image"
	"github.com/otaport/otaport/fleet/api"
	"github.com/otaport/otaport/fleet/store"
	"github.com/otaport/otaport/internal/loopbacktest"
)

// replicaEnv, set, makes the test binary an otaserve replica (runReplica):
// the test kills it as a process, which an in-process server cannot be.
const replicaEnv = "FLEET_TEST_REPLICA"

// runReplica serves as one replica: FLEET_TEST_REPLICA is its id, the
// other settings come from the environment; it prints its HTTP address and
// runs until killed.
func runReplica() int {
	pub, err := image.ReadPublicKey(os.Getenv("FLEET_TEST_KEY"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	var log *slog.Logger
	if os.Getenv("FLEET_TEST_LOG") != "" {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	srv, err := New(Config{DataDir: os.Getenv("FLEET_TEST_DATA"), DB: os.Getenv("FLEET_TEST_DB"), BrokerURL: os.Getenv("FLEET_TEST_BROKER"),
		ReplicaID: os.Getenv(replicaEnv), HTTPAddr: "127.0.0.1:0", Keys: []crypto.PublicKey{pub}, Logger: log,
		AutoTLS: os.Getenv("FLEET_TEST_TLS") != "",
		Boards:  map[string]api.Board{"board-a": {MaxImageSize: 1 << 20, Signature: image.KeyEd25519}}})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Printf("http=%s\n", srv.Addrs().HTTP)
	if err := srv.Run(context.Background()); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// replicaSetup makes the data directory and image key replicas of db and
// broker share, and the environment that starts one (startReplica).
func replicaSetup(t *testing.T, db, broker string) (dir string, key crypto.Signer, env []string) {
	t.Helper()
	dir = t.TempDir()
	key, err := image.GenerateKey(image.KeyEd25519)
	if err != nil {
		t.Fatal(err)
	}
	pem, _ := image.MarshalPublicKeyPEM(key.Public())
	keyFile := filepath.Join(t.TempDir(), "key.pem")
	if err := os.WriteFile(keyFile, pem, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir, key, []string{"FLEET_TEST_DATA=" + dir, "FLEET_TEST_DB=" + db, "FLEET_TEST_BROKER=" + broker, "FLEET_TEST_KEY=" + keyFile}
}

// replicaProc is a replica running as a child process.
type replicaProc struct {
	running
	cmd *exec.Cmd
}

func startReplica(t *testing.T, id string, env []string) *replicaProc {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(append(os.Environ(), replicaEnv+"="+id), env...)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	line, err := bufio.NewReader(out).ReadString('\n')
	addr, ok := strings.CutPrefix(strings.TrimSpace(line), "http=")
	if err != nil || !ok {
		t.Fatalf("replica %s did not start: %q %v", id, line, err)
	}
	scheme := "http"
	if slices.Contains(env, "FLEET_TEST_TLS=1") {
		scheme = "https"
	}
	return &replicaProc{running: running{base: scheme + "://" + addr + api.Prefix}, cmd: cmd}
}

// startMosquitto runs Mosquitto on a free loopback port, open to any
// client: the sign-in is not what this test is about.
func startMosquitto(t *testing.T) string {
	t.Helper()
	mosq, err := exec.LookPath("mosquitto")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("mosquitto is not on PATH: .ci/run installs it")
		}
		t.Skip("mosquitto is not on PATH (install the mosquitto package): skipping")
	}
	port, err := loopbacktest.Port()
	if err != nil {
		t.Fatal(err)
	}
	me, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(t.TempDir(), "mosquitto.conf")
	os.WriteFile(conf, []byte(fmt.Sprintf("user %s\nlistener %d 127.0.0.1\nallow_anonymous true\npersistence false\nmax_queued_messages 100000\n", me.Username, port)), 0o644)
	cmd := exec.Command(mosq, "-c", conf)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	waitFor(t, "mosquitto to listen", func() bool {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	return "tcp://" + addr
}

// wire counts the orders published to each device, as an operator client
// subscribed to every device's order topic sees them.
type wire struct {
	mu     sync.Mutex
	orders map[string][]string // topic -> payloads, in arrival order
}

func watchOrders(t *testing.T, broker string) *wire {
	t.Helper()
	w := &wire{orders: map[string][]string{}}
	opts := mqtt.NewClientOptions().AddBroker(broker).SetClientID("order-watcher").SetCleanSession(true)
	c := mqtt.NewClient(opts)
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("watcher: %v", tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(100) })
	tok := c.Subscribe("/ota/device/upgrade/+/+", 1, func(_ mqtt.Client, m mqtt.Message) {
		w.mu.Lock()
		w.orders[m.Topic()] = append(w.orders[m.Topic()], string(m.Payload()))
		w.mu.Unlock()
	})
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("watcher subscribe: %v", tok.Error())
	}
	return w
}

// holder reads who holds the campaigns' lease, "" when nobody does.
func holder(t *testing.T, db string) string {
	t.Helper()
	var h string
	queryRow(t, db, `SELECT coalesce(max(holder), '') FROM leases WHERE name = 'campaigns' AND expires > now()`, &h)
	return h
}

func count(t *testing.T, db, query string) int {
	t.Helper()
	var n int
	queryRow(t, db, query, &n)
	return n
}

// queryRow reads one row of the test's database, as an operator would.
func queryRow(t *testing.T, db, query string, dest ...any) {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), db)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	if err := conn.QueryRow(context.Background(), query).Scan(dest...); err != nil {
		t.Fatal(err)
	}
}

// TestReplicas_TakeOverMidCampaign: two otaserve replicas on one PostgreSQL
// database and one external broker (Mosquitto). The replica that holds the
// campaigns' lease is killed (SIGKILL) while the first wave's devices are
// installing; their confirmations arrive while nobody holds the lease. The
// other replica takes over, consumes the stored reports, starts the second
// wave, and every device confirms, each having received exactly one order
// on the wire. Before the new holder checked which inherited unmarked orders
// had been answered, 3 runs in 5 published the first wave's orders twice.
func TestReplicas_TakeOverMidCampaign(t *testing.T) {
	const devices = 30
	db := pg.DB(t)
	broker := startMosquitto(t)
	dir, key, env := replicaSetup(t, db, broker)

	// The second starts once the first has made the data directory's
	// keys, which the replicas share.
	reps := map[string]*replicaProc{"a": startReplica(t, "a", env)}
	reps["b"] = startReplica(t, "b", env)
	token, err := os.ReadFile(filepath.Join(dir, "token"))
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range reps {
		r.token = strings.TrimSpace(string(token))
	}
	waitFor(t, "a replica to take the campaigns' lease", func() bool { return holder(t, db) != "" })
	first := holder(t, db)
	other := map[string]string{"a": "b", "b": "a"}[first]
	owner, standby := reps[first], reps[other]

	orders := watchOrders(t, broker)
	modes := make([]string, devices)
	for i := range modes {
		modes[i] = "ok"
	}
	hold := make(chan struct{})
	standby.brokers = broker
	devs := connectDevices(t, &standby.running, modes, hold)
	waitFor(t, "every device's version in the registry", func() bool {
		var list []api.Device
		standby.call(t, http.MethodGet, "/devices", nil, "", &list)
		n := 0
		for _, d := range list {
			if d.Version == "1.0.0+0" {
				n++
			}
		}
		return n == devices
	})

	var img api.Image
	if st := standby.call(t, http.MethodPost, "/images?board=board-a&version=2.0.0", signedImage(t, key, "2.0.0"), "application/octet-stream", &img); st != 201 {
		t.Fatalf("upload: %d", st)
	}
	req := api.CreateCampaign{ImageID: img.ID, Target: api.Target{Group: "lab"}, Waves: "10%,100%", SuccessPercent: 100, ErrorPercent: 50}
	// Sent to the replica without the lease, as a load balancer may: it
	// forwards the request to the holder, which creates and runs it.
	var c api.Campaign
	if st := standby.post(t, "/campaigns", req, &c); st != http.StatusCreated {
		t.Fatalf("create campaign on the replica without the lease: %d, want 201 (forwarded to the holder)", st)
	}
	status := func() api.Status {
		var st api.Status
		standby.call(t, http.MethodGet, fmt.Sprintf("/campaigns/%d", c.ID), nil, "", &st)
		return st
	}
	waitFor(t, "the first wave's devices to report progress", func() bool {
		st := status()
		return len(st.Waves) == 2 && st.Waves[0].Running == 3 && allRunning(st, 3)
	})

	// The holder dies with no chance to give up its lease.
	killed := time.Now()
	if err := owner.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = owner.cmd.Wait()
	close(hold) // the first wave confirms while nobody runs the campaign
	waitFor(t, "the other replica to take the lease", func() bool { return holder(t, db) == other })
	t.Logf("replica %s took over %v after %s was killed", other, time.Since(killed).Round(100*time.Millisecond), first)

	deadline := time.Now().Add(time.Minute)
	for status().Campaign.State == string(store.CampaignRunning) && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	st := status()
	if st.Campaign.State != string(store.CampaignFinished) {
		t.Fatalf("campaign %s (%s), want finished: %+v", st.Campaign.State, st.Campaign.Reason, st.Waves)
	}
	for _, p := range st.Devices {
		if p.State != string(store.ProgressFinished) {
			t.Errorf("%s: %s (%s), want finished", p.Device, p.State, p.Reason)
		}
	}
	for i, d := range devs {
		if len(d.errs) > 0 {
			t.Errorf("device %d: %v", i, d.errs)
		}
	}
	orders.mu.Lock()
	defer orders.mu.Unlock()
	if len(orders.orders) != devices {
		t.Errorf("orders reached %d devices, want %d", len(orders.orders), devices)
	}
	// Each device's order was decided once, and published once: the
	// killed holder may not have marked the first wave's orders sent, but
	// those devices had reported on them, so its successor does not
	// publish them again (Replica.settleInherited).
	total := 0
	for topic, payloads := range orders.orders {
		total += len(payloads)
		if len(payloads) != 1 {
			t.Errorf("%s: %d orders on the wire, want one:\n%s", topic, len(payloads), strings.Join(payloads, "\n"))
		}
	}
	t.Logf("%d orders on the wire for %d devices", total, devices)
	if n := count(t, db, `SELECT count(*) FROM outbox`); n != devices {
		t.Errorf("%d orders in the outbox, want one per device (%d)", n, devices)
	}
	if n := count(t, db, `SELECT count(*) FROM inbox`); n != 0 {
		t.Errorf("%d device reports left in the inbox", n)
	}
	if n := count(t, db, `SELECT count(*) FROM outbox WHERE sent IS NULL`); n != 0 {
		t.Errorf("%d orders never marked sent", n)
	}
}

// allRunning reports whether n devices have reported progress.
func allRunning(st api.Status, n int) bool {
	running := 0
	for _, p := range st.Devices {
		if p.State == string(store.ProgressRunning) {
			running++
		}
	}
	return running == n
}
