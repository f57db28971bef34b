package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/spf13/pflag"

	"github.com/otaport/otaport/cmd/internal/cli"
	"github.com/otaport/otaport/core/agent"
	"github.com/otaport/otaport/core/event"
)

// agentFlags are the agent's settings given on the command line; each one
// that is set overrides device.yaml.
type agentFlags struct {
	config         string
	broker         string
	productKey     string
	deviceName     string
	deviceSecret   string
	ca             string
	cert, certKey  string
	keys           []string
	encKey         string
	healthCmd      string
	healthTimeout  time.Duration
	reportInterval time.Duration
	allowDowngrade bool
	orderKey       string
	unsignedOrders bool
}

// register adds the agent's flags to fs: the agent command's and the
// root's, for "otarun --plugin P --config device.yaml".
func (f *agentFlags) register(fs *pflag.FlagSet) {
	fs.StringVar(&f.config, "config", "", "device configuration file (device.yaml); flags override it")
	fs.StringVar(&f.broker, "broker", "", "MQTT broker URL, tcp://host:1883 or ssl://host:8883")
	fs.StringVar(&f.productKey, "product-key", "", "the device's product key")
	fs.StringVar(&f.deviceName, "device-name", "", "the device's name")
	fs.StringVar(&f.deviceSecret, "device-secret", "", "the device's secret (prefer identity.device_secret_file in device.yaml)")
	fs.StringVar(&f.ca, "ca", "", "PEM file of the CAs of the broker and the firmware server")
	fs.StringVar(&f.cert, "cert", "", "the device's client certificate, PEM, to sign in by certificate over TLS (otaserve device cert)")
	fs.StringVar(&f.certKey, "cert-key", "", "the private key of --cert, PEM")
	fs.StringArrayVar(&f.keys, "key", nil, "PEM `file` of a public key that signs images (repeatable; replaces public_keys)")
	fs.StringVar(&f.encKey, "enc-key", "", "the device's private key `file` for encrypted images (replaces enc_key)")
	fs.StringVar(&f.healthCmd, "health-cmd", "", "health check, run with sh -c after booting a trial image")
	fs.DurationVar(&f.healthTimeout, "health-timeout", 0, "health check timeout (default 10s)")
	fs.DurationVar(&f.reportInterval, "report-interval", 0, "longest time between two progress reports (default 5s)")
	fs.BoolVar(&f.allowDowngrade, "allow-downgrade", false, "accept orders for older versions")
	fs.StringVar(&f.orderKey, "order-key", "", "PEM `file` of otaserve's order-signing public key (otaserve order-key)")
	fs.BoolVar(&f.unsignedOrders, "unsigned-orders", false, "take orders without otaserve's signature (the Alibaba Cloud platform's; see docs/security.md)")
}

func agentCommand() command {
	f := &agentFlags{}
	return command{
		name:  "agent",
		short: "run the device agent: take upgrade orders from the cloud (the default command)",
		flags: f.register,
		run: func(ctx context.Context, e *env, args []string) error {
			if len(args) > 0 {
				return cli.Usagef("unexpected argument %q", args[0])
			}
			return runAgent(ctx, e, f)
		},
	}
}

// agentConfig merges device.yaml and the flags.
func agentConfig(f *agentFlags) (agent.Config, error) {
	var cfg agent.Config
	if f.config != "" {
		var err error
		if cfg, err = agent.LoadConfig(f.config); err != nil {
			return cfg, err
		}
	}
	set := func(dst *string, v string) {
		if v != "" {
			*dst = v
		}
	}
	set(&cfg.Broker, f.broker)
	set(&cfg.Identity.ProductKey, f.productKey)
	set(&cfg.Identity.DeviceName, f.deviceName)
	if f.deviceSecret != "" {
		cfg.Identity.DeviceSecret, cfg.Identity.DeviceSecretFile = f.deviceSecret, ""
	}
	set(&cfg.CA, f.ca)
	set(&cfg.Identity.Cert, f.cert)
	set(&cfg.Identity.Key, f.certKey)
	if len(f.keys) > 0 {
		cfg.PublicKeys = append([]string(nil), f.keys...)
	}
	set(&cfg.EncKey, f.encKey)
	if f.healthCmd != "" {
		cfg.HealthCheck.Command = []string{"sh", "-c", f.healthCmd}
	}
	if f.healthTimeout != 0 {
		cfg.HealthCheck.Timeout = agent.Duration(f.healthTimeout)
	}
	if f.reportInterval != 0 {
		cfg.ReportInterval = agent.Duration(f.reportInterval)
	}
	if f.allowDowngrade {
		cfg.AllowDowngrade = true
	}
	set(&cfg.OrderKey, f.orderKey)
	if f.unsignedOrders {
		off := false
		cfg.SignedOrders = &off
	}
	if err := cfg.Validate(); err != nil {
		return cfg, cli.Usage(err)
	}
	return cfg, nil
}

// bootKeyEnv is the environment the agent and provision give the port
// plugin besides its flash: the image keys as the simulated bootloader's
// keys unless OTAPORT_BOOT_KEY says otherwise, and the device's decryption
// key as the one an MCUboot board's bootloader is built with unless
// OTAPORT_BOOT_ENC_KEY says otherwise.
func bootKeyEnv(keys []string, encKey string) ([]string, error) {
	var env []string
	if os.Getenv("OTAPORT_BOOT_ENC_KEY") == "" && encKey != "" {
		a, err := filepath.Abs(encKey)
		if err != nil {
			return nil, err
		}
		env = append(env, "OTAPORT_BOOT_ENC_KEY="+a)
	}
	if os.Getenv("OTAPORT_BOOT_KEY") == "" && len(keys) > 0 {
		var abs []string
		for _, k := range keys {
			a, err := filepath.Abs(k)
			if err != nil {
				return nil, err
			}
			abs = append(abs, a)
		}
		env = append(env, "OTAPORT_BOOT_KEY="+strings.Join(abs, ","))
	}
	return env, nil
}

// runAgent runs the device agent until ctx ends.
func runAgent(ctx context.Context, e *env, f *agentFlags) error {
	cfg, err := agentConfig(f)
	if err != nil {
		return err
	}
	if len(cfg.Modules) > 0 {
		return runModules(ctx, e, cfg)
	}
	file, err := e.flashFile("agent", false)
	if err != nil {
		return err
	}
	extra, err := bootKeyEnv(cfg.PublicKeys, cfg.EncKey)
	if err != nil {
		return err
	}
	port, err := openPlugin(ctx, e, file, extra...)
	if err != nil {
		return err
	}
	defer port.Close()
	view := newAgentView(e.stdout, e.opts.json, agentIsTerminal(e.stdout))
	defer view.close()
	a, err := agent.New(agent.Options{
		Config:  cfg,
		Port:    port,
		OnEvent: view.event,
		Logger:  e.log,
	})
	if err != nil {
		return err
	}
	return a.Run(ctx)
}

// runModules runs the agent of a device of several modules: a port plugin
// per module, each on its own flash, as device.yaml's modules list them.
func runModules(ctx context.Context, e *env, cfg agent.Config) error {
	if e.opts.plugin != "" || e.opts.flash != "" {
		return cli.Usagef("%s lists modules, each with its own plugin and flash: drop --plugin and --flash (and OTARUN_PLUGIN, OTAPORT_FLASH)", cfg.File())
	}
	ports := map[string]agent.Port{}
	for i, m := range cfg.ModuleList() {
		at := fmt.Sprintf("%s: modules[%d]", cfg.File(), i)
		if _, err := os.Stat(m.Plugin); err != nil {
			return fmt.Errorf("%s.plugin: %w (build it with: go build -o bin/ ./ports/...)", at, err)
		}
		if _, err := os.Stat(m.Flash); err != nil {
			return fmt.Errorf("%s.flash: %w: make the module's flash with otarun provision --config %s --module %s IMAGE", at, err, cfg.File(), m.Name)
		}
		extra, err := bootKeyEnv(m.PublicKeys, m.EncKey)
		if err != nil {
			return err
		}
		port, err := openPluginAt(ctx, e, m.Plugin, m.PluginSHA256, at+".plugin_sha256", m.Flash, extra...)
		if err != nil {
			return fmt.Errorf("module %s: %w", m.Name, err)
		}
		defer port.Close()
		ports[m.Name] = port
	}
	view := newAgentView(e.stdout, e.opts.json, agentIsTerminal(e.stdout))
	defer view.close()
	a, err := agent.New(agent.Options{Config: cfg, Ports: ports, OnEvent: view.event, Logger: e.log})
	if err != nil {
		return err
	}
	return a.Run(ctx)
}

// agentIsTerminal reports whether w is a terminal, where a progress bar that
// redraws itself makes sense.
func agentIsTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// agentView shows the agent's events: JSON lines with --json, a progress
// bar on a terminal, plain lines otherwise.
type agentView struct {
	mu      sync.Mutex
	w       io.Writer
	json    bool
	tty     bool
	barOpen bool // a bar is drawn on the current line
	lastPct int  // last percentage printed as a plain line
}

func newAgentView(w io.Writer, asJSON, tty bool) *agentView {
	return &agentView{w: w, json: asJSON, tty: tty, lastPct: -1}
}

func (v *agentView) event(ev agent.Event) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.json {
		b, err := json.Marshal(struct {
			Time string `json:"time"`
			agent.Event
		}{time.Now().UTC().Format(time.RFC3339Nano), ev})
		if err == nil {
			fmt.Fprintf(v.w, "%s\n", b)
		}
		return
	}
	if ev.Kind == event.Progress {
		if v.tty {
			fmt.Fprintf(v.w, "\r%s", agentBar(ev.Percent, ev.Offset, ev.Total))
			v.barOpen = true
			return
		}
		if v.lastPct < 0 || ev.Percent/10 != v.lastPct/10 || ev.Percent == 100 && v.lastPct != 100 {
			v.lastPct = ev.Percent
			if ev.Module != "" {
				fmt.Fprintf(v.w, "[%s] ", ev.Module)
			}
			fmt.Fprintf(v.w, "download %3d%% (%d of %d bytes)\n", ev.Percent, ev.Offset, ev.Total)
		}
		return
	}
	if v.barOpen {
		fmt.Fprintln(v.w)
		v.barOpen = false
	}
	v.lastPct = -1
	fmt.Fprintln(v.w, describeAgentEvent(ev))
}

func (v *agentView) close() {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.barOpen {
		fmt.Fprintln(v.w)
		v.barOpen = false
	}
}

// agentBar draws a 30-character progress bar.
func agentBar(pct int, off, total int64) string {
	const width = 30
	pct = max(0, min(100, pct))
	n := pct * width / 100
	return fmt.Sprintf("[%s%s] %3d%% %s/%s", strings.Repeat("=", n), strings.Repeat(" ", width-n), pct, humanSize(uint64(max(off, 0))), humanSize(uint64(max(total, 0))))
}

// describeAgentEvent is an event as a line for people.
func describeAgentEvent(ev agent.Event) string {
	var b strings.Builder
	if ev.Module != "" {
		fmt.Fprintf(&b, "[%s] ", ev.Module)
	}
	b.WriteString(string(ev.Kind))
	if ev.Order != 0 {
		fmt.Fprintf(&b, " order %d", ev.Order)
	}
	if ev.State != "" {
		fmt.Fprintf(&b, " %s", ev.State)
	}
	if ev.Version != "" {
		fmt.Fprintf(&b, " %s", ev.Version)
	}
	if ev.Message != "" {
		fmt.Fprintf(&b, ": %s", ev.Message)
	}
	if ev.Error != "" {
		fmt.Fprintf(&b, ": %s", ev.Error)
	}
	return b.String()
}

// provisionCommand writes a device's first image, as a factory does: the
// image is installed for good (no trial), the simulated device is powered
// on into it and the image is confirmed. The demo and the end-to-end tests
// start every device from such a flash.
func provisionCommand() command {
	var keys []string
	return command{
		name:  "provision",
		args:  "--key pub.pem IMAGE",
		short: "write, boot and confirm a device's first image (factory provisioning)",
		flags: func(fs *pflag.FlagSet) {
			fs.StringArrayVar(&keys, "key", nil, "PEM `file` of the public key that signs the image (repeatable)")
		},
		modules: oneModule,
		run: func(ctx context.Context, e *env, args []string) error {
			if len(args) != 1 {
				return cli.Usagef("give one IMAGE file to provision")
			}
			if len(keys) == 0 {
				keys = e.keys
			}
			if len(keys) == 0 {
				return cli.Usagef("no --key: give the public key the image is signed with")
			}
			// The one command that may make a new device: the factory's.
			file, err := e.flashFile("provision", true)
			if err != nil {
				return err
			}
			extra, err := bootKeyEnv(keys, e.encKey)
			if err != nil {
				return err
			}
			port, err := openPlugin(ctx, e, file, extra...)
			if err != nil {
				return err
			}
			defer port.Close()
			st, err := agent.Provision(ctx, port, keys, args[0], e.log)
			if err != nil {
				return err
			}
			if e.opts.json {
				return json.NewEncoder(e.stdout).Encode(st)
			}
			fmt.Fprintf(e.stdout, "provisioned %s: %s runs from %s, confirmed\n", st.Board, st.RunningVersion, st.RunningSlot)
			return nil
		},
	}
}
