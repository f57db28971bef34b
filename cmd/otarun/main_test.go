package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// TestRun_CommandSelection checks which command otarun runs for a command
// line, by the message each one gives for a missing file.
func TestRun_CommandSelection(t *testing.T) {
	cases := []struct {
		name     string
		args     []string
		wantCode int
		wantErr  string
	}{
		{"no arguments is usage", nil, 2, "usage: otarun"},
		{"help is usage", []string{"--help"}, 0, "usage: otarun"},
		{"agent flags without the command name go to the agent", []string{"--plugin", "p", "--config", "/no/such/device.yaml"}, 1, "otarun agent: device configuration"},
		{"global flags before the command are kept", []string{"--plugin", "/no/such/plugin", "info"}, 1, "port plugin /no/such/plugin"},
		{"global flags after the command", []string{"info", "--plugin", "/no/such/plugin"}, 1, "port plugin /no/such/plugin"},
		{"an unknown command is refused as an argument of the agent", []string{"--plugin", "p", "frobnicate"}, 2, `unexpected argument "frobnicate"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			code := run(context.Background(), tc.args, &out, &errb)
			if code != tc.wantCode {
				t.Errorf("exit %d, want %d; stderr:\n%s", code, tc.wantCode, errb.String())
			}
			if !strings.Contains(errb.String(), tc.wantErr) {
				t.Errorf("stderr does not mention %q:\n%s", tc.wantErr, errb.String())
			}
		})
	}
}
