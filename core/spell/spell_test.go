package spell

import "testing"

func TestNearest(t *testing.T) {
	known := []string{"broker", "identity", "health_check", "public_keys", "report_interval"}
	tests := []struct{ in, want string }{
		{"helth_check", "health_check"},
		{"Broker", "broker"},
		{"brokr", "broker"},
		{"public_key", "public_keys"},
		{"reportinterval", "report_interval"},
		{"colour", ""},
		{"x", ""},
	}
	for _, tt := range tests {
		if got := Nearest(tt.in, known); got != tt.want {
			t.Errorf("Nearest(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
