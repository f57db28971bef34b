package fleet

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/otaport/otaport/fleet/store"
)

// The operations endpoints, on the HTTP listener beside the API. None needs
// an API token: they tell whether the process is up and what it does,
// never a secret (no device secret, no token, no firmware URL).
const (
	HealthPath  = "/healthz"
	ReadyPath   = "/readyz"
	VersionPath = "/version"
	MetricsPath = "/metrics"
)

// metrics are the server's Prometheus figures. The registry is the
// server's own, not the client library's global default, so two servers in
// one process (tests) count apart.
type metrics struct {
	reg         *prometheus.Registry
	bytesServed prometheus.Counter
	apiLatency  *prometheus.HistogramVec
	forwarded   *prometheus.CounterVec
}

func newMetrics(s *Server) *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		bytesServed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "otaserve_firmware_bytes_served_total",
			Help: "Bytes of firmware images sent to devices by the firmware server.",
		}),
		apiLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "otaserve_api_request_duration_seconds",
			Help:    "Time to answer a REST API request, by route pattern and HTTP status code.",
			Buckets: prometheus.DefBuckets,
		}, []string{"route", "code"}),
		forwarded: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "otaserve_api_forwarded_total",
			Help: "API requests a replica sent on to the holder of the campaigns' lease (result forwarded), or could not (no_holder, unreachable, loop: it had been forwarded once already), by route.",
		}, []string{"route", "result"}),
	}
	m.reg.MustRegister(m.bytesServed, m.apiLatency, m.forwarded, fleetCollector{s},
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// countForwarded counts a request for the campaigns' lease holder that
// reached another replica (api.Config.Forwarded).
func (m *metrics) countForwarded(route, result string) {
	m.forwarded.WithLabelValues(route, result).Inc()
}

// countBytes counts what a handler writes to the client as firmware served.
func (m *metrics) countBytes(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		next.ServeHTTP(&countingWriter{ResponseWriter: w, add: m.bytesServed.Add}, r)
	})
}

type countingWriter struct {
	http.ResponseWriter
	add func(float64)
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.ResponseWriter.Write(p)
	c.add(float64(n))
	return n, err
}

// Unwrap lets http.ResponseController reach the connection.
func (c *countingWriter) Unwrap() http.ResponseWriter { return c.ResponseWriter }

// timeAPI observes each API request's duration under the route pattern the
// API's mux matched (a bounded set, unlike the paths, which carry IDs).
func (m *metrics) timeAPI(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w, code: http.StatusOK}
		next.ServeHTTP(sw, r)
		// The API's own mux sets r.Pattern on the request it is given; a
		// request refused before routing (no token) keeps the outer one.
		route := r.Pattern
		if route == "" {
			route = "unmatched"
		}
		m.apiLatency.WithLabelValues(route, strconv.Itoa(sw.code)).Observe(time.Since(start).Seconds())
	})
}

type statusWriter struct {
	http.ResponseWriter
	code  int
	wrote bool
}

func (s *statusWriter) WriteHeader(code int) {
	if !s.wrote {
		s.code, s.wrote = code, true
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusWriter) Write(p []byte) (int, error) {
	s.wrote = true
	return s.ResponseWriter.Write(p)
}

func (s *statusWriter) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// fleetCollector reads the fleet's figures at scrape time from where they
// live (the store, the campaign service, the broker), so that no second
// count can drift from them.
type fleetCollector struct{ s *Server }

var (
	descDevices = prometheus.NewDesc("otaserve_devices",
		"Devices registered, by state (registered, idle, upgrading, failed).", []string{"state"}, nil)
	descOnline = prometheus.NewDesc("otaserve_devices_online",
		"Devices signed in to the embedded MQTT broker now.", nil, nil)
	descOrders = prometheus.NewDesc("otaserve_orders",
		"Devices' parts in every campaign, by state (pending, ordered, running, finished: the device confirmed, failed, canceled).",
		[]string{"state"}, nil)
	descCampaigns = prometheus.NewDesc("otaserve_campaigns",
		"Campaigns by state (running, paused, finished, canceled).", []string{"state"}, nil)
	descCampaignDevices = prometheus.NewDesc("otaserve_campaign_devices",
		"Devices of each running or paused campaign by state.", []string{"campaign", "state"}, nil)
	descMQTTConns = prometheus.NewDesc("otaserve_mqtt_connections",
		"Clients connected to the embedded MQTT broker now, devices and operators.", nil, nil)
	descMQTTIn = prometheus.NewDesc("otaserve_mqtt_messages_received_total",
		"PUBLISH packets the embedded MQTT broker received from clients.", nil, nil)
	descMQTTOut = prometheus.NewDesc("otaserve_mqtt_messages_sent_total",
		"PUBLISH packets the embedded MQTT broker sent to clients.", nil, nil)
	descMQTTDropped = prometheus.NewDesc("otaserve_mqtt_messages_dropped_total",
		"PUBLISH packets the embedded MQTT broker dropped because a client had too many waiting to be written: a client that is not reading.", nil, nil)
	descScrapeErr = prometheus.NewDesc("otaserve_scrape_errors",
		"1 when this scrape could not read part of the fleet (the log says why).", nil, nil)
)

func (c fleetCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descDevices, descOnline, descOrders, descCampaigns, descCampaignDevices,
		descMQTTConns, descMQTTIn, descMQTTOut, descMQTTDropped, descScrapeErr} {
		ch <- d
	}
}

var (
	deviceStates   = []store.DeviceState{store.DeviceRegistered, store.DeviceIdle, store.DeviceUpgrading, store.DeviceFailed}
	progressStates = []store.ProgressState{store.ProgressPending, store.ProgressOrdered, store.ProgressRunning,
		store.ProgressFinished, store.ProgressFailed, store.ProgressCanceled}
	campaignStates = []store.CampaignState{store.CampaignRunning, store.CampaignPaused, store.CampaignFinished, store.CampaignCanceled}
)

func (c fleetCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.s
	failed := 0.0
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	if devs, err := s.store.Devices(); err != nil {
		s.log.Warn("metrics: read devices", "err", err)
		failed = 1
	} else {
		n := map[store.DeviceState]int{}
		for _, d := range devs {
			n[d.State]++
		}
		for _, st := range deviceStates {
			gauge(descDevices, float64(n[st]), string(st))
		}
	}
	if cs, err := s.store.Campaigns(); err != nil {
		s.log.Warn("metrics: read campaigns", "err", err)
		failed = 1
	} else {
		orders := map[store.ProgressState]int{}
		byState := map[store.CampaignState]int{}
		for _, stored := range cs {
			// The service holds the live state of an active campaign.
			st, err := s.campaigns.Status(stored.ID)
			if err != nil {
				s.log.Warn("metrics: read campaign", "campaign", stored.ID, "err", err)
				failed = 1
				continue
			}
			byState[st.Campaign.State]++
			per := map[store.ProgressState]int{}
			for _, p := range st.Devices {
				orders[p.State]++
				per[p.State]++
			}
			if st.Campaign.State == store.CampaignRunning || st.Campaign.State == store.CampaignPaused {
				id := strconv.FormatUint(st.Campaign.ID, 10)
				for _, ps := range progressStates {
					gauge(descCampaignDevices, float64(per[ps]), id, string(ps))
				}
			}
		}
		for _, ps := range progressStates {
			gauge(descOrders, float64(orders[ps]), string(ps))
		}
		for _, cs := range campaignStates {
			gauge(descCampaigns, float64(byState[cs]), string(cs))
		}
	}
	if s.broker != nil {
		gauge(descOnline, float64(len(s.broker.Connected())))
		st := s.broker.Stats()
		gauge(descMQTTConns, float64(st.Connections))
		ch <- prometheus.MustNewConstMetric(descMQTTIn, prometheus.CounterValue, float64(st.MessagesReceived))
		ch <- prometheus.MustNewConstMetric(descMQTTOut, prometheus.CounterValue, float64(st.MessagesSent))
		ch <- prometheus.MustNewConstMetric(descMQTTDropped, prometheus.CounterValue, float64(st.MessagesDropped))
	}
	gauge(descScrapeErr, failed)
}

// handleOps mounts the operations endpoints on mux.
func (s *Server) handleOps(mux *routeMux) {
	mux.HandleFunc("GET "+HealthPath, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET "+ReadyPath, s.serveReady)
	mux.HandleFunc("GET "+VersionPath, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(s.Version())
	})
	mux.Handle("GET "+MetricsPath, promhttp.HandlerFor(s.metrics.reg, promhttp.HandlerOpts{
		ErrorLog: slogPrinter{s}, Registry: s.metrics.reg,
	}))
}

type slogPrinter struct{ s *Server }

func (p slogPrinter) Println(v ...any) { p.s.log.Warn("metrics: " + fmt.Sprint(v...)) }

// Version is what /version answers.
type Version struct {
	Version   string `json:"version"`
	GoVersion string `json:"go_version"`
	// Commit is the VCS revision the binary was built from, when the build
	// recorded it (go build inside a git checkout, without -buildvcs=false).
	Commit   string `json:"commit,omitempty"`
	Modified bool   `json:"modified,omitempty"`
}

// Version reports the server's build: Config.Version when set, else the
// module version the Go toolchain recorded.
func (s *Server) Version() Version {
	v := Version{Version: s.cfg.Version}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return v
	}
	v.GoVersion = bi.GoVersion
	if v.Version == "" {
		v.Version = bi.Main.Version
	}
	if v.Version == "" {
		v.Version = "(devel)" // a test binary records no module version
	}
	for _, kv := range bi.Settings {
		switch kv.Key {
		case "vcs.revision":
			v.Commit = kv.Value
		case "vcs.modified":
			v.Modified = kv.Value == "true"
		}
	}
	return v
}

// Ready checks what the server needs to do its work: the database answers,
// the MQTT side is up (the embedded broker listens; the
// campaign service is connected), and a firmware upload can be written. The
// error names each check that failed.
func (s *Server) Ready(ctx context.Context) error {
	var errs []error
	if s.store == nil {
		return errors.New("store: closed (the server has stopped)")
	}
	if _, _, err := s.store.Setting(TokenSetting); err != nil {
		errs = append(errs, fmt.Errorf("store %s: %w", s.store.Path(), err))
	}
	if s.broker != nil {
		// The listener is asked, not dialled: a probe connection every
		// few seconds would be a client the broker sets up and tears
		// down for nothing, and one in flight at shutdown races the
		// broker library's Close.
		if s.broker.Addr() == nil {
			errs = append(errs, errors.New("embedded MQTT broker: not listening"))
		}
	}
	if !s.serving.Load() {
		errs = append(errs, fmt.Errorf("campaign service: not connected to the MQTT broker %s yet", s.brokerURL))
	}
	if err := checkWritable(s.firmwareDir); err != nil {
		errs = append(errs, fmt.Errorf("firmware directory: %w", err))
	}
	return errors.Join(errs...)
}

// checkWritable creates and removes a file in dir. The name matches the
// firmware store's pattern for uploads in progress, so a file left by a
// crash between the two is removed at the next start.
func checkWritable(dir string) error {
	f, err := os.CreateTemp(dir, ".upload-readyz-*")
	if err != nil {
		return fmt.Errorf("not writable: %w", err)
	}
	name := f.Name()
	f.Close()
	if err := os.Remove(name); err != nil {
		return fmt.Errorf("remove %s: %w", filepath.Base(name), err)
	}
	return nil
}

func (s *Server) serveReady(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	if err := s.Ready(r.Context()); err != nil {
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintf(w, "not ready:\n%s\n", indent(err.Error()))
		return
	}
	fmt.Fprintln(w, "ready")
}

func indent(s string) string { return "  " + strings.ReplaceAll(s, "\n", "\n  ") }
