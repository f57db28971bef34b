package powercut

import (
	"context"
	"errors"
	"fmt"

	"github.com/otaport/otaport/core/boot"
	"github.com/otaport/otaport/core/engine"
	"github.com/otaport/otaport/core/flash"
	"github.com/otaport/otaport/core/hal"
	"github.com/otaport/otaport/ports/cport"
)

// agent is the software that runs on the device after a power-on, as the
// device agent runs it: the board's platform and the engine over it,
// keeping its state in the platform's key-value store.
type agent struct {
	f   *fixture
	pl  port
	eng *engine.Engine
}

// port is the board's platform as the engine uses it: core/boot's (the Go
// port) or the C port's (ports/cport), Config.CPort.
type port interface {
	hal.Platform
	hal.KV
}

// attach starts the software on dev without a reboot: a platform (which
// reads the params partition and writes nothing) and an engine.
func (f *fixture) attach(dev flash.Device) (*agent, error) {
	var pl port
	var err error
	if f.cport {
		pl, err = cport.New(f.layout, dev, f.bootOpts)
	} else {
		pl, err = boot.NewPlatform(f.layout, dev, f.bootOpts)
	}
	if err != nil {
		return nil, fmt.Errorf("platform: %w", err)
	}
	eng, err := engine.New(pl, pl, engine.Options{
		Keys:            f.keys,
		HTTPClient:      f.http,
		ChunkSize:       f.chunk,
		CheckpointEvery: f.checkpoint,
		Retries:         -1,
		Logger:          f.log,
		DecryptKey:      f.decKey,
	})
	if err != nil {
		return nil, err
	}
	return &agent{f: f, pl: pl, eng: eng}, nil
}

// install installs the new image from its file, up to Installed.
func (a *agent) install(ctx context.Context) error {
	return a.eng.Install(ctx, engine.Source{URL: a.f.newFile, Version: NewVersion})
}

// resume continues an interrupted install; with nothing to resume it
// installs afresh.
func (a *agent) resume(ctx context.Context) error {
	err := a.eng.Resume(ctx)
	if errors.Is(err, engine.ErrNothingToResume) {
		return a.install(ctx)
	}
	return err
}

// recover runs the engine's recovery and returns its status.
func (a *agent) recover(ctx context.Context) (engine.Status, error) {
	return a.eng.Recover(ctx)
}

// downloaded returns the first n bytes of the update slot: what a
// checkpoint of n bytes says holds the image's first n bytes.
func (a *agent) downloaded(ctx context.Context, n int64) ([]byte, error) {
	return a.pl.Read(ctx, 0, int(n))
}

func (a *agent) confirm(ctx context.Context) error  { return a.eng.Confirm(ctx) }
func (a *agent) rollback(ctx context.Context) error { return a.eng.Rollback(ctx) }

// state returns the engine's state.
func (a *agent) state(ctx context.Context) (string, error) {
	st, err := a.eng.Status(ctx)
	return string(st.State), err
}
