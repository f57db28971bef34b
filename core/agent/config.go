package agent

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/otaport/otaport/core/cloud"
	"github.com/otaport/otaport/core/spell"
)

// Defaults of Config.
const (
	// DefaultHealthTimeout bounds a health check that does not set one.
	DefaultHealthTimeout = 10 * time.Second
	// DefaultReportInterval is how often progress is reported while a
	// download stays within one percent: "at least every few seconds".
	DefaultReportInterval = 5 * time.Second
	// maxConfigSize bounds device.yaml: a configuration is a few hundred
	// bytes, and a parser should not be handed whatever a path points at.
	maxConfigSize = 64 << 10
	// DefaultFreezeAfter: otaserve sends a statement every 10 minutes, so a
	// day without one is no network hiccup.
	DefaultFreezeAfter = 24 * time.Hour
)

// Config is the device agent's configuration, as device.yaml holds it:
//
//	broker: tcp://127.0.0.1:1883
//	identity: {product_key: demo, device_name: dev-1, device_secret: s3cret}
//	ca: ca.pem
//	public_keys: [pub.pem]
//	health_check: {command: [sh, -c, "exit 0"], timeout: 10s}
//	report_interval: 5s
//	order_key: order.pub
//
// Relative file names are relative to the directory of device.yaml.
type Config struct {
	// Broker is the MQTT broker's URL: tcp://host:port, or ssl://host:port
	// for TLS; the nodes of a clustered broker separated by commas, tried
	// in order at every connection.
	Broker string `yaml:"broker"`
	// Identity is the device's triple as the cloud issued it.
	Identity IdentityConfig `yaml:"identity"`
	// CA is a PEM file of the CAs that sign the broker's and the firmware
	// server's certificates; empty means the system's.
	CA string `yaml:"ca"`
	// PublicKeys are PEM files of the keys images must be signed with.
	PublicKeys []string `yaml:"public_keys"`
	// EncKey is a file of the device's private key for encrypted images
	// (otaimg sign --encrypt): an X25519, P-256 or RSA-2048 PEM key, or a
	// base64 AES-KW key. Without it an encrypted image is refused.
	EncKey string `yaml:"enc_key"`
	// HealthCheck is run after the device booted a trial image.
	HealthCheck HealthCheck `yaml:"health_check"`
	// ReportInterval is the longest time between two progress reports
	// while a download goes on; 0 means DefaultReportInterval.
	ReportInterval Duration `yaml:"report_interval"`
	// KeepAlive is the MQTT keep-alive (30 s to 1200 s); 0 means 60 s.
	KeepAlive Duration `yaml:"keep_alive"`
	// AllowDowngrade accepts an order for a version older than or equal to
	// the running one. The security counter is checked regardless.
	AllowDowngrade bool `yaml:"allow_downgrade"`
	// Module names the device's one module in inform and progress (newer
	// SDKs); empty for the default module ("default"). A device of several
	// modules lists them in Modules instead.
	Module string `yaml:"module"`
	// Modules lists the modules of a device made of several upgradable
	// parts (an MCU and a Wi-Fi module), each with its own port plugin,
	// flash and versions, and with the device's public_keys, health_check
	// and allow_downgrade unless it sets its own. Absent, the device is one
	// module on the port given on the command line.
	Modules []ModuleConfig `yaml:"modules"`
	// SignForm is the layout of the MQTT sign-in: "doc" (the default: the
	// platform documentation's, signed with the current time) or "sdk" (the
	// C SDK v3's, signed with its fixed timestamp, so the password never
	// changes: what a broker with a static password file, such as
	// Mosquitto with mosquitto_passwd, can check).
	SignForm string `yaml:"sign_form"`
	// ClientID is the device's own client id in the sign-in (sign_form
	// doc); empty means the platform's default, "{pk}.{dn}". A NATS
	// server's MQTT port refuses a client id with '.' in it: devices there
	// need one without (docs/otaserve.md).
	ClientID string `yaml:"client_id"`
	// OrderKey is a PEM file of otaserve's order-signing public key
	// (Ed25519, `otaserve order-key`): an order must be signed with it, for
	// this device, board and module, unexpired, newer than the last one
	// taken and answering the latest version report (docs/security.md).
	OrderKey string `yaml:"order_key"`
	// SignedOrders false takes orders without otaserve's signature: for the
	// Alibaba Cloud platform, which cannot sign them. true requires
	// OrderKey. Unset with OrderKey unset too is a device.yaml written
	// before signed orders: the agent runs in its migration mode
	// (Migration).
	SignedOrders *bool `yaml:"signed_orders"`
	// TrustedClock false says the device's clock cannot be trusted (no RTC,
	// no time sync): the orders' expiry is not checked, and the nonce alone
	// refuses a replayed order. Unset means true.
	TrustedClock *bool `yaml:"trusted_clock"`
	// FreezeAfter is how long the device may hear no release statement
	// from otaserve (signed with the order key) before it reports itself
	// as possibly frozen: cut off from orders it should get. 0 means
	// DefaultFreezeAfter; it needs signed orders.
	FreezeAfter Duration `yaml:"freeze_after"`

	// file is where the configuration was read from, for error messages.
	file string
}

// ModuleConfig is one module of a device of several, an element of
// device.yaml's modules:
//
//	modules:
//	  - name: default                  # the MCU: orders without a module field
//	    plugin: bin/otaport-nucleo-h743zi
//	    flash: mcu.flash
//	  - name: wifi
//	    plugin: bin/otaport-b-l475e-iot01a
//	    flash: wifi.flash
//	    public_keys: [wifi-pub.pem]
//	    health_check: {command: [wifi-selftest], timeout: 20s}
type ModuleConfig struct {
	// Name is the module's name in orders, inform and progress; "default"
	// is the module that orders without a module field are for.
	Name string `yaml:"name"`
	// Plugin is the module's port plugin (otaport-<board>).
	Plugin string `yaml:"plugin"`
	// PluginSHA256, if set, is the hex SHA-256 the plugin file must have.
	PluginSHA256 string `yaml:"plugin_sha256"`
	// Flash is the module's flash file (the emulated module's flash).
	Flash string `yaml:"flash"`
	// PublicKeys, HealthCheck and AllowDowngrade replace the device's own
	// for this module when set.
	PublicKeys     []string     `yaml:"public_keys"`
	EncKey         string       `yaml:"enc_key"`
	HealthCheck    *HealthCheck `yaml:"health_check"`
	AllowDowngrade *bool        `yaml:"allow_downgrade"`
}

// IdentityConfig is the identity part of device.yaml.
type IdentityConfig struct {
	ProductKey   string `yaml:"product_key"`
	DeviceName   string `yaml:"device_name"`
	DeviceSecret string `yaml:"device_secret"`
	// DeviceSecretFile holds the secret instead of device.yaml (one line).
	DeviceSecretFile string `yaml:"device_secret_file"`
	// Cert and Key are the device's client certificate and its private
	// key (PEM files), for a broker that signs devices in by certificate
	// over TLS (otaserve device cert). With them no secret is needed.
	Cert string `yaml:"cert"`
	Key  string `yaml:"key"`
}

// HealthCheck is the command that decides whether a trial image is good. It
// runs with the environment of the agent plus OTARUN_VERSION (the version
// now running), OTARUN_PREVIOUS_VERSION (the one it replaced) and
// OTARUN_BOARD; exit status 0 within Timeout means healthy. No command
// means every image that boots is healthy.
type HealthCheck struct {
	Command []string `yaml:"command"`
	Timeout Duration `yaml:"timeout"`
}

// Duration is a time.Duration written as "10s" or "1m30s" in YAML.
type Duration time.Duration

// UnmarshalYAML reads a duration string ("10s"); a bare number is refused,
// since "10" could be seconds or milliseconds.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("line %d: want a duration such as 10s", n.Line)
	}
	v, err := time.ParseDuration(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %q is not a duration: write it as 10s, 500ms or 1m", n.Line, n.Value)
	}
	if v < 0 {
		return fmt.Errorf("line %d: duration %q is negative", n.Line, n.Value)
	}
	*d = Duration(v)
	return nil
}

// MarshalYAML writes the duration as a string.
func (d Duration) MarshalYAML() (any, error) { return time.Duration(d).String(), nil }

// String formats d as time.Duration does.
func (d Duration) String() string { return time.Duration(d).String() }

// LoadConfig reads and checks device.yaml at path.
func LoadConfig(path string) (Config, error) {
	f, err := os.Open(path)
	if err != nil {
		return Config{}, fmt.Errorf("device configuration: %w (pass --config FILE, or give every setting as a flag)", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxConfigSize+1))
	if err != nil {
		return Config{}, fmt.Errorf("read %s: %w", path, err)
	}
	if len(b) > maxConfigSize {
		return Config{}, fmt.Errorf("%s: more than %d bytes; is this a device configuration?", path, maxConfigSize)
	}
	c, err := ParseConfig(b, path)
	if err != nil {
		return Config{}, err
	}
	c.resolve(filepath.Dir(path))
	return c, nil
}

// ParseConfig decodes device.yaml from b; name is used in error messages.
// Unknown fields are errors (a misspelt "helth_check" would otherwise turn
// the health check off). It does not Validate: flags may still fill in
// what the file leaves out.
func ParseConfig(b []byte, name string) (Config, error) {
	if len(b) > maxConfigSize {
		return Config{}, fmt.Errorf("%s: more than %d bytes", name, maxConfigSize)
	}
	var doc yaml.Node
	if yaml.Unmarshal(b, &doc) == nil {
		if errs := unknownFields(&doc, reflect.TypeFor[Config](), "", name); len(errs) > 0 {
			return Config{}, errors.Join(errs...)
		}
	}
	var c Config
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil && !errors.Is(err, io.EOF) {
		return Config{}, fmt.Errorf("%s: %w", name, cleanYAMLError(err))
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return Config{}, fmt.Errorf("%s: more than one YAML document; keep one device per file", name)
	}
	c.file = name
	return c, nil
}

// unknownFields names each key of the YAML node n that no field of the
// struct type t takes, with its line and the nearest known field, as otagen
// does for board files: yaml.v3's own message ("field helth_check not found
// in type agent.Config") names a Go type and no fix. path is n's place in the
// file, name the file's.
func unknownFields(n *yaml.Node, t reflect.Type, path, name string) []error {
	if n.Kind == yaml.DocumentNode && len(n.Content) == 1 {
		return unknownFields(n.Content[0], t, path, name)
	}
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if n.Kind == yaml.SequenceNode && t.Kind() == reflect.Slice {
		var errs []error
		for i, e := range n.Content {
			errs = append(errs, unknownFields(e, t.Elem(), fmt.Sprintf("%s[%d]", path, i), name)...)
		}
		return errs
	}
	if n.Kind != yaml.MappingNode || t.Kind() != reflect.Struct {
		return nil // the decoder says what is wrong with the shape
	}
	fields := map[string]reflect.Type{}
	var known []string
	for i := range t.NumField() {
		f := t.Field(i)
		tag, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if !f.IsExported() || tag == "" || tag == "-" {
			continue
		}
		fields[tag] = f.Type
		known = append(known, tag)
	}
	var errs []error
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		sub := k.Value
		if path != "" {
			sub = path + "." + k.Value
		}
		ft, ok := fields[k.Value]
		if !ok {
			hint := "known fields here: " + strings.Join(known, ", ")
			if s := spell.Nearest(k.Value, known); s != "" {
				hint = "did you mean " + s + "?"
			}
			errs = append(errs, fmt.Errorf("%s:%d: %s: unknown field; %s", name, k.Line, sub, hint))
			continue
		}
		errs = append(errs, unknownFields(v, ft, sub, name)...)
	}
	return errs
}

// cleanYAMLError drops yaml.v3's "yaml: unmarshal errors:\n  " wrapping.
func cleanYAMLError(err error) error {
	s := err.Error()
	s = strings.TrimPrefix(s, "yaml: unmarshal errors:\n")
	s = strings.TrimPrefix(s, "yaml: ")
	s = strings.Join(strings.Fields(strings.ReplaceAll(s, "\n", "; ")), " ")
	return errors.New(s)
}

// resolve makes the file names of c relative to dir absolute-from-here.
func (c *Config) resolve(dir string) {
	rel := func(p string) string {
		if p == "" || filepath.IsAbs(p) {
			return p
		}
		return filepath.Join(dir, p)
	}
	c.CA = rel(c.CA)
	c.OrderKey = rel(c.OrderKey)
	c.Identity.DeviceSecretFile = rel(c.Identity.DeviceSecretFile)
	c.Identity.Cert = rel(c.Identity.Cert)
	c.Identity.Key = rel(c.Identity.Key)
	for i, k := range c.PublicKeys {
		c.PublicKeys[i] = rel(k)
	}
	c.EncKey = rel(c.EncKey)
	for i := range c.Modules {
		m := &c.Modules[i]
		m.Plugin, m.Flash, m.EncKey = rel(m.Plugin), rel(m.Flash), rel(m.EncKey)
		for j, k := range m.PublicKeys {
			m.PublicKeys[j] = rel(k)
		}
	}
}

// File is the file the configuration was read from; "device.yaml" when it
// was not read from a file.
func (c *Config) File() string {
	if c.file == "" {
		return "device.yaml"
	}
	return c.file
}

// where names the source of the configuration for an error message.
func (c *Config) where(field string) string {
	if c.file == "" {
		return field
	}
	return c.file + ": " + field
}

// Validate checks c is complete and consistent, after flags were applied.
// Each error names the field, the value and the fix.
func (c *Config) Validate() error {
	var errs []error
	bad := func(field, format string, a ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", c.where(field), fmt.Sprintf(format, a...)))
	}
	if c.Broker == "" {
		bad("broker", "not set: give the broker URL, e.g. tcp://127.0.0.1:1883 (--broker)")
	} else {
		for _, one := range strings.Split(c.Broker, ",") {
			one = strings.TrimSpace(one)
			if u, err := url.Parse(one); err != nil || u.Host == "" {
				bad("broker", "%q is not a URL such as tcp://127.0.0.1:1883 or ssl://host:8883", one)
			} else {
				switch u.Scheme {
				case "tcp", "mqtt", "ssl", "tls", "mqtts":
				default:
					bad("broker", "%q: scheme %q; use tcp:// or ssl://", one, u.Scheme)
				}
			}
		}
	}
	id := c.Identity
	if err := cloud.CheckIdentity(id.ProductKey, id.DeviceName); err != nil {
		bad("identity", "%v (identity.product_key and identity.device_name, or --product-key and --device-name)", err)
	}
	switch {
	case (id.Cert == "") != (id.Key == ""):
		bad("identity.cert", "and identity.key go together: give the device's certificate and its private key, or neither")
	case id.Cert != "" && c.Broker != "" && !slices.ContainsFunc([]string{"ssl://", "tls://", "mqtts://"}, func(p string) bool { return strings.HasPrefix(c.Broker, p) }):
		bad("identity.cert", "a client certificate needs TLS, but broker %q is plain TCP: use ssl://", c.Broker)
	case id.DeviceSecret == "" && id.DeviceSecretFile == "" && id.Cert == "":
		bad("identity.device_secret", "not set: give the secret issued with the device (or identity.device_secret_file, --device-secret), or its certificate (identity.cert and identity.key)")
	}
	if id.DeviceSecret != "" && id.DeviceSecretFile != "" {
		bad("identity.device_secret_file", "set together with identity.device_secret: keep one")
	}
	if len(c.PublicKeys) == 0 && !c.everyModuleHasKeys() {
		bad("public_keys", "none: list the PEM public key(s) images are signed with (--key pub.pem)")
	}
	checkKeys(bad, "", c.PublicKeys)
	checkHealth(bad, "", c.HealthCheck)
	c.validateModules(bad)
	if c.ReportInterval != 0 && time.Duration(c.ReportInterval) < 100*time.Millisecond {
		bad("report_interval", "%v is too short: progress would flood the broker; use 1s or more", c.ReportInterval)
	}
	c.validateOrders(bad)
	switch c.SignForm {
	case "", "doc", "sdk":
	default:
		bad("sign_form", "%q: use doc (the default) or sdk", c.SignForm)
	}
	switch {
	case c.ClientID != "" && c.SignForm == "sdk":
		bad("client_id", "%q with sign_form sdk, whose client id is always {pk}.{dn}: use sign_form doc, or remove client_id", c.ClientID)
	case strings.ContainsAny(c.ClientID, "|,"):
		bad("client_id", "%q: the sign-in cannot carry '|' or ','; choose an id without them", c.ClientID)
	}
	if k := time.Duration(c.KeepAlive); k != 0 && (k < cloud.MinKeepAlive || k > cloud.MaxKeepAlive) {
		bad("keep_alive", "%v: the platform accepts %v to %v", k, cloud.MinKeepAlive, cloud.MaxKeepAlive)
	}
	return errors.Join(errs...)
}

// validateOrders checks the settings of signed orders: a device says
// which key signs its orders, or that they are not signed, or neither (a
// device.yaml from before signed orders: Migration).
func (c *Config) validateOrders(bad func(field, format string, a ...any)) {
	switch {
	case c.Migration():
	case c.SignedOrders == nil || *c.SignedOrders:
		if strings.TrimSpace(c.OrderKey) == "" {
			bad("order_key", "not set while signed_orders is true: give otaserve's order-signing public key (otaserve order-key --data DIR > order.pub; order_key: order.pub), "+
				"or set signed_orders: false to take unsigned orders from the Alibaba Cloud platform (docs/security.md says what that leaves open)")
		}
	case c.OrderKey != "":
		bad("signed_orders", "false together with order_key %s: drop order_key to take unsigned orders, or signed_orders to check them", c.OrderKey)
	case c.TrustedClock != nil:
		bad("trusted_clock", "set with signed_orders: false: only signed orders carry an expiry; drop trusted_clock")
	case c.FreezeAfter != 0:
		bad("freeze_after", "set with signed_orders: false: only otaserve signs release statements; drop freeze_after")
	}
	if c.FreezeAfter < 0 {
		bad("freeze_after", "%v is negative: give how long the device may hear no release statement, such as 24h, or leave it out for %v", time.Duration(c.FreezeAfter), DefaultFreezeAfter)
	}
}

// Migration reports whether the configuration predates signed orders: it
// sets neither order_key nor signed_orders. The agent then takes unsigned
// orders, as the release that wrote it did, until an order brings
// otaserve's order key endorsed by one of the device's image keys; from
// then on it takes signed orders only (docs/security.md, migration).
func (c *Config) Migration() bool {
	return strings.TrimSpace(c.OrderKey) == "" && c.SignedOrders == nil
}

// signedOrders reports whether orders must be signed: an order key is given
// and signed_orders is not false.
func (c *Config) signedOrders() bool {
	return c.OrderKey != "" && (c.SignedOrders == nil || *c.SignedOrders)
}

// checkKeys checks a list of key files; prefix is the place of the list's
// owner ("" or "modules[1].").
func checkKeys(bad func(field, format string, a ...any), prefix string, keys []string) {
	for i, k := range keys {
		if strings.TrimSpace(k) == "" {
			bad(fmt.Sprintf("%spublic_keys[%d]", prefix, i), "empty file name")
		}
	}
}

// checkHealth checks a health check; prefix as for checkKeys.
func checkHealth(bad func(field, format string, a ...any), prefix string, h HealthCheck) {
	if len(h.Command) == 0 && h.Timeout != 0 {
		bad(prefix+"health_check.timeout", "set without %shealth_check.command", prefix)
	} else if len(h.Command) > 0 && strings.TrimSpace(h.Command[0]) == "" {
		bad(prefix+"health_check.command", "the program name (first element) is empty")
	}
}

// everyModuleHasKeys reports whether modules are listed and each has its
// own public_keys, so the device needs none.
func (c *Config) everyModuleHasKeys() bool {
	for _, m := range c.Modules {
		if len(m.PublicKeys) == 0 {
			return false
		}
	}
	return len(c.Modules) > 0
}

// validateModules checks the module of a device of one module, or the
// modules list of a device of several.
func (c *Config) validateModules(bad func(field, format string, a ...any)) {
	if c.Module != "" {
		if err := cloud.CheckModule(c.Module); err != nil {
			bad("module", "%v", err)
		}
		if len(c.Modules) > 0 {
			bad("module", "set together with modules: name each module in modules[].name and drop module")
		}
	}
	names, flashes := map[string]int{}, map[string]int{}
	for i, m := range c.Modules {
		at := fmt.Sprintf("modules[%d].", i)
		if m.Name == "" {
			bad(at+"name", "not set: name the module as orders name it (\"default\" for the one orders without a module are for, e.g. the MCU; \"wifi\" ...)")
		} else if err := cloud.CheckModule(m.Name); err != nil {
			bad(at+"name", "%v", err)
		} else if j, dup := names[m.Name]; dup {
			bad(at+"name", "%q is modules[%d].name too: give each module its own name", m.Name, j)
		} else {
			names[m.Name] = i
		}
		if strings.TrimSpace(m.Plugin) == "" {
			bad(at+"plugin", "not set: give the module's port plugin, e.g. bin/otaport-<board> (build it with go build -o bin/ ./ports/...)")
		}
		if strings.TrimSpace(m.Flash) == "" {
			bad(at+"flash", "not set: give the module's flash file, e.g. %s.flash (otarun provision --flash FILE makes one)", cmp.Or(m.Name, "module"))
		} else if j, dup := flashes[m.Flash]; dup {
			bad(at+"flash", "%s is modules[%d].flash too: each module has its own flash", m.Flash, j)
		} else {
			flashes[m.Flash] = i
		}
		checkKeys(bad, at, m.PublicKeys)
		if m.HealthCheck != nil {
			checkHealth(bad, at, *m.HealthCheck)
		}
	}
}

// ModuleList returns the device's modules with the device's settings
// filled in where a module sets none: the modules of modules:, or the one
// module of a device.yaml without it (named by module:, or "default", with
// no plugin or flash: the command line gives them).
func (c *Config) ModuleList() []ModuleConfig {
	if len(c.Modules) == 0 {
		hc := c.HealthCheck
		return []ModuleConfig{{Name: cloud.ModuleName(c.Module), PublicKeys: c.PublicKeys, EncKey: c.EncKey, HealthCheck: &hc, AllowDowngrade: &c.AllowDowngrade}}
	}
	out := make([]ModuleConfig, len(c.Modules))
	for i, m := range c.Modules {
		if len(m.PublicKeys) == 0 {
			m.PublicKeys = c.PublicKeys
		}
		if m.EncKey == "" {
			m.EncKey = c.EncKey
		}
		if m.HealthCheck == nil {
			hc := c.HealthCheck
			m.HealthCheck = &hc
		}
		if m.AllowDowngrade == nil {
			m.AllowDowngrade = &c.AllowDowngrade
		}
		out[i] = m
	}
	return out
}

// secret returns the device secret, reading DeviceSecretFile if set.
func (c *Config) secret() (string, error) {
	if c.Identity.DeviceSecretFile == "" {
		return c.Identity.DeviceSecret, nil
	}
	b, err := os.ReadFile(c.Identity.DeviceSecretFile)
	if err != nil {
		return "", fmt.Errorf("%s: %w", c.where("identity.device_secret_file"), err)
	}
	s := strings.TrimSpace(string(b))
	if s == "" {
		return "", fmt.Errorf("%s: %s is empty", c.where("identity.device_secret_file"), c.Identity.DeviceSecretFile)
	}
	return s, nil
}

// reportInterval is the progress heartbeat with its default.
func (c *Config) reportInterval() time.Duration {
	if c.ReportInterval == 0 {
		return DefaultReportInterval
	}
	return time.Duration(c.ReportInterval)
}

// CheckModules checks module and modules alone, for a command that acts on
// modules and needs no broker or identity. Each error names the field and
// the fix, as Validate's do.
func (c *Config) CheckModules() error {
	var errs []error
	c.validateModules(func(field, format string, a ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", c.where(field), fmt.Sprintf(format, a...)))
	})
	return errors.Join(errs...)
}

// PickModule returns the module name of the device, as ModuleList fills it
// in, and its place in modules (-1 for a device.yaml without modules), for
// a command that acts on one module. An empty name is the only module, or
// the one named default. The modules list is checked first, so that a
// module without a plugin is named as the agent names it.
func (c *Config) PickModule(name string) (ModuleConfig, int, error) {
	if err := c.CheckModules(); err != nil {
		return ModuleConfig{}, 0, err
	}
	mods := c.ModuleList()
	names := make([]string, len(mods))
	for i, m := range mods {
		names[i] = m.Name
	}
	at := func(i int) int {
		if len(c.Modules) == 0 {
			return -1
		}
		return i
	}
	if name == "" {
		if len(mods) == 1 {
			return mods[0], at(0), nil
		}
		name = cloud.DefaultModule
		if !slices.Contains(names, name) {
			return ModuleConfig{}, 0, fmt.Errorf("%s lists the modules %s: pick one with --module NAME", c.File(), strings.Join(names, ", "))
		}
	}
	for i, m := range mods {
		if m.Name == name {
			return m, at(i), nil
		}
	}
	hint := ""
	if s := spell.Nearest(name, names); s != "" {
		hint = " (did you mean " + s + "?)"
	}
	return ModuleConfig{}, 0, fmt.Errorf("%s: no module %q%s: the modules are %s", c.File(), name, hint, strings.Join(names, ", "))
}
