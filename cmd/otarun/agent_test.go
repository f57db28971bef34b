package main

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/otaport/otaport/cmd/internal/cli"
	"github.com/otaport/otaport/core/agent"
	"github.com/otaport/otaport/core/event"
)

func TestAgentConfig_FlagsOverrideFile(t *testing.T) {
	dir := t.TempDir()
	cfgFile := filepath.Join(dir, "device.yaml")
	os.WriteFile(cfgFile, []byte(`broker: tcp://127.0.0.1:1883
identity: {product_key: pk, device_name: dev, device_secret_file: secret}
public_keys: [pub.pem]
order_key: order.pub
health_check: {command: [true], timeout: 3s}
`), 0o644)
	f := &agentFlags{config: cfgFile, broker: "tcp://127.0.0.1:2883", deviceSecret: "s", healthCmd: "exit 0",
		reportInterval: 2 * time.Second, keys: []string{"other.pem"}}
	cfg, err := agentConfig(f)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Broker != "tcp://127.0.0.1:2883" {
		t.Errorf("broker %s: the flag should win", cfg.Broker)
	}
	if cfg.Identity.DeviceSecret != "s" || cfg.Identity.DeviceSecretFile != "" {
		t.Errorf("secret %q file %q: --device-secret should replace the file", cfg.Identity.DeviceSecret, cfg.Identity.DeviceSecretFile)
	}
	if got := strings.Join(cfg.HealthCheck.Command, " "); got != "sh -c exit 0" {
		t.Errorf("health command %q", got)
	}
	if cfg.HealthCheck.Timeout != agent.Duration(3*time.Second) {
		t.Errorf("health timeout %v: the file's should stay", cfg.HealthCheck.Timeout)
	}
	if len(cfg.PublicKeys) != 1 || cfg.PublicKeys[0] != "other.pem" {
		t.Errorf("keys %v: --key should replace public_keys", cfg.PublicKeys)
	}
	if cfg.Identity.ProductKey != "pk" {
		t.Errorf("product key %q: the file's should stay", cfg.Identity.ProductKey)
	}
}

func TestAgentConfig_MissingSettingsIsUsage(t *testing.T) {
	_, err := agentConfig(&agentFlags{broker: "tcp://127.0.0.1:1883"})
	if !errors.Is(err, cli.ErrUsage) || !strings.Contains(err.Error(), "identity") || !strings.Contains(err.Error(), "public_keys") {
		t.Errorf("error %v, want a usage error naming identity and public_keys", err)
	}
}

func TestAgentView(t *testing.T) {
	events := []agent.Event{
		{Kind: event.Order, Order: 7, Version: "1.1.0"},
		{Kind: event.Progress, Percent: 5, Offset: 5, Total: 100},
		{Kind: event.Progress, Percent: 12, Offset: 12, Total: 100},
		{Kind: event.Progress, Percent: 100, Offset: 100, Total: 100},
		{Kind: event.Health, Version: "1.1.0+0", Error: "self-test failed"},
	}
	var plain bytes.Buffer
	v := newAgentView(&plain, false, false)
	for _, ev := range events {
		v.event(ev)
	}
	v.close()
	want := "order order 7 1.1.0\ndownload   5% (5 of 100 bytes)\ndownload  12% (12 of 100 bytes)\ndownload 100% (100 of 100 bytes)\nhealth 1.1.0+0: self-test failed\n"
	if plain.String() != want {
		t.Errorf("plain view:\n%s\nwant:\n%s", plain.String(), want)
	}
	var tty bytes.Buffer
	v = newAgentView(&tty, false, true)
	for _, ev := range events {
		v.event(ev)
	}
	if !strings.Contains(tty.String(), "\r[==============================] 100% 100B/100B\nhealth") {
		t.Errorf("terminal view lacks the finished bar before the next line:\n%q", tty.String())
	}
	var js bytes.Buffer
	v = newAgentView(&js, true, true)
	for _, ev := range events {
		v.event(ev)
	}
	lines := strings.Split(strings.TrimSpace(js.String()), "\n")
	if len(lines) != len(events) || !strings.Contains(lines[4], `"event":"health"`) || !strings.Contains(lines[4], `"error":"self-test failed"`) {
		t.Errorf("JSON view: one object per event expected:\n%s", js.String())
	}
}
