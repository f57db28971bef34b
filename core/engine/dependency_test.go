package engine_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/otaport/otaport/core/engine"
	"github.com/otaport/otaport/core/image"
)

// TestInstall_Dependencies: an image with DEPENDENCY TLVs is installed only
// when Options.Dependencies accepts them, is refused with its reason before
// the boot request when it does not, and is refused by an engine that
// cannot see the device's other images.
func TestInstall_Dependencies(t *testing.T) {
	ctx := context.Background()
	const board = "nucleo-h743zi"
	d := newDevice(t, board, boardKeys(t, board))
	d.factory("1.0.0", 32<<10)
	deps := []image.Dependency{{ImageID: 1, MinVersion: image.Version{Major: 2}}}
	ver, _ := image.ParseVersion("1.1.0")
	cnt := uint32(2)
	img, err := image.Sign(payload(32<<10, 11), d.keys.priv, image.SignOptions{Version: ver, SecurityCounter: &cnt, Dependencies: deps})
	if err != nil {
		t.Fatal(err)
	}
	src := engine.Source{URL: writeFile(t, img)}

	err = d.engine(engine.Options{}).Install(ctx, src)
	if !errors.Is(err, engine.ErrRefused) || !strings.Contains(err.Error(), "cannot see the device's other images") {
		t.Fatalf("no dependency check: got %v, want a refusal", err)
	}
	unmet := errors.New("module wifi runs 1.0.0")
	var asked []image.Dependency
	err = d.engine(engine.Options{Dependencies: func(_ context.Context, ds []image.Dependency) error { asked = ds; return unmet }}).Install(ctx, src)
	if !errors.Is(err, engine.ErrRefused) || !errors.Is(err, unmet) || len(asked) != 1 || asked[0] != deps[0] {
		t.Fatalf("unmet dependency: got %v (asked %v), want a refusal wrapping the checker's reason", err, asked)
	}
	d.expectRuns("1.0.0+0")
	if err := d.engine(engine.Options{Dependencies: func(context.Context, []image.Dependency) error { return nil }}).Install(ctx, src); err != nil {
		t.Fatalf("met dependency: %v", err)
	}
	d.expectRuns("1.1.0+0")
}
