package fleet

import (
	"context"
	"crypto"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"testing"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/otaport/otaport/core/image"
	"github.com/otaport/otaport/fleet/api"
)

// get fetches a path of the server's HTTP listener without a token.
func (r *running) get(t *testing.T, path string) (int, string) {
	t.Helper()
	resp, err := http.Get("http://" + r.srv.Addrs().HTTP + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// scrape reads /metrics into "name{label=value,...}" -> value, labels in
// name order; a histogram gives name_count{...}.
func (r *running) scrape(t *testing.T) map[string]float64 {
	t.Helper()
	code, body := r.get(t, MetricsPath)
	if code != http.StatusOK {
		t.Fatalf("GET /metrics: %d %s", code, body)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("parse /metrics: %v\n%s", err, body)
	}
	out := map[string]float64{}
	for name, f := range fams {
		for _, m := range f.GetMetric() {
			var ls []string
			for _, l := range m.GetLabel() {
				ls = append(ls, l.GetName()+"="+l.GetValue())
			}
			sort.Strings(ls)
			key := name
			if len(ls) > 0 {
				key += "{" + strings.Join(ls, ",") + "}"
			}
			switch {
			case m.Gauge != nil:
				out[key] = m.GetGauge().GetValue()
			case m.Counter != nil:
				out[key] = m.GetCounter().GetValue()
			case m.Histogram != nil:
				out[strings.Replace(key, name, name+"_count", 1)] = float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	return out
}

// TestServer_MetricsFollowACampaign scrapes /metrics over loopback while
// three devices take a campaign: the devices come online, their orders
// move from running to finished (confirmed), the firmware server counts
// the image once per device, and the API's latency is recorded under its
// route.
func TestServer_MetricsFollowACampaign(t *testing.T) {
	key, _ := image.GenerateKey(image.KeyEd25519)
	r := start(t, t.TempDir(), []crypto.PublicKey{key.Public()})
	// A cleanup, not a defer: it runs after the devices' (registered
	// later), so no device reconnects to a broker shutting down.
	t.Cleanup(func() { r.stop(t) })
	hold := make(chan struct{})
	devs := connectDevices(t, r, []string{"ok", "ok", "ok"}, hold)

	waitFor(t, "three idle devices online", func() bool {
		m := r.scrape(t)
		return m[`otaserve_devices{state=idle}`] == 3 && m["otaserve_devices_online"] == 3
	})
	m := r.scrape(t)
	for k, want := range map[string]float64{
		"otaserve_firmware_bytes_served_total": 0,
		"otaserve_orders{state=finished}":      0,
		"otaserve_campaigns{state=running}":    0,
		"otaserve_scrape_errors":               0,
	} {
		if m[k] != want {
			t.Errorf("before the campaign: %s = %v, want %v", k, m[k], want)
		}
	}
	// Three devices and the service's own operator connection.
	if m["otaserve_mqtt_connections"] < 4 || m["otaserve_mqtt_messages_received_total"] < 3 {
		t.Errorf("MQTT before the campaign: %v connections, %v messages received",
			m["otaserve_mqtt_connections"], m["otaserve_mqtt_messages_received_total"])
	}
	received := m["otaserve_mqtt_messages_received_total"]

	data := signedImage(t, key, "2.0.0")
	var img api.Image
	if st := r.call(t, http.MethodPost, "/images?board=board-a", data, "application/octet-stream", &img); st != 201 {
		t.Fatalf("upload: %d", st)
	}
	var c api.Campaign
	if st := r.post(t, "/campaigns", api.CreateCampaign{ImageID: img.ID, Target: api.Target{Group: "lab"}, Waves: "100%"}, &c); st != 201 {
		t.Fatalf("create campaign: %d", st)
	}
	camp := fmt.Sprintf("campaign=%d", c.ID)
	waitFor(t, "three devices running in the campaign", func() bool {
		m := r.scrape(t)
		return m["otaserve_campaign_devices{"+camp+",state=running}"] == 3 && m["otaserve_orders{state=running}"] == 3
	})
	m = r.scrape(t)
	if got, want := m["otaserve_firmware_bytes_served_total"], float64(3*len(data)); got != want {
		t.Errorf("bytes served with every device downloaded: %v, want %v (3 x %d)", got, want, len(data))
	}
	if m["otaserve_campaigns{state=running}"] != 1 || m[`otaserve_devices{state=upgrading}`] != 3 {
		t.Errorf("during the campaign: %v running campaigns, %v upgrading devices",
			m["otaserve_campaigns{state=running}"], m[`otaserve_devices{state=upgrading}`])
	}

	close(hold)
	waitFor(t, "three orders finished", func() bool {
		return r.scrape(t)["otaserve_orders{state=finished}"] == 3
	})
	m = r.scrape(t)
	for k, want := range map[string]float64{
		"otaserve_orders{state=running}":                                                     0,
		"otaserve_campaigns{state=finished}":                                                 1,
		"otaserve_campaigns{state=running}":                                                  0,
		"otaserve_devices{state=idle}":                                                       3,
		"otaserve_firmware_bytes_served_total":                                               float64(3 * len(data)),
		"otaserve_api_request_duration_seconds_count{code=201,route=POST /api/v1/campaigns}": 1,
		"otaserve_api_request_duration_seconds_count{code=201,route=POST /api/v1/images}":    1,
		"otaserve_api_request_duration_seconds_count{code=201,route=POST /api/v1/devices}":   3,
	} {
		if m[k] != want {
			t.Errorf("after the campaign: %s = %v, want %v", k, m[k], want)
		}
	}
	// A finished campaign leaves the per-campaign figures.
	if _, ok := m["otaserve_campaign_devices{"+camp+",state=finished}"]; ok {
		t.Errorf("a finished campaign still has otaserve_campaign_devices")
	}
	// Progress and the version reports: at least 3 per device.
	if got := m["otaserve_mqtt_messages_received_total"] - received; got < 9 {
		t.Errorf("MQTT messages received during the campaign: %v, want at least 9", got)
	}
	if m["otaserve_mqtt_messages_sent_total"] < 3 {
		t.Errorf("MQTT messages sent: %v, want the 3 orders at least", m["otaserve_mqtt_messages_sent_total"])
	}
	for _, d := range devs {
		if len(d.errs) > 0 {
			t.Errorf("device: %v", d.errs)
		}
	}
}

// TestServer_HealthReadyVersion: /healthz answers while the process is up;
// /readyz answers 503 naming what is wrong (the firmware directory cannot
// be written, the broker does not listen) and 200 once it is fixed;
// /version names the Go version. None needs the token.
func TestServer_HealthReadyVersion(t *testing.T) {
	dir := t.TempDir()
	r := start(t, dir, nil)
	defer r.stop(t)
	if code, body := r.get(t, HealthPath); code != 200 || body != "ok\n" {
		t.Errorf("GET /healthz: %d %q", code, body)
	}
	waitFor(t, "the server to be ready", func() bool {
		code, _ := r.get(t, ReadyPath)
		return code == 200
	})

	fw := filepath.Join(dir, "firmware")
	for _, c := range []struct {
		name         string
		break_, mend func() error // mend nil: the last case, left broken
		want         string
	}{
		{"firmware directory is a file",
			func() error {
				if err := os.Rename(fw, fw+".away"); err != nil {
					return err
				}
				return os.WriteFile(fw, nil, 0o600)
			},
			func() error {
				if err := os.Remove(fw); err != nil {
					return err
				}
				return os.Rename(fw+".away", fw)
			},
			"firmware directory"},
		{"broker closed",
			func() error { return r.srv.broker.Close() },
			nil,
			"embedded MQTT broker"},
	} {
		t.Run(c.name, func(t *testing.T) {
			if err := c.break_(); err != nil {
				t.Fatal(err)
			}
			code, body := r.get(t, ReadyPath)
			if code != http.StatusServiceUnavailable || !strings.Contains(body, c.want) {
				t.Errorf("GET /readyz: %d %q, want 503 naming %q", code, body, c.want)
			}
			if code, _ := r.get(t, HealthPath); code != 200 {
				t.Errorf("GET /healthz: %d while not ready, want 200", code)
			}
			if c.mend == nil {
				return
			}
			if err := c.mend(); err != nil {
				t.Fatal(err)
			}
			if code, body := r.get(t, ReadyPath); code != 200 {
				t.Errorf("GET /readyz after the fix: %d %q", code, body)
			}
		})
	}

	code, body := r.get(t, VersionPath)
	var v Version
	if code != 200 || json.Unmarshal([]byte(body), &v) != nil || v.GoVersion != runtime.Version() || v.Version == "" {
		t.Errorf("GET /version: %d %s; want the Go version %s and a version", code, body, runtime.Version())
	}
}

// TestServer_ReadyNeedsTheCampaignService: a server that is not running
// (New without Run) is not ready, and says the campaign service is not
// connected.
func TestServer_ReadyNeedsTheCampaignService(t *testing.T) {
	srv, err := New(Config{DataDir: t.TempDir(), HTTPAddr: "127.0.0.1:0", MQTTAddr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	if err := srv.Ready(context.Background()); err == nil || !strings.Contains(err.Error(), "campaign service") {
		t.Errorf("Ready before Run: %v, want an error naming the campaign service", err)
	}
}
