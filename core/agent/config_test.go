package agent

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const goodConfig = `
broker: tcp://127.0.0.1:1883
identity: {product_key: demo, device_name: dev-1, device_secret: s3cret}
public_keys: [keys/pub.pem]
ca: ca.pem
health_check:
  command: [sh, -c, "exit 0"]
  timeout: 3s
report_interval: 2s
keep_alive: 60s
order_key: keys/order.pub
`

func TestLoadConfig_ResolvesFilesNextToIt(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "device.yaml")
	if err := os.WriteFile(path, []byte(goodConfig), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := LoadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	if want := filepath.Join(dir, "keys", "pub.pem"); c.PublicKeys[0] != want {
		t.Errorf("public_keys[0] = %s, want %s", c.PublicKeys[0], want)
	}
	if want := filepath.Join(dir, "keys", "order.pub"); c.OrderKey != want {
		t.Errorf("order_key = %s, want %s", c.OrderKey, want)
	}
	if want := filepath.Join(dir, "ca.pem"); c.CA != want {
		t.Errorf("ca = %s, want %s", c.CA, want)
	}
	if c.HealthCheck.Timeout != Duration(3*time.Second) || c.reportInterval() != 2*time.Second {
		t.Errorf("durations: health %v, report %v", c.HealthCheck.Timeout, c.reportInterval())
	}
	if got := strings.Join(c.HealthCheck.Command, " "); got != "sh -c exit 0" {
		t.Errorf("health command %q", got)
	}
}

func TestParseConfig_Errors(t *testing.T) {
	cases := []struct {
		name, yaml, want string
	}{
		{"typo", "helth_check: {command: [true]}", "device.yaml:1: helth_check: unknown field; did you mean health_check?"},
		{"typo in a section", "broker: tcp://a:1883\nidentity:\n  product_key: pk\n  device_nmae: d\n", "device.yaml:4: identity.device_nmae: unknown field; did you mean device_name?"},
		{"no near field", "colour: blue", "device.yaml:1: colour: unknown field; known fields here: broker, identity,"},
		{"bare number duration", "report_interval: 10", `"10" is not a duration`},
		{"negative duration", "report_interval: -1s", "negative"},
		{"two documents", "broker: a\n---\nbroker: b\n", "more than one YAML document"},
		{"not a map", "- a\n- b\n", "cannot unmarshal"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := ParseConfig([]byte(c.yaml), "device.yaml")
			if err == nil || !strings.Contains(err.Error(), c.want) || !strings.HasPrefix(err.Error(), "device.yaml:") {
				t.Errorf("error %v, want one naming device.yaml and %q", err, c.want)
			}
		})
	}
}

func TestValidate_NamesFieldAndFix(t *testing.T) {
	base := func() Config {
		c, err := ParseConfig([]byte(goodConfig), "device.yaml")
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	cases := []struct {
		name string
		edit func(*Config)
		want string
	}{
		{"no broker", func(c *Config) { c.Broker = "" }, "device.yaml: broker: not set"},
		{"bad scheme", func(c *Config) { c.Broker = "http://x:1" }, `scheme "http"`},
		{"not a URL", func(c *Config) { c.Broker = "localhost" }, "is not a URL"},
		{"bad device name", func(c *Config) { c.Identity.DeviceName = "a/b" }, "identity"},
		{"no secret", func(c *Config) { c.Identity.DeviceSecret = "" }, "identity.device_secret: not set"},
		{"two secrets", func(c *Config) { c.Identity.DeviceSecretFile = "s" }, "keep one"},
		{"certificate without its key", func(c *Config) { c.Broker, c.Identity.Cert = "ssl://x:8883", "dev.crt" }, "identity.cert: and identity.key go together"},
		{"certificate over TCP", func(c *Config) { c.Broker, c.Identity.Cert, c.Identity.Key = "tcp://x:1883", "dev.crt", "dev.key" }, "identity.cert: a client certificate needs TLS"},
		{"no secret, no certificate", func(c *Config) { c.Identity.DeviceSecret = "" }, "or its certificate (identity.cert and identity.key)"},
		{"no keys", func(c *Config) { c.PublicKeys = nil }, "public_keys: none"},
		{"timeout alone", func(c *Config) { c.HealthCheck.Command = nil }, "health_check.timeout: set without"},
		{"empty program", func(c *Config) { c.HealthCheck.Command = []string{" "} }, "health_check.command"},
		{"flooding", func(c *Config) { c.ReportInterval = Duration(time.Millisecond) }, "report_interval"},
		{"keep-alive", func(c *Config) { c.KeepAlive = Duration(time.Second) }, "keep_alive"},
		{"sign form", func(c *Config) { c.SignForm = "v3" }, `sign_form: "v3"`},
		{"client id with sdk", func(c *Config) { c.SignForm, c.ClientID = "sdk", "a1demo_dev-1" }, `client_id: "a1demo_dev-1" with sign_form sdk`},
		{"client id with a comma", func(c *Config) { c.ClientID = "a,b" }, `client_id: "a,b": the sign-in cannot carry`},
		{"cluster, one node not a URL", func(c *Config) { c.Broker = "tcp://a:1883,b:1883" }, `"b:1883" is not a URL`},
		{"no order key, signed", func(c *Config) { c.OrderKey, c.SignedOrders = "", ptr(true) }, "device.yaml: order_key: not set while signed_orders is true: give otaserve's order-signing public key (otaserve order-key"},
		{"order key, unsigned", func(c *Config) { c.SignedOrders = ptr(false) }, "device.yaml: signed_orders: false together with order_key"},
		{"clock, unsigned", func(c *Config) { c.OrderKey, c.SignedOrders, c.TrustedClock = "", ptr(false), ptr(false) }, "device.yaml: trusted_clock: set with signed_orders: false"},
		{"freeze watch, unsigned", func(c *Config) { c.OrderKey, c.SignedOrders, c.FreezeAfter = "", ptr(false), Duration(time.Hour) }, "device.yaml: freeze_after: set with signed_orders: false"},
		{"negative freeze watch", func(c *Config) { c.FreezeAfter = Duration(-time.Hour) }, "device.yaml: freeze_after: -1h0m0s is negative"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := base()
			c.edit(&cfg)
			err := cfg.Validate()
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("Validate: %v, want an error with %q", err, c.want)
			}
		})
	}
}

func TestSecret_FromFile(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "secret")
	os.WriteFile(f, []byte("  abc\n"), 0o600)
	c := Config{Identity: IdentityConfig{DeviceSecretFile: f}}
	if s, err := c.secret(); err != nil || s != "abc" {
		t.Errorf("secret = %q, %v; want abc", s, err)
	}
	os.WriteFile(f, []byte("\n"), 0o600)
	if _, err := c.secret(); err == nil || !strings.Contains(err.Error(), "empty") {
		t.Errorf("empty secret file: %v", err)
	}
}

// FuzzParseConfig: any input parses or fails with an error naming the file;
// what parses survives Validate without a panic.
func FuzzParseConfig(f *testing.F) {
	f.Add([]byte(goodConfig))
	f.Add([]byte(modulesConfig))
	f.Add([]byte("health_check: {command: [], timeout: 1h}"))
	f.Add([]byte("a: &x [*x]"))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := ParseConfig(b, "device.yaml")
		if err != nil {
			if !strings.HasPrefix(err.Error(), "device.yaml:") {
				t.Fatalf("error does not name the file: %v", err)
			}
			return
		}
		_ = c.Validate()
	})
}

const modulesConfig = `
broker: tcp://127.0.0.1:1883
identity: {product_key: demo, device_name: dev-1, device_secret: s3cret}
public_keys: [pub.pem]
signed_orders: false
health_check: {command: [true]}
modules:
  - name: default
    plugin: bin/otaport-nucleo-h743zi
    flash: mcu.flash
  - name: wifi
    plugin: bin/otaport-esp32-devkitc
    flash: wifi.flash
    public_keys: [wifi.pem]
    health_check: {command: [wifi-selftest], timeout: 20s}
    allow_downgrade: true
`

func TestLoadConfig_Modules(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "device.yaml")
	if err := os.WriteFile(path, []byte(modulesConfig), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := LoadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	ms := c.ModuleList()
	if len(ms) != 2 {
		t.Fatalf("ModuleList = %+v", ms)
	}
	mcu, wifi := ms[0], ms[1]
	checks := []struct {
		what, got, want string
	}{
		{"mcu name", mcu.Name, "default"},
		{"mcu plugin", mcu.Plugin, filepath.Join(dir, "bin/otaport-nucleo-h743zi")},
		{"mcu flash", mcu.Flash, filepath.Join(dir, "mcu.flash")},
		{"mcu keys (the device's)", strings.Join(mcu.PublicKeys, ","), filepath.Join(dir, "pub.pem")},
		{"mcu health (the device's)", strings.Join(mcu.HealthCheck.Command, " "), "true"},
		{"wifi keys (its own)", strings.Join(wifi.PublicKeys, ","), filepath.Join(dir, "wifi.pem")},
		{"wifi health (its own)", strings.Join(wifi.HealthCheck.Command, " ") + " " + wifi.HealthCheck.Timeout.String(), "wifi-selftest 20s"},
	}
	for _, ch := range checks {
		if ch.got != ch.want {
			t.Errorf("%s = %q, want %q", ch.what, ch.got, ch.want)
		}
	}
	if *mcu.AllowDowngrade || !*wifi.AllowDowngrade {
		t.Errorf("allow_downgrade: mcu %v, wifi %v; want false, true", *mcu.AllowDowngrade, *wifi.AllowDowngrade)
	}
}

// TestModuleList_OneModule: a device.yaml of today is one module, "default"
// or the one its module field names.
func TestModuleList_OneModule(t *testing.T) {
	for module, want := range map[string]string{"": "default", "MCU": "MCU"} {
		c, err := ParseConfig([]byte(goodConfig+"module: "+module+"\n"), "device.yaml")
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Validate(); err != nil {
			t.Fatal(err)
		}
		ms := c.ModuleList()
		if len(ms) != 1 || ms[0].Name != want || ms[0].Plugin != "" || len(ms[0].PublicKeys) != 1 {
			t.Errorf("module %q: ModuleList = %+v, want one module %s on the command line's plugin", module, ms, want)
		}
	}
}

func TestValidate_Modules(t *testing.T) {
	cases := []struct {
		name, edit, want string
	}{
		{"module and modules", "module: MCU\n", "device.yaml: module: set together with modules"},
		{"no name", "  - plugin: p\n    flash: f\n", "device.yaml: modules[2].name: not set"},
		{"bad name", "  - {name: wi fi, plugin: p, flash: f}\n", `device.yaml: modules[2].name: module "wi fi": use letters`},
		{"same name", "  - {name: wifi, plugin: p, flash: f}\n", `device.yaml: modules[2].name: "wifi" is modules[1].name too`},
		{"no plugin", "  - {name: bt, flash: f}\n", "device.yaml: modules[2].plugin: not set: give the module's port plugin"},
		{"no flash", "  - {name: bt, plugin: p}\n", "device.yaml: modules[2].flash: not set: give the module's flash file, e.g. bt.flash"},
		{"same flash", "  - {name: bt, plugin: p, flash: wifi.flash}\n", "device.yaml: modules[2].flash: wifi.flash is modules[1].flash too"},
		{"empty key", "  - {name: bt, plugin: p, flash: f, public_keys: [\" \"]}\n", "device.yaml: modules[2].public_keys[0]: empty file name"},
		{"timeout alone", "  - {name: bt, plugin: p, flash: f, health_check: {timeout: 1s}}\n", "device.yaml: modules[2].health_check.timeout: set without modules[2].health_check.command"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			text := modulesConfig + c.edit
			if strings.HasPrefix(c.edit, "module:") {
				text = c.edit + modulesConfig
			}
			cfg, err := ParseConfig([]byte(text), "device.yaml")
			if err != nil {
				t.Fatal(err)
			}
			if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("Validate: %v, want an error with %q", err, c.want)
			}
		})
	}
	// A typo inside a module is named with its place in the list.
	_, err := ParseConfig([]byte(modulesConfig+"  - {name: bt, plugn: p}\n"), "device.yaml")
	if err == nil || !strings.Contains(err.Error(), "device.yaml:17: modules[2].plugn: unknown field; did you mean plugin?") {
		t.Errorf("typo in a module: %v", err)
	}
	_, err = ParseConfig([]byte(modulesConfig+"  - {name: bt, health_check: {comand: [x]}}\n"), "device.yaml")
	if err == nil || !strings.Contains(err.Error(), "modules[2].health_check.comand: unknown field; did you mean command?") {
		t.Errorf("typo in a module's health check: %v", err)
	}
}

func ptr[T any](v T) *T { return &v }

// TestValidate_CertificateInsteadOfSecret: a device with its certificate
// and key over TLS needs no secret.
func TestValidate_CertificateInsteadOfSecret(t *testing.T) {
	c, err := ParseConfig([]byte(goodConfig), "device.yaml")
	if err != nil {
		t.Fatal(err)
	}
	c.Broker = "ssl://broker.example:8883"
	c.Identity.DeviceSecret, c.Identity.Cert, c.Identity.Key = "", "dev.crt", "dev.key"
	if err := c.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
}

// TestValidate_OldDeviceYAMLRunsInMigrationMode: the device.yaml the
// release before signed orders wrote (e2e/testdata/migration) is valid, in
// migration mode; before it was refused for its missing order_key.
func TestValidate_OldDeviceYAMLRunsInMigrationMode(t *testing.T) {
	c, err := LoadConfig("../../e2e/testdata/migration/dev-old.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Errorf("Validate: %v, want the old device.yaml taken", err)
	}
	if !c.Migration() {
		t.Error("the old device.yaml is not in migration mode")
	}
	for _, y := range []string{"order_key: o.pub\n", "signed_orders: false\n", "signed_orders: true\norder_key: o.pub\n"} {
		c, err := ParseConfig([]byte(y), "device.yaml")
		if err != nil {
			t.Fatal(err)
		}
		if c.Migration() {
			t.Errorf("%q: in migration mode, want only a device.yaml that sets neither field", y)
		}
	}
}

// TestValidate_ClusterAndClientID: the nodes of a cluster, and a client id
// a NATS server's MQTT port takes, are a valid configuration.
func TestValidate_ClusterAndClientID(t *testing.T) {
	c, err := ParseConfig([]byte(goodConfig+"client_id: a1demo_dev-1\n"), "device.yaml")
	if err != nil {
		t.Fatal(err)
	}
	c.Broker = "tcp://10.0.0.1:1883, tcp://10.0.0.2:1883,tcp://10.0.0.3:1883"
	if err := c.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	if c.ClientID != "a1demo_dev-1" {
		t.Errorf("client_id = %q", c.ClientID)
	}
}
