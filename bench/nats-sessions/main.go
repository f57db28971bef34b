// Command nats-sessions is the spike of the scale-out issue's item 0: can one
// broker node hold 20,000 devices' persistent MQTT sessions with a QoS 1
// subscription each, deliver one queued message to each exactly once, and
// keep sessions and queued messages across a restart? It runs the same
// steps against the NATS server (MQTT state in JetStream, one consumer per
// session) and against Mosquitto, the baseline. docs/scaling.md has the
// design and the figures.
//
// Devices do not stay connected: a session outlives its connection, and
// the machine allows 20,000 open files per process, so devices connect in
// bounded parallel batches, subscribe and leave.
//
//	nats-sessions run -broker nats -devices 20000
//	nats-sessions run -broker mosquitto -devices 20000
//	nats-sessions core -devices 20000    (core NATS subjects, no MQTT sessions)
//	nats-sessions serve -dir D    (the NATS process the run starts)
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: nats-sessions run|core|serve [flags]")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "serve":
		fs := flag.NewFlagSet("serve", flag.ExitOnError)
		dir := fs.String("dir", "", "JetStream store directory")
		natsPort := fs.Int("nats-port", 14222, "NATS client port")
		mqttPort := fs.Int("mqtt-port", 11883, "MQTT port")
		maxConsumers := fs.Int("max-consumers", -1, "JetStream default_max_consumers (0: the server's default, -1: unlimited)")
		profPort := fs.Int("prof-port", 0, "pprof HTTP port (0: off)")
		_ = fs.Parse(os.Args[2:])
		err = serve(*dir, *natsPort, *mqttPort, *maxConsumers, *profPort)
	case "run", "core":
		fs := flag.NewFlagSet(os.Args[1], flag.ExitOnError)
		var c config
		fs.StringVar(&c.kind, "broker", "nats", "broker to measure: nats or mosquitto")
		fs.StringVar(&c.dir, "dir", "", "work directory (default: a new temporary one, removed at the end)")
		fs.IntVar(&c.devices, "devices", 20000, "persistent sessions to create")
		fs.IntVar(&c.batch, "batch", 1000, "devices per measured batch")
		fs.IntVar(&c.conc, "conc", 100, "connections open at once")
		fs.IntVar(&c.sample, "sample", 10, "every n-th device also takes its first message before the restart")
		fs.IntVar(&c.mqttPort, "mqtt-port", 11883, "MQTT port of the broker")
		fs.IntVar(&c.natsPort, "nats-port", 14222, "NATS client port (nats only)")
		fs.IntVar(&c.maxConsumers, "max-consumers", -1, "JetStream default_max_consumers (nats only; 0: the server's default of 1,000, -1: unlimited)")
		fs.IntVar(&c.profPort, "prof-port", 0, "pprof HTTP port of the NATS server (nats only; 0: off)")
		fs.DurationVar(&c.linger, "linger", 300*time.Millisecond, "how long a reconnected device waits for a second delivery")
		_ = fs.Parse(os.Args[2:])
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
		defer stop()
		if os.Args[1] == "core" {
			err = runCore(ctx, c)
		} else {
			err = run(ctx, c)
		}
	default:
		err = fmt.Errorf("unknown command %q: want run, core or serve", os.Args[1])
	}
	if err != nil {
		slog.Error("nats-sessions", "err", err)
		os.Exit(1)
	}
}

// config is one run's parameters.
type config struct {
	kind               string
	dir                string
	devices, batch     int
	conc, sample       int
	mqttPort, natsPort int
	maxConsumers       int
	profPort           int
	linger             time.Duration
}

// newBroker makes the broker of c on its work directory, a temporary one
// that cleanup removes when c names none.
func newBroker(c config) (b *broker, cleanup func(), err error) {
	cleanup = func() {}
	if c.dir == "" {
		tmp, err := os.MkdirTemp("", "nats-sessions-")
		if err != nil {
			return nil, nil, fmt.Errorf("make work directory: %w", err)
		}
		cleanup = func() { os.RemoveAll(tmp) }
		c.dir = tmp
	}
	b = &broker{kind: c.kind, dir: filepath.Join(c.dir, "store"), mqttPort: c.mqttPort, natsPort: c.natsPort, maxConsumers: c.maxConsumers, profPort: c.profPort}
	if err := os.MkdirAll(b.dir, 0o755); err != nil {
		cleanup()
		return nil, nil, fmt.Errorf("make store directory: %w", err)
	}
	return b, cleanup, nil
}

func run(ctx context.Context, c config) (err error) {
	if c.devices < 1 || c.batch < 1 || c.conc < 1 || c.sample < 1 {
		return fmt.Errorf("-devices %d, -batch %d, -conc %d, -sample %d: each must be at least 1", c.devices, c.batch, c.conc, c.sample)
	}
	b, cleanup, err := newBroker(c)
	if err != nil {
		return err
	}
	defer cleanup()
	addr := fmt.Sprintf("127.0.0.1:%d", c.mqttPort)
	if err := b.start(ctx); err != nil {
		return err
	}
	defer func() {
		if serr := b.stop(); serr != nil && err == nil {
			err = serr
		}
	}()
	took, err := ready(ctx, addr, b.exited)
	if err != nil {
		return err
	}
	fmt.Printf("broker %s, %d devices, batches of %d, %d connections at once; ready in %v\n", c.kind, c.devices, c.batch, c.conc, took.Round(time.Millisecond))
	report := func(what string) {
		u, err := b.usage()
		if err != nil {
			fmt.Printf("%s: %v\n", what, err)
			return
		}
		fmt.Printf("%-28s rss %7.1f MiB  fds %5d  threads %4d  store %7.1f MiB in %6d files\n", what, float64(u.rssKiB)/1024, u.fds, u.threads, float64(u.diskByte)/(1<<20), u.files)
	}
	report("idle")
	if err := probeClientIDs(ctx, addr); err != nil {
		return err
	}

	// 1. Sessions, in batches, measured after each.
	ds := devices(c.devices)
	failed := 0
	for lo := 0; lo < len(ds); lo += c.batch {
		hi := min(lo+c.batch, len(ds))
		r := parallel(ctx, ds[lo:hi], c.conc, func(ctx context.Context, d device) error { return subscribe(ctx, addr, d) })
		failed += r.failed
		report(fmt.Sprintf("sessions %5d (+%v)", hi, r.took.Round(time.Millisecond)))
		if r.failed > 0 {
			fmt.Printf("  batch %d-%d: %d failed, first: %v\n", lo, hi, r.failed, r.firstErr)
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
	fmt.Printf("sessions created: %d, failed: %d\n", len(ds)-failed, failed)

	// 2. One message to every offline device; the sample takes it now.
	start := time.Now()
	// unacked[d.id] names the messages the broker never acknowledged to
	// the publisher: the device cannot expect those.
	unacked := map[string]map[string]bool{}
	note := func(tag string, ds []device) {
		for _, d := range ds {
			if unacked[d.id] == nil {
				unacked[d.id] = map[string]bool{}
			}
			unacked[d.id][payload(tag, d)] = true
		}
	}
	want := func(d device) []string {
		var w []string
		for _, tag := range []string{"m1", "m2"} {
			if p := payload(tag, d); !unacked[d.id][p] {
				w = append(w, p)
			}
		}
		return w
	}
	sent, lost, err := publishAll(ctx, addr, ds, "m1", 256, 5)
	note("m1", lost)
	if err != nil {
		fmt.Printf("  %v\n", err)
	}
	report(fmt.Sprintf("published m1, %d sent (%v)", sent, time.Since(start).Round(time.Millisecond)))
	var sample []device
	for i := 0; i < len(ds); i += c.sample {
		if !unacked[ds[i].id][payload("m1", ds[i])] {
			sample = append(sample, ds[i])
		}
	}
	var l ledger
	r := parallel(ctx, sample, c.conc, func(ctx context.Context, d device) error {
		return receive(ctx, addr, d, &l, 1, 30*time.Second, c.linger)
	})
	t := l.tally(sample, func(d device) []string { return []string{payload("m1", d)} })
	fmt.Printf("sample of %d reconnected in %v: %d failed to connect; m1 delivered %d, lost %d, repeated %d, unexpected %d\n",
		len(sample), r.took.Round(time.Millisecond), r.failed, t.delivered, t.lost, t.repeats, t.unexpected)
	if r.failed > 0 {
		fmt.Printf("  first: %v\n", r.firstErr)
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	report("after sample")

	// 3. A second message to everyone, then a planned restart.
	start = time.Now()
	sent, lost, err = publishAll(ctx, addr, ds, "m2", 256, 5)
	note("m2", lost)
	if err != nil {
		fmt.Printf("  %v\n", err)
	}
	report(fmt.Sprintf("published m2, %d sent (%v)", sent, time.Since(start).Round(time.Millisecond)))
	if ctx.Err() != nil {
		return ctx.Err()
	}
	start = time.Now()
	if err := b.stop(); err != nil {
		return fmt.Errorf("stop before restart: %w", err)
	}
	stopped := time.Since(start)
	if err := b.start(ctx); err != nil {
		return err
	}
	took, err = ready(ctx, addr, b.exited)
	if err != nil {
		return err
	}
	fmt.Printf("restart: stopped in %v, ready again in %v\n", stopped.Round(time.Millisecond), took.Round(time.Millisecond))
	report("after restart")

	// 4. Everyone reconnects. The ledger spans the whole run, so every
	// device should have each acknowledged message once: the sample took m1
	// before the restart and must not get it again, the others get m1 and
	// m2 now.
	for lo := 0; lo < len(ds); lo += c.batch * 5 {
		hi := min(lo+c.batch*5, len(ds))
		r := parallel(ctx, ds[lo:hi], c.conc, func(ctx context.Context, d device) error {
			return receive(ctx, addr, d, &l, len(want(d)), 30*time.Second, c.linger)
		})
		report(fmt.Sprintf("reconnected %5d (+%v)", hi, r.took.Round(time.Millisecond)))
		if r.failed > 0 {
			fmt.Printf("  batch %d-%d: %d failed, first: %v\n", lo, hi, r.failed, r.firstErr)
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
	t = l.tally(ds, want)
	expected := 0
	for _, d := range ds {
		expected += len(want(d))
	}
	fmt.Printf("after restart, over the whole run (%d acknowledged messages to %d devices): delivered %d, lost %d, repeated %d, unexpected %d\n",
		expected, len(ds), t.delivered, t.lost, t.repeats, t.unexpected)
	warnings(b)
	return nil
}

// warnings prints how many warning and error lines the broker logged.
func warnings(b *broker) {
	text, err := os.ReadFile(filepath.Join(filepath.Dir(b.dir), b.kind+".log"))
	if err != nil {
		fmt.Printf("broker log: %v\n", err)
		return
	}
	var n int
	var first string
	for _, line := range strings.Split(string(text), "\n") {
		if strings.Contains(line, "[WRN]") || strings.Contains(line, "[ERR]") || strings.Contains(strings.ToLower(line), "error") || strings.Contains(strings.ToLower(line), "warning") {
			if n == 0 {
				first = line
			}
			n++
		}
	}
	fmt.Printf("broker log: %d warning or error lines%s\n", n, map[bool]string{true: ", first: " + first, false: ""}[n > 0])
}
