package portgen

import (
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

func TestSize_UnmarshalYAML(t *testing.T) {
	var v struct {
		A Size `yaml:"a"`
		B Size `yaml:"b"`
		C Size `yaml:"c"`
	}
	if err := yaml.Unmarshal([]byte("a: 4KiB\nb: 0x1000\nc: 4096\n"), &v); err != nil {
		t.Fatal(err)
	}
	if v.A != 4096 || v.B != 4096 || v.C != 4096 {
		t.Errorf("got %d %d %d, want 4096 each", v.A, v.B, v.C)
	}
	if err := yaml.Unmarshal([]byte("a: 4KB\n"), &v); err == nil || !strings.Contains(err.Error(), "KiB") {
		t.Errorf("4KB: error %v, want one that says KiB", err)
	}
	if err := yaml.Unmarshal([]byte("a: [1]\n"), &v); err == nil {
		t.Error("a list decoded as a size")
	}
}
