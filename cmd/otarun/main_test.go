package main

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/otaport/otaport/cmd/internal/cli/clitest"
)

// TestRun_CommandSelection checks which command otarun runs for a command
// line, by the message each one gives for a missing file.
func TestRun_CommandSelection(t *testing.T) {
	cases := []struct {
		name     string
		args     []string
		wantCode int
		wantOut  string // in stdout
		wantErr  string // in stderr
	}{
		{"no arguments is usage", nil, 2, "", "Run 'otarun --help' for usage."},
		{"help goes to stdout", []string{"--help"}, 0, "Usage:\n  otarun [flags]", ""},
		{"a command's help", []string{"install", "--help"}, 0, "otarun install --key pub.pem SOURCE [flags]", ""},
		{"agent flags without the command name go to the agent", []string{"--plugin", "p", "--config", "/no/such/device.yaml"}, 1, "", "otarun: device configuration"},
		{"the agent command", []string{"agent", "--plugin", "p", "--config", "/no/such/device.yaml"}, 1, "", "otarun agent: device configuration"},
		{"global flags before the command are kept", []string{"--plugin", "/no/such/plugin", "info"}, 1, "", "port plugin /no/such/plugin"},
		{"global flags after the command", []string{"info", "--plugin", "/no/such/plugin"}, 1, "", "port plugin /no/such/plugin"},
		{"flags after the source", []string{"install", "v1.img", "--key", "k.pem", "--plugin", "/no/such/plugin"}, 1, "", "otarun install: --key: read key: open k.pem"},
		{"an unknown command is refused, not taken as an argument of the agent", []string{"--plugin", "p", "frobnicate"}, 2, "", `unknown command "frobnicate" for "otarun"`},
		{"a mistyped command is suggested", []string{"--plugin", "p", "stauts"}, 2, "", "did you mean status?"},
		{"the version", []string{"--version"}, 0, "otarun version ", ""},
		{"--module needs --config", []string{"status", "--module", "wifi"}, 2, "", "otarun status: --module wifi: give the device.yaml that lists the device's modules with --config FILE"},
		{"a missing --config of a command", []string{"install", "v2.img", "--config", "/no/such/device.yaml"}, 1, "", "otarun install: device configuration: open /no/such/device.yaml"},
		{"help on a mistyped command", []string{"help", "stauts"}, 2, "", `unknown command "stauts" for "otarun"; did you mean status?`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			code := run(context.Background(), tc.args, &out, &errb)
			if code != tc.wantCode {
				t.Errorf("exit %d, want %d; stderr:\n%s", code, tc.wantCode, errb.String())
			}
			if !strings.Contains(out.String(), tc.wantOut) {
				t.Errorf("stdout does not mention %q:\n%s", tc.wantOut, out.String())
			}
			if !strings.Contains(errb.String(), tc.wantErr) {
				t.Errorf("stderr does not mention %q:\n%s", tc.wantErr, errb.String())
			}
		})
	}
}

// TestReference keeps the otarun section of docs/cli.md equal to the commands.
func TestReference(t *testing.T) { clitest.CheckReference(t, newRoot()) }
