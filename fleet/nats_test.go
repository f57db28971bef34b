package fleet

import (
	"context"
	"crypto"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/otaport/otaport/core/image"
	"github.com/otaport/otaport/fleet/api"
	"github.com/otaport/otaport/fleet/natsauth/natstest"
	"github.com/otaport/otaport/fleet/store"
)

// TestServer_CampaignOverNATSCluster runs a campaign with the devices and
// otaserve on a three-node NATS cluster's MQTT ports, otaserve answering
// its auth callout: the devices sign in with their secrets, the node they
// and otaserve are on is killed before the campaign starts, everyone moves
// to another node, and every device gets its order and confirms.
func TestServer_CampaignOverNATSCluster(t *testing.T) {
	c := natstest.Start(t, natstest.Options{})
	dir := t.TempDir()
	// The file as nk -gen account -pubout writes it: the seed, then the
	// public key.
	seed, _ := c.Issuer.Seed()
	pub, _ := c.Issuer.PublicKey()
	issuerFile := filepath.Join(t.TempDir(), "issuer.nk")
	if err := os.WriteFile(issuerFile, []byte(string(seed)+"\n"+pub+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	urls := c.MQTTURLs()
	brokers := strings.Replace(strings.Join(urls, ","), "tcp://", "tcp://otaserve:op-secret@", 1)
	key, _ := image.GenerateKey(image.KeyEd25519)
	var log *slog.Logger
	if os.Getenv("FLEET_TEST_LOG") != "" {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	srv, err := New(Config{DataDir: dir, Logger: log, HTTPAddr: "127.0.0.1:0", Keys: []crypto.PublicKey{key.Public()},
		BrokerURL: brokers, NATSCallout: c.CalloutURL(), NATSIssuer: issuerFile, NATSAccount: natstest.Account,
		Boards: map[string]api.Board{"board-a": {MaxImageSize: 1 << 20, Signature: image.KeyEd25519}}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{srv: srv, base: "http://" + srv.Addrs().HTTP + api.Prefix, cancel: cancel, done: make(chan error, 1),
		// NATS refuses a '.' in an MQTT client id, which the platform's
		// default "{pk}.{dn}" has: these devices send their own.
		brokers: strings.Join(urls, ","), clientID: func(dn string) string { return "pkA_" + dn }}
	r.token, _ = srv.Token()
	go func() { r.done <- srv.Run(ctx) }()
	defer r.stop(t)

	devs := connectDevices(t, r, []string{"ok", "ok", "ok"}, nil)
	informed := func() bool {
		var list []api.Device
		r.call(t, http.MethodGet, "/devices", nil, "", &list)
		for _, d := range list {
			if d.Version != "1.0.0+0" {
				return false
			}
		}
		return len(list) == len(devs)
	}
	waitFor(t, "every device to report its version over the cluster", informed)
	if n := c.Clients(0); n < len(devs)+1 {
		t.Fatalf("node 0 holds %d clients, want the devices and otaserve there", n)
	}
	c.Kill(0)

	var img api.Image
	if st := r.call(t, http.MethodPost, "/images?board=board-a&version=2.0.0", signedImage(t, key, "2.0.0"), "application/octet-stream", &img); st != 201 {
		t.Fatalf("upload: %d", st)
	}
	var camp api.Campaign
	if st := r.post(t, "/campaigns", api.CreateCampaign{ImageID: img.ID, Target: api.Target{Group: "lab"}, Waves: "1,100%"}, &camp); st != 201 {
		t.Fatalf("create campaign: %d", st)
	}
	var status api.Status
	// A liveness bound: after the crash the nodes left elect leaders for
	// what the dead one led, and a gateway may wait out its js_api_timeout
	// (20 s) for an answer the dead node was to give.
	waitWithin(t, 90*time.Second, "the campaign to end", func() bool {
		r.call(t, http.MethodGet, fmt.Sprintf("/campaigns/%d", camp.ID), nil, "", &status)
		return status.Campaign.State != string(store.CampaignRunning)
	})
	if status.Campaign.State != string(store.CampaignFinished) {
		t.Fatalf("campaign %s (%s), want finished", status.Campaign.State, status.Campaign.Reason)
	}
	for _, p := range status.Devices {
		if p.State != string(store.ProgressFinished) {
			t.Errorf("%s: %s (%s)", p.Device, p.State, p.Reason)
		}
	}
	for i, d := range devs {
		if len(d.errs) > 0 {
			t.Errorf("device %d: %v", i, d.errs)
		}
	}
}
