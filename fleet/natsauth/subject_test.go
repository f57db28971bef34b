package natsauth

import (
	"slices"
	"testing"
)

func TestSubject(t *testing.T) {
	tests := []struct{ topic, want string }{
		{"/ota/device/upgrade/a1Prod/dev-1", "/.ota.device.upgrade.a1Prod.dev-1"},
		{"/ota/device/upgrade/a1Prod/dev.3", "/.ota.device.upgrade.a1Prod.dev//3"},
		{"/otaport/release/+", "/.otaport.release.*"},
		{"/ota/device/#", "/.ota.device.>"},
		{"a//b", "a./.b"},
		{"a/", "a./"},
		{"/", "/./"},
		{"plain", "plain"},
		{"/ota/device/upgrade/pk/dev 1", ""},
		{"/ota/device/upgrade/pk/a*b", ""},
		{"/ota/device/upgrade/pk/a>", ""},
		{"/ota/#/x", ""},
		{"", ""},
	}
	for _, tt := range tests {
		got, err := Subject(tt.topic)
		if tt.want == "" {
			if err == nil {
				t.Errorf("Subject(%q) = %q, want an error", tt.topic, got)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("Subject(%q) = %q, %v; want %q", tt.topic, got, err, tt.want)
		}
	}
}

func TestPermissions_MultiLevelFilterIncludesItsParent(t *testing.T) {
	got, err := permissions([]string{"/ota/device/#", "/otaport/keyset/+"})
	want := []string{"/.ota.device.>", "/.ota.device", "/.otaport.keyset.*"}
	if err != nil || !slices.Equal(got, want) {
		t.Errorf("permissions = %q, %v; want %q", got, err, want)
	}
}
