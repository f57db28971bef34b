package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// serve runs one NATS server with MQTT and a JetStream file store until
// SIGINT or SIGTERM. It is its own process (the driver re-executes this
// binary) so that its resident memory and open files are measured apart
// from the clients'.
//
// maxConsumers is JetStream's default_max_consumers: since 2.12 a stream
// holds at most 1,000 consumers unless told otherwise, and MQTT keeps every
// session's QoS 1 subscriptions as consumers of one stream ($MQTT_msgs), so
// the default caps a server at 1,000 persistent sessions. -1 lifts it.
func serve(dir string, natsPort, mqttPort, maxConsumers, profPort int) error {
	opts := &server.Options{
		ServerName: "otaport-spike",
		Host:       "127.0.0.1",
		Port:       natsPort,
		JetStream:  true,
		StoreDir:   dir,
		NoSigs:     true, // this function owns the signals
		MQTT:       server.MQTTOpts{Host: "127.0.0.1", Port: mqttPort},
	}
	opts.JetStreamLimits.DefaultMaxConsumers = maxConsumers
	// The profiling port serves /debug/pprof, for a goroutine dump of a
	// stall without stopping the server.
	opts.ProfPort = profPort
	s, err := server.NewServer(opts)
	if err != nil {
		return fmt.Errorf("new nats server: %w", err)
	}
	s.ConfigureLogger()
	go s.Start()
	if !s.ReadyForConnections(2 * time.Minute) {
		return errors.New("nats server: not ready for connections after 2m")
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	<-sig
	s.Shutdown()
	s.WaitForShutdown()
	return nil
}

// broker is one broker process the driver started and measures.
type broker struct {
	kind     string // "nats" or "mosquitto"
	dir      string // its store: the JetStream directory or Mosquitto's persistence
	mqttPort int
	natsPort int
	// maxConsumers and profPort are passed to serve (nats only).
	maxConsumers, profPort int
	cmd                    *exec.Cmd
	log                    *os.File
	// exited is closed when the process ends, with its result in waitErr.
	exited  chan struct{}
	waitErr error
}

// start launches the broker process on b.dir; the store survives stop.
func (b *broker) start(ctx context.Context) error {
	logf, err := os.OpenFile(filepath.Join(filepath.Dir(b.dir), b.kind+".log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return fmt.Errorf("open broker log: %w", err)
	}
	switch b.kind {
	case "nats":
		self, err := os.Executable()
		if err != nil {
			return fmt.Errorf("find own binary: %w", err)
		}
		b.cmd = exec.Command(self, "serve", "-dir", b.dir, "-nats-port", strconv.Itoa(b.natsPort), "-mqtt-port", strconv.Itoa(b.mqttPort),
			"-max-consumers", strconv.Itoa(b.maxConsumers), "-prof-port", strconv.Itoa(b.profPort))
	case "mosquitto":
		conf := filepath.Join(filepath.Dir(b.dir), "mosquitto.conf")
		// Persistence on, the queue large enough for the spike, and no
		// autosave during the run: Mosquitto writes its database on SIGTERM.
		text := fmt.Sprintf("listener %d 127.0.0.1\nallow_anonymous true\nuser root\npersistence true\npersistence_location %s/\nautosave_interval 0\nmax_queued_messages 1000\nmax_inflight_messages 100\nlog_dest stderr\nlog_type error\nlog_type warning\n", b.mqttPort, b.dir)
		if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
			return fmt.Errorf("write mosquitto config: %w", err)
		}
		b.cmd = exec.Command("mosquitto", "-c", conf)
	default:
		return fmt.Errorf("broker %q: want nats or mosquitto", b.kind)
	}
	b.cmd.Stdout, b.cmd.Stderr = logf, logf
	b.log = logf
	if err := b.cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", b.kind, err)
	}
	exited := make(chan struct{})
	b.exited = exited
	go func(cmd *exec.Cmd) {
		b.waitErr = cmd.Wait()
		close(exited)
	}(b.cmd)
	return nil
}

// stop sends SIGTERM and waits, so that the broker writes its store as it
// would on a planned restart.
func (b *broker) stop() error {
	if b.cmd == nil || b.cmd.Process == nil {
		return nil
	}
	if err := b.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return fmt.Errorf("signal %s: %w", b.kind, err)
	}
	<-b.exited
	err := b.waitErr
	b.log.Close()
	b.cmd = nil
	if err != nil {
		return fmt.Errorf("%s exited: %w", b.kind, err)
	}
	return nil
}

// usage is what the broker process holds at one moment.
type usage struct {
	rssKiB   int64
	fds      int
	threads  int
	diskByte int64 // apparent size of the store's files
	files    int
}

func (b *broker) usage() (usage, error) {
	var u usage
	pid := b.cmd.Process.Pid
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return u, fmt.Errorf("read broker status: %w", err)
	}
	for _, line := range strings.Split(string(status), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		switch f[0] {
		case "VmRSS:":
			u.rssKiB, _ = strconv.ParseInt(f[1], 10, 64)
		case "Threads:":
			u.threads, _ = strconv.Atoi(f[1])
		}
	}
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return u, fmt.Errorf("list broker fds: %w", err)
	}
	u.fds = len(fds)
	err = filepath.WalkDir(b.dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		u.diskByte += info.Size()
		u.files++
		return nil
	})
	if err != nil {
		return u, fmt.Errorf("measure store %s: %w", b.dir, err)
	}
	return u, nil
}
