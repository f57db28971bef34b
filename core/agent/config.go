package agent

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
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
)

// Config is the device agent's configuration, as device.yaml holds it:
//
//	broker: tcp://127.0.0.1:1883
//	identity: {product_key: demo, device_name: dev-1, device_secret: s3cret}
//	ca: ca.pem
//	public_keys: [pub.pem]
//	health_check: {command: [sh, -c, "exit 0"], timeout: 10s}
//	report_interval: 5s
//
// Relative file names are relative to the directory of device.yaml.
type Config struct {
	// Broker is the MQTT broker's URL: tcp://host:port, or ssl://host:port
	// for TLS.
	Broker string `yaml:"broker"`
	// Identity is the device's triple as the cloud issued it.
	Identity IdentityConfig `yaml:"identity"`
	// CA is a PEM file of the CAs that sign the broker's and the firmware
	// server's certificates; empty means the system's.
	CA string `yaml:"ca"`
	// PublicKeys are PEM files of the keys images must be signed with.
	PublicKeys []string `yaml:"public_keys"`
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
	// Module is the module reported in inform and progress (newer SDKs);
	// empty for the default module.
	Module string `yaml:"module"`
	// SignForm is the layout of the MQTT sign-in: "doc" (the default: the
	// platform documentation's, signed with the current time) or "sdk" (the
	// C SDK v3's, signed with its fixed timestamp, so the password never
	// changes: what a broker with a static password file, such as
	// Mosquitto with mosquitto_passwd, can check).
	SignForm string `yaml:"sign_form"`

	// file is where the configuration was read from, for error messages.
	file string
}

// IdentityConfig is the identity part of device.yaml.
type IdentityConfig struct {
	ProductKey   string `yaml:"product_key"`
	DeviceName   string `yaml:"device_name"`
	DeviceSecret string `yaml:"device_secret"`
	// DeviceSecretFile holds the secret instead of device.yaml (one line).
	DeviceSecretFile string `yaml:"device_secret_file"`
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
	c.Identity.DeviceSecretFile = rel(c.Identity.DeviceSecretFile)
	for i, k := range c.PublicKeys {
		c.PublicKeys[i] = rel(k)
	}
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
	} else if u, err := url.Parse(c.Broker); err != nil || u.Host == "" {
		bad("broker", "%q is not a URL such as tcp://127.0.0.1:1883 or ssl://host:8883", c.Broker)
	} else {
		switch u.Scheme {
		case "tcp", "mqtt", "ssl", "tls", "mqtts":
		default:
			bad("broker", "%q: scheme %q; use tcp:// or ssl://", c.Broker, u.Scheme)
		}
	}
	id := c.Identity
	if err := cloud.CheckIdentity(id.ProductKey, id.DeviceName); err != nil {
		bad("identity", "%v (identity.product_key and identity.device_name, or --product-key and --device-name)", err)
	}
	if id.DeviceSecret == "" && id.DeviceSecretFile == "" {
		bad("identity.device_secret", "not set: give the secret issued with the device (or identity.device_secret_file, --device-secret)")
	}
	if id.DeviceSecret != "" && id.DeviceSecretFile != "" {
		bad("identity.device_secret_file", "set together with identity.device_secret: keep one")
	}
	if len(c.PublicKeys) == 0 {
		bad("public_keys", "none: list the PEM public key(s) images are signed with (--key pub.pem)")
	}
	for i, k := range c.PublicKeys {
		if strings.TrimSpace(k) == "" {
			bad(fmt.Sprintf("public_keys[%d]", i), "empty file name")
		}
	}
	if h := c.HealthCheck; len(h.Command) == 0 && h.Timeout != 0 {
		bad("health_check.timeout", "set without health_check.command")
	} else if len(h.Command) > 0 && strings.TrimSpace(h.Command[0]) == "" {
		bad("health_check.command", "the program name (first element) is empty")
	}
	if c.ReportInterval != 0 && time.Duration(c.ReportInterval) < 100*time.Millisecond {
		bad("report_interval", "%v is too short: progress would flood the broker; use 1s or more", c.ReportInterval)
	}
	switch c.SignForm {
	case "", "doc", "sdk":
	default:
		bad("sign_form", "%q: use doc (the default) or sdk", c.SignForm)
	}
	if k := time.Duration(c.KeepAlive); k != 0 && (k < cloud.MinKeepAlive || k > cloud.MaxKeepAlive) {
		bad("keep_alive", "%v: the platform accepts %v to %v", k, cloud.MinKeepAlive, cloud.MaxKeepAlive)
	}
	return errors.Join(errs...)
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
