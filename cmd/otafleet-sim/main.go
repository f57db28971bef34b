// Command otafleet-sim runs N simulated devices in one process against a
// running otaserve, for the fleet benchmark (bench/fleet.sh): each device is
// the real device agent (core/agent) with its own MQTT connection, over the
// board's platform (core/boot) on emulated flash in memory, in place of a
// plugin process and a flash file. It registers the devices, provisions
// them with v1 and connects them, then uploads v2, starts one campaign to
// all of them, and waits until every device has confirmed v2. It prints the
// devices upgraded per second, the time to the last confirm, the
// percentiles of the per-device time from order to confirm, and the memory
// per device. With --campaign=false it waits instead for a campaign
// started elsewhere (a test that kills parts of the fleet mid-campaign,
// or bench/fleet.sh running several simulators against one campaign);
// --mqtt may list the nodes of a clustered broker, and --client-id gives
// the devices a client id such a broker takes. For a fleet spread over
// several simulator processes, --first numbers each one's devices apart,
// --ready says when all of a process's devices are connected, and --times
// writes each device's order and confirm times for the script to combine.
//
//	otafleet-sim --server URL --token T --mqtt HOST:PORT --ca ca.pem --order-key order.pub --key pub.pem --v1 a.img --v2 b.img -n 1000
package main

import (
	"bytes"
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/otaport/otaport/core/agent"
	"github.com/otaport/otaport/core/boot"
	"github.com/otaport/otaport/core/cloud"
	"github.com/otaport/otaport/core/engine"
	"github.com/otaport/otaport/core/event"
	"github.com/otaport/otaport/core/flash"
	"github.com/otaport/otaport/core/image"
	"github.com/otaport/otaport/ports/all"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "otafleet-sim:", err)
		os.Exit(1)
	}
}

type sim struct {
	server, token, mqtt, board, product string
	group                               string // registered in, and the campaign's target
	keyFile, caFile, orderKeyFile       string
	v1, v2                              []byte
	n, first, parallel                  int
	timeout                             time.Duration
	keys                                []crypto.PublicKey
	http                                *http.Client
	caPool                              *x509.CertPool // --ca, parsed once for every device's broker; nil: the system's
	memProfile                          string
	mqttScheme                          string // ssl or tcp, as otaserve serves its API
	clientID                            string // template of the MQTT client id; empty: the platform's
	campaign                            bool   // upload --v2 and start the campaign, or wait for one
	readyFile, timesFile                string // touched once connected; each device's times, once confirmed
}

func run(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("otafleet-sim", flag.ContinueOnError)
	s := &sim{}
	fs.StringVar(&s.server, "server", "", "otaserve URL (its DATA/url)")
	fs.StringVar(&s.token, "token", "", "operator token (its DATA/token)")
	fs.StringVar(&s.mqtt, "mqtt", "", "host:port of otaserve's MQTT broker, or the nodes of a clustered broker separated by commas (host:port or tcp://, ssl:// URLs), tried in order")
	fs.StringVar(&s.clientID, "client-id", "", "MQTT client id of every device, {pk} and {dn} replaced (a NATS server needs one without '.', such as {pk}_{dn}); empty: the platform's {pk}.{dn}")
	fs.BoolVar(&s.campaign, "campaign", true, "upload --v2 and start the campaign; false: wait for one started elsewhere (otaserve campaign create)")
	fs.StringVar(&s.board, "board", "b-l475e-iot01a", "catalog board of every simulated device")
	fs.StringVar(&s.product, "product", "fleet", "product key of the simulated devices")
	fs.StringVar(&s.group, "group", "", "group the devices are registered in, and the campaign targets; empty: the product key")
	fs.StringVar(&s.keyFile, "key", "", "public key PEM the images are signed with")
	fs.StringVar(&s.caFile, "ca", "", "PEM of the CA otaserve's TLS certificates are signed with (its DATA/ca.pem); empty: the system's")
	fs.StringVar(&s.orderKeyFile, "order-key", "", "otaserve's order public key PEM (otaserve order-key): every device takes signed orders only")
	v1 := fs.String("v1", "", "signed image every device is provisioned with")
	v2 := fs.String("v2", "", "signed image the campaign installs")
	fs.IntVar(&s.n, "n", 1000, "number of devices")
	fs.IntVar(&s.first, "first", 0, "number of the first device (sim-NNNNNN): simulators that share one otaserve take apart ranges")
	fs.StringVar(&s.readyFile, "ready", "", "create FILE once every device is connected (a script waits for it before it starts the campaign)")
	fs.StringVar(&s.timesFile, "times", "", "write FILE once every device confirmed: a line per device, its name and the Unix nanoseconds of its order and of its confirm")
	fs.IntVar(&s.parallel, "parallel", 64, "devices registered, provisioned and connected at a time")
	fs.DurationVar(&s.timeout, "timeout", 10*time.Minute, "give up after this long")
	fs.StringVar(&s.memProfile, "memprofile", "", "write heap profiles FILE.connected once every device is connected, FILE.confirmed once every device confirmed, and FILE.peak at the highest live heap and stacks (go tool pprof reads them), each with its goroutines in FILE.*.goroutines")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if s.group == "" {
		s.group = s.product
	}
	if s.n < 1 || s.first < 0 {
		return fmt.Errorf("-n %d --first %d: want at least one device and a first number of 0 or more", s.n, s.first)
	}
	if s.server == "" || s.token == "" || s.mqtt == "" || s.keyFile == "" || s.orderKeyFile == "" || *v1 == "" || (s.campaign && *v2 == "") {
		return errors.New("give --server, --token, --mqtt, --key, --order-key, --v1 and --v2 (bench/fleet.sh does; --v2 may be left out with --campaign=false)")
	}
	if setGCTarget(s.n, os.Getenv) {
		fmt.Fprintf(out, "garbage collector: GOGC=%d, soft memory limit %d MiB (GOGC or GOMEMLIMIT in the environment override both)\n",
			simGOGC, memoryLimit(s.n)>>20)
	}
	var err error
	if s.mqttScheme, err = mqttScheme(s.server); err != nil {
		return err
	}
	if s.v1, err = os.ReadFile(*v1); err != nil {
		return err
	}
	if s.campaign {
		if s.v2, err = os.ReadFile(*v2); err != nil {
			return err
		}
	}
	if s.keys, err = image.ReadPublicKeys([]string{s.keyFile}); err != nil {
		return fmt.Errorf("--key: %w", err)
	}
	// One transport for every device: the downloads share connections to
	// the one firmware server, as devices behind one NAT would not, but
	// the benchmark measures the fleet side, not socket setup. The cap
	// keeps both processes within their open-file limit: every device
	// already holds an MQTT connection on each side, and 10,000 devices
	// downloading at once would otherwise open 10,000 more.
	tlsConf, err := clientTLS(s.caFile)
	if err != nil {
		return err
	}
	if tlsConf != nil {
		s.caPool = tlsConf.RootCAs
	}
	s.http = &http.Client{Transport: &http.Transport{TLSClientConfig: tlsConf, MaxIdleConnsPerHost: maxHTTPConns, MaxConnsPerHost: maxHTTPConns}}
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	return s.run(ctx, out)
}

// The simulator's garbage collector setting (setGCTarget). Its peak
// resident memory is what the benchmark reports per device, and at Go's
// default (GOGC=100) a collection starts only once the heap has doubled
// since the last one: half the peak was garbage waiting, headroom that
// says nothing of a device. GOGC=25 keeps that headroom to a quarter of
// the live heap. The soft memory limit bounds the total further while
// thousands of installs allocate at once: the collector works harder as
// the process nears it. It must stay above what the devices hold live at
// the peak (their heap and goroutine stacks), or the collector would run
// without end and the devices stall behind it (the runtime caps the
// collector at about half the CPU, so a run slows rather than stops). At
// 3,000 devices the live heap and the stacks at the peak came to about
// 84 KiB a device, the process's fixed costs included (--memprofile's
// FILE.peak), under the limit's 110; with the limit the simulator used no
// more CPU than with GOGC=25 alone, at 3,000 and at 10,000 devices: it
// does not thrash. GOGC=25 itself costs CPU: about half as much again as
// the default (docs/benchmarks.md, Fleet).
const (
	simGOGC         = 25
	memoryLimitBase = 64 << 20
	memoryPerDevice = 88 << 10
)

// memoryLimit is the soft memory limit for n devices.
func memoryLimit(n int) int64 { return memoryLimitBase + int64(n)*memoryPerDevice }

// setGCTarget sets GOGC=simGOGC and the soft memory limit for n devices,
// unless the environment (getenv) sets GOGC or GOMEMLIMIT: then the runtime
// has already applied what it says, and the simulator changes neither, so
// a run can be measured at any setting (GOGC=100 for the runtime's
// default). It reports whether it set them.
func setGCTarget(n int, getenv func(string) string) bool {
	if getenv("GOGC") != "" || getenv("GOMEMLIMIT") != "" {
		return false
	}
	debug.SetGCPercent(simGOGC)
	debug.SetMemoryLimit(memoryLimit(n))
	return true
}

// maxHTTPConns is how many connections the simulated devices share to the
// firmware server; bench/fleet.sh counts them in the open files it needs.
const maxHTTPConns = 256

// device is one simulated device and what the benchmark records of it.
type device struct {
	name      string
	port      *boot.Platform
	flash     *flash.Emulator
	ordered   atomic.Int64 // unix nanos of the order event
	confirmed atomic.Int64 // unix nanos of the confirmed event
	informed  atomic.Bool
	// lastErr is the agent's last error event, for the summary of the
	// devices that never got there (a run that times out says why).
	lastErr atomic.Pointer[string]
}

func (s *sim) run(ctx context.Context, out io.Writer) error {
	entry, ok := all.Lookup(s.board)
	if !ok {
		return fmt.Errorf("--board %s: not in the catalog", s.board)
	}
	layout := entry.Layout()
	dir, err := os.MkdirTemp("", "otafleet-sim-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	v1File := filepath.Join(dir, "v1.img")
	if err := os.WriteFile(v1File, s.v1, 0o644); err != nil {
		return err
	}

	// Devices leave the factory with the same flash: one is provisioned
	// with v1 and every device's flash is a copy-on-write clone of it
	// (core/flash's Clone), so the simulator holds v1 once and each
	// device's memory is its own writes and its agent, which is what the
	// benchmark measures.
	factory, err := flash.NewMemory(layout.Flash)
	if err != nil {
		return err
	}
	factoryPort, err := boot.NewPlatform(layout, factory, boot.Options{Keys: s.keys})
	if err != nil {
		return err
	}
	if _, err := agent.Provision(ctx, factoryPort, []string{s.keyFile}, v1File, nil); err != nil {
		return fmt.Errorf("provision: %w", err)
	}

	devs := make([]*device, s.n)
	start := time.Now()
	// Registered as a fleet is, in batches of up to 1,000 (one request
	// and one transaction each), a few at a time.
	const batch = 1000
	err = s.eachOf(ctx, (s.n+batch-1)/batch, 4, func(b int) error {
		var reqs []map[string]string
		for i := b * batch; i < min(s.n, (b+1)*batch); i++ {
			name := fmt.Sprintf("sim-%06d", s.first+i)
			reqs = append(reqs, map[string]string{
				"product_key": s.product, "device_name": name, "device_secret": "secret-" + name, "board": s.board, "group": s.group,
			})
		}
		err := s.api(ctx, "POST", "/devices", "application/json", jsonBody(reqs), nil)
		if err != nil && strings.Contains(err.Error(), "already exists") {
			// A fleet registered by an earlier run: one at a time, to
			// add those missing.
			for _, r := range reqs {
				if err := s.api(ctx, "POST", "/devices", "application/json", jsonBody(r), nil); err != nil && !strings.Contains(err.Error(), "already exists") {
					return err
				}
			}
			err = nil
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("register: %w", err)
	}
	err = s.each(ctx, func(i int) error {
		d := &device{name: fmt.Sprintf("sim-%06d", s.first+i)}
		devs[i] = d
		var err error
		d.flash = factory.Clone()
		d.port, err = boot.NewPlatform(layout, d.flash, boot.Options{Keys: s.keys})
		return err
	})
	if err != nil {
		return fmt.Errorf("provision: %w", err)
	}
	fmt.Fprintf(out, "registered and provisioned %d devices in %v\n", s.n, time.Since(start).Round(time.Millisecond))

	if s.memProfile != "" {
		peakCtx, stopPeak := context.WithCancel(ctx)
		watched := make(chan struct{})
		go func() { defer close(watched); watchPeak(peakCtx, s.memProfile+".peak") }()
		defer func() { stopPeak(); <-watched }()
	}
	pages := flash.NewPagePool()
	runCtx, stopAgents := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() { stopAgents(); wg.Wait() }()
	var runErrs atomic.Int64
	start = time.Now()
	err = s.each(ctx, func(i int) error {
		d := devs[i]
		a, err := agent.New(agent.Options{
			Config: agent.Config{
				Broker:   brokers(s.mqtt, s.mqttScheme),
				ClientID: clientID(s.clientID, s.product, d.name),
				Identity: agent.IdentityConfig{ProductKey: s.product, DeviceName: d.name, DeviceSecret: "secret-" + d.name},
				// The broker's CA is s.caPool, parsed once for all.
				PublicKeys: []string{s.keyFile},
				OrderKey:   s.orderKeyFile,
			},
			Port:        d.port,
			Keys:        s.keys,
			HTTPClient:  s.http,
			CloudConfig: func(c *cloud.Config) { c.RootCAs = s.caPool },
			OnEvent: func(ev agent.Event) {
				switch ev.Kind {
				case event.Inform:
					d.informed.Store(true)
				case event.Order:
					d.ordered.CompareAndSwap(0, time.Now().UnixNano())
				case event.Confirmed:
					d.confirmed.CompareAndSwap(0, time.Now().UnixNano())
					d.flash.SharePages(pages)
				case event.Error:
					msg := ev.Error
					if ev.Message != "" {
						msg += " (" + ev.Message + ")"
					}
					d.lastErr.Store(&msg)
				case event.Reboot:
					// Every device wrote the same image: keep one copy
					// of its pages (flash.PagePool).
					d.flash.SharePages(pages)
				}
			},
			// The image in one chunk: the engine makes a buffer the
			// image's size, no more (a smaller chunk costs as much
			// memory, four buffers, and a progress report each). The
			// benchmark's image is 16 KiB of payload with its header
			// and TLVs, a little over 16 KiB, so 16 KiB chunks took
			// two buffers and two progress reports.
			Engine: engine.Options{ChunkSize: 32 << 10},
		})
		if err != nil {
			return err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := a.Run(runCtx); err != nil {
				runErrs.Add(1)
				fmt.Fprintf(os.Stderr, "%s: %v\n", d.name, err)
			}
		}()
		// At most --parallel sign-ins in flight: a fleet does not all
		// power on in the same millisecond.
		for !d.informed.Load() {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(5 * time.Millisecond):
			}
		}
		return nil
	})
	if err == nil {
		err = waitAll(ctx, devs, func(d *device) bool { return d.informed.Load() })
	}
	if err != nil {
		return fmt.Errorf("connect: %w%s", err, lastErrors(devs, func(d *device) bool { return d.informed.Load() }))
	}
	fmt.Fprintf(out, "connected %d agents in %v\n", s.n, time.Since(start).Round(time.Millisecond))
	if s.readyFile != "" {
		if err := os.WriteFile(s.readyFile, nil, 0o644); err != nil {
			return fmt.Errorf("--ready: %w", err)
		}
	}
	if s.memProfile != "" {
		if err := writeHeapProfile(s.memProfile + ".connected"); err != nil {
			return err
		}
	}

	var t0 time.Time
	created := make(chan error, 1)
	if s.campaign {
		// The campaign request returns once otaserve has stored the
		// campaign and sent every order; devices may finish before that,
		// so the clock starts before the request and the devices are
		// watched meanwhile.
		var img struct {
			ID uint64 `json:"id"`
		}
		if err := s.api(ctx, "POST", "/images?board="+s.board, "application/octet-stream", bytes.NewReader(s.v2), &img); err != nil {
			return fmt.Errorf("upload --v2: %w", err)
		}
		t0 = time.Now()
		go func() {
			created <- s.api(ctx, "POST", "/campaigns", "application/json", jsonBody(map[string]any{
				"image_id": img.ID, "target": map[string]string{"group": s.group}, "waves": "100%", "success_percent": 100, "error_percent": 0,
			}), nil)
		}()
	} else {
		// The campaign is started elsewhere: the clock starts at the
		// first order a device takes.
		created <- nil
		if err := waitAny(ctx, devs, func(d *device) bool { return d.ordered.Load() != 0 }); err != nil {
			return fmt.Errorf("wait for an order: %w", err)
		}
		t0 = time.Unix(0, slices.MinFunc(devs, func(a, b *device) int {
			return cmpOrdered(a.ordered.Load(), b.ordered.Load())
		}).ordered.Load())
	}
	if err := waitAll(ctx, devs, func(d *device) bool { return d.confirmed.Load() != 0 }); err != nil {
		n := 0
		for _, d := range devs {
			if d.confirmed.Load() != 0 {
				n++
			}
		}
		return fmt.Errorf("%d of %d devices confirmed: %w%s", n, s.n, err, lastErrors(devs, func(d *device) bool { return d.confirmed.Load() != 0 }))
	}
	createTime := "still running"
	select {
	case err := <-created:
		if err != nil {
			return fmt.Errorf("campaign: %w", err)
		}
		createTime = "done"
	default:
	}
	if s.memProfile != "" {
		if err := writeHeapProfile(s.memProfile + ".confirmed"); err != nil {
			return err
		}
	}
	if s.timesFile != "" {
		if err := writeTimes(s.timesFile, devs); err != nil {
			return err
		}
	}
	var last time.Time
	per := make([]time.Duration, 0, s.n)
	for _, d := range devs {
		c := time.Unix(0, d.confirmed.Load())
		if c.After(last) {
			last = c
		}
		per = append(per, c.Sub(time.Unix(0, d.ordered.Load())))
	}
	total := last.Sub(t0)
	slices.Sort(per)
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	fmt.Fprintf(out, "%d of %d devices confirmed v2 (the campaign request: %s)\n", s.n, s.n, createTime)
	fmt.Fprintf(out, "time to the last confirm:   %v\n", total.Round(time.Millisecond))
	fmt.Fprintf(out, "devices upgraded per second: %.1f\n", float64(s.n)/total.Seconds())
	fmt.Fprintf(out, "order to confirm, per device: p50 %v  p90 %v  p99 %v  max %v\n",
		pct(per, 50), pct(per, 90), pct(per, 99), per[len(per)-1].Round(time.Millisecond))
	fmt.Fprintf(out, "simulator memory: %.1f MiB from the OS (%.1f KiB per device: heap in use %.1f, stacks %.1f), %d goroutines (%.1f per device); peak RSS in the script's summary\n",
		float64(ms.Sys)/(1<<20), perDevice(ms.Sys, s.n), perDevice(ms.HeapInuse, s.n), perDevice(ms.StackInuse, s.n),
		runtime.NumGoroutine(), float64(runtime.NumGoroutine())/float64(s.n))
	// The peak is read here, not by the script: this process ends right
	// after, and a script polling from outside can miss the last moments.
	if hwm, err := peakRSS(); err == nil {
		var ru syscall.Rusage
		_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
		cpu := time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
		fmt.Fprintf(out, "simulator peak RSS: %d KiB (VmHWM), CPU time %.1f s\n", hwm, cpu.Seconds())
	}
	if runErrs.Load() > 0 {
		return fmt.Errorf("%d agents stopped with an error", runErrs.Load())
	}
	return nil
}

// writeTimes writes each device's name and the Unix nanoseconds of its
// order and its confirm, a line each, for bench/fleet.sh to combine the
// figures of several simulators.
func writeTimes(path string, devs []*device) error {
	var b bytes.Buffer
	for _, d := range devs {
		fmt.Fprintf(&b, "%s %d %d\n", d.name, d.ordered.Load(), d.confirmed.Load())
	}
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		return fmt.Errorf("--times: %w", err)
	}
	return nil
}

// peakRSS is this process's peak resident memory (VmHWM) in KiB.
func peakRSS() (int, error) {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, err
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			var kib int
			_, err := fmt.Sscanf(strings.TrimSpace(v), "%d kB", &kib)
			return kib, err
		}
	}
	return 0, errors.New("no VmHWM in /proc/self/status")
}

// writeHeapProfile writes the live heap after a collection, so the profile
// shows what the connected devices hold rather than what provisioning left.
func writeHeapProfile(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("--memprofile: %w", err)
	}
	runtime.GC()
	if err := pprof.WriteHeapProfile(f); err != nil {
		f.Close()
		return fmt.Errorf("--memprofile %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("--memprofile %s: %w", path, err)
	}
	// The goroutines beside it: each holds a stack of 8 KiB or more, a
	// large share of a connected device's memory.
	return writeGoroutines(path + ".goroutines")
}

// writeGoroutines writes the goroutines' stacks, counted by stack, to path.
func writeGoroutines(path string) error {
	g, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("--memprofile: %w", err)
	}
	if err := pprof.Lookup("goroutine").WriteTo(g, 1); err != nil {
		g.Close()
		return fmt.Errorf("--memprofile %s: %w", path, err)
	}
	return g.Close()
}

// perDevice is bytes per device in KiB.
func perDevice(bytes uint64, n int) float64 { return float64(bytes) / 1024 / float64(n) }

func pct(sorted []time.Duration, p int) time.Duration {
	i := (len(sorted)*p+99)/100 - 1
	return sorted[max(0, min(i, len(sorted)-1))].Round(time.Millisecond)
}

// each runs f for 0..n-1, s.parallel at a time, and returns the first error.
func (s *sim) each(ctx context.Context, f func(i int) error) error {
	return s.eachOf(ctx, s.n, s.parallel, f)
}

// eachOf runs f for 0..n-1, at most parallel at a time, and returns the
// first error.
func (s *sim) eachOf(ctx context.Context, n, parallel int, f func(i int) error) error {
	sem := make(chan struct{}, parallel)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var first error
	for i := 0; i < n; i++ {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			wg.Wait()
			return ctx.Err()
		}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			if err := f(i); err != nil {
				mu.Lock()
				if first == nil {
					first = err
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return first
}

// waitAny polls until ok holds for some device.
func waitAny(ctx context.Context, devs []*device, ok func(*device) bool) error {
	for {
		if slices.ContainsFunc(devs, ok) {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// cmpOrdered orders order times, a device not yet ordered (0) last.
func cmpOrdered(a, b int64) int {
	switch {
	case a == b:
		return 0
	case a == 0:
		return 1
	case b == 0 || a < b:
		return -1
	}
	return 1
}

// brokers is the agent's broker setting for --mqtt: each node given as
// host:port gets scheme, one given as a URL is kept.
func brokers(list, scheme string) string {
	nodes := strings.Split(list, ",")
	for i, n := range nodes {
		n = strings.TrimSpace(n)
		if !strings.Contains(n, "://") {
			n = scheme + "://" + n
		}
		nodes[i] = n
	}
	return strings.Join(nodes, ",")
}

// clientID is --client-id for device dn of product pk.
func clientID(tmpl, pk, dn string) string {
	return strings.NewReplacer("{pk}", pk, "{dn}", dn).Replace(tmpl)
}

// waitAll polls until ok holds for every device.
// lastErrors lists the devices not done that reported an error, with the
// agent's last one (the first few), and counts the rest: what a run that
// gave up waiting for them prints.
func lastErrors(devs []*device, done func(*device) bool) string {
	const most = 10
	var b strings.Builder
	listed, failed, quiet := 0, 0, 0
	for _, d := range devs {
		if done(d) {
			continue
		}
		p := d.lastErr.Load()
		if p == nil {
			quiet++
			continue
		}
		if failed++; listed < most {
			listed++
			fmt.Fprintf(&b, "\n  %s: %s", d.name, *p)
		}
	}
	if failed > listed {
		fmt.Fprintf(&b, "\n  and %d more with an error", failed-listed)
	}
	if quiet > 0 {
		fmt.Fprintf(&b, "\n  %d more without one", quiet)
	}
	return b.String()
}

func waitAll(ctx context.Context, devs []*device, ok func(*device) bool) error {
	for {
		done := true
		for _, d := range devs {
			if !ok(d) {
				done = false
				break
			}
		}
		if done {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// clientTLS trusts the CA in caFile, or the system's when it is empty.
func clientTLS(caFile string) (*tls.Config, error) {
	if caFile == "" {
		return nil, nil
	}
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("--ca: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("--ca %s: no PEM certificate in it", caFile)
	}
	return &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}, nil
}

// mqttScheme is the broker's scheme for a server URL: otaserve's embedded
// broker speaks TLS when its API does (--insecure-plain turns both off).
func mqttScheme(server string) (string, error) {
	switch {
	case strings.HasPrefix(server, "https://"):
		return "ssl", nil
	case strings.HasPrefix(server, "http://"):
		return "tcp", nil
	}
	return "", fmt.Errorf("--server %q: want an http:// or https:// URL", server)
}

func jsonBody(v any) io.Reader {
	b, _ := json.Marshal(v)
	return bytes.NewReader(b)
}

// api calls otaserve's REST API.
func (s *sim) api(ctx context.Context, method, path, ctype string, body io.Reader, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimSuffix(s.server, "/")+"/api/v1"+path, body)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+s.token)
	req.Header.Set("Content-Type", ctype)
	resp, err := s.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, bytes.TrimSpace(b))
	}
	if out != nil {
		return json.Unmarshal(b, out)
	}
	return nil
}
