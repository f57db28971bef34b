package sequences

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/otaport/otaport/core/agent"
	"github.com/otaport/otaport/core/cloud"
	"github.com/otaport/otaport/core/engine"
	"github.com/otaport/otaport/core/event"
	"github.com/otaport/otaport/core/hal"
	"github.com/otaport/otaport/tests/sequences/model"
)

// An agent step starts the device's agent (a new process on the device:
// `otarun agent`), lets it finish what the engine left, hands it one order
// when the step has one, and stops it once the order has ended. Its health
// check passes or fails as the step drew. The agent's decisions (resume,
// reset into a new image, health check, confirm, roll back, keep, the loop
// guard) are its own; the runner sees them through the port, whose every
// reset, boot request and rollback it hands to the model as it happens.
//
// A power cut during an agent step stops the flash under it: the agent's
// port calls fail from there on, as they do when its port plugin dies,
// and the agent is stopped; the power-on follows as after any cut.

// agentPort is the real platform of the device, seen by the runner on the
// agent's behalf.
type agentPort struct {
	devicePort
	r *runner
	// img is the image of the step's order (nil for a restart).
	img *model.Image
	// installed is set once a boot request for the order's image was
	// accepted; inRow counts resets in a row that changed nothing.
	installed bool
	inRow     int
	v         *model.Violation
}

// violate keeps the first violation the agent step runs into.
func (p *agentPort) violate(v *model.Violation) {
	if v != nil && p.v == nil {
		p.v = v
	}
}

// live reports whether the model is to hear of what the port does: not
// while arm probes the step on a copy of the flash, nor once the power is
// off.
func (p *agentPort) live() bool { return p.r != nil && !p.r.dev.PoweredOff() }

// SetBoot hands accepted requests to the model: a confirm, and the
// request that makes an install (the order's, or a download the agent
// resumed).
func (p *agentPort) SetBoot(ctx context.Context, req hal.BootRequest) error {
	err := p.devicePort.SetBoot(ctx, req)
	if err != nil || !p.live() {
		return err
	}
	switch req.Mode {
	case hal.BootConfirm:
		if run, ok := p.running(ctx); ok {
			p.r.agentResets[run] = 0
		}
		p.violate(p.r.m.Confirm(true))
	case hal.BootTest, hal.BootPermanent:
		v := p.pendingVersion(ctx)
		switch {
		case p.img != nil && v == p.img.Version:
			p.installed = true
			p.violate(p.r.m.Install(*p.img, true))
		case p.r.agentOrder != nil && v == p.r.agentOrder.Version:
			// The order the agent had in hand when it stopped: it
			// carries it out again, an install in its own right.
			p.violate(p.r.m.Install(*p.r.agentOrder, true))
		default:
			p.violate(p.r.m.Resume(true, v))
		}
	}
	return nil
}

// Rollback hands the agent's rollback of a trial image (a failed health
// check) to the model. The engine also cancels a pending request before a
// new install writes its slot; that is part of the install the model
// hears of as a whole.
func (p *agentPort) Rollback(ctx context.Context) error {
	if !p.live() {
		return p.devicePort.Rollback(ctx)
	}
	info, derr := p.devicePort.Describe(ctx)
	other := p.r.otherSlot(p.devicePort)
	err := p.devicePort.Rollback(ctx)
	if derr == nil && info.Boot.Trial && p.live() {
		p.violate(p.r.m.Rollback(err == nil, other))
	}
	return err
}

// Reboot is a reset the agent asked for: the bootloader runs, the model
// checks what boots, and the resets are counted against the bounds the
// agent promises: at most boot_attempts+1 in a row that change nothing,
// at most agent.MaxRebootsPerImage on account of one image across agent
// restarts.
func (p *agentPort) Reboot(ctx context.Context) (hal.RebootResult, error) {
	if !p.live() {
		return p.devicePort.Reboot(ctx)
	}
	before, _ := p.r.observeOn(p.devicePort)
	img := before.EngineImage
	res, err := p.devicePort.Reboot(ctx)
	if !p.live() {
		return res, err
	}
	if err != nil {
		p.violate(p.r.m.Boot(model.Observed{}, err))
		return res, err
	}
	after, oerr := p.r.observeOn(p.devicePort)
	if oerr != nil {
		p.violate(&model.Violation{Rule: "status", Detail: oerr.Error()})
		return res, err
	}
	if res.Version != after.Running {
		p.violate(&model.Violation{Rule: "boot-claim", Detail: fmt.Sprintf("the agent's reset reported %s %s, but %s runs", res.Slot, res.Version, after.Running)})
	}
	p.violate(p.r.m.Boot(after, nil))
	if sameBoot(before, after) {
		p.inRow++
	} else {
		p.inRow = 0
	}
	if limit := max(1, p.r.f.layout.BootAttempts) + 1; p.inRow > limit {
		p.violate(&model.Violation{Rule: "resets-bounded", Detail: fmt.Sprintf("the agent reset the device %d times in a row with nothing changed (at most boot_attempts+1 = %d)", p.inRow, limit)})
	}
	if img != "" {
		p.r.agentResets[img]++
		if n := p.r.agentResets[img]; n > agent.MaxRebootsPerImage {
			p.violate(&model.Violation{Rule: "resets-per-image", Detail: fmt.Sprintf("the agent reset the device %d times on account of %s, across its restarts (at most %d)", n, img, agent.MaxRebootsPerImage)})
		}
	}
	return res, err
}

// sameBoot reports whether a reset left the device as it found it.
func sameBoot(a, b model.Observed) bool {
	if a.Running != b.Running || a.Trial != b.Trial || a.EngineState != b.EngineState || len(a.Slots) != len(b.Slots) {
		return false
	}
	for i := range a.Slots {
		if a.Slots[i] != b.Slots[i] {
			return false
		}
	}
	return true
}

func (p *agentPort) running(ctx context.Context) (string, bool) {
	info, err := p.devicePort.Describe(ctx)
	if err != nil {
		return "", false
	}
	s, ok := info.Boot.Running()
	return s.Version, ok && s.Bootable
}

func (p *agentPort) pendingVersion(ctx context.Context) string {
	info, err := p.devicePort.Describe(ctx)
	if err != nil {
		return ""
	}
	for _, s := range info.Boot.Slots {
		if s.Pending {
			return s.Version
		}
	}
	// A single-bank permanent request of an equal version, or a request
	// the slot state does not show: the running image.
	if s, ok := info.Boot.Running(); ok {
		return s.Version
	}
	return ""
}

// cloudLink is the cloud as the agent of one step sees it: it records the
// reports and tells the runner when the agent waits for orders.
type cloudLink struct {
	mu      sync.Mutex
	idle    chan struct{}
	failed  int // failure reports
	onOrder func(*cloud.Order, []byte)
}

func (l *cloudLink) InformModule(context.Context, string, string) error {
	select {
	case l.idle <- struct{}{}:
	default:
	}
	return nil
}

func (l *cloudLink) Report(_ context.Context, p cloud.Progress) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if p.Params.Step.Failed() {
		l.failed++
	}
	return nil
}

func (l *cloudLink) Close() error { return nil }

// healthFails is the command of a failing health check.
var healthFails = []string{"false"}

// agentRun is what one agent step did, for the runner's checks.
type agentRun struct {
	ended      bool     // the order ended (confirmed, failed, refused)
	refused    bool     // the order was refused before the agent took it in hand
	heldEnded  bool     // the order the agent held before the step ended
	taken      bool     // the step's order was handed to the agent
	refusedOwn bool     // refused from the agent's memory of a failure, or as running already
	rolledBack []string // versions the agent said it rolled back to
	failed     int      // failure reports to the cloud
}

// runAgent runs one agent step on pl: start, finish what was left, take
// the order if any, stop.
func (r *runner) runAgent(pl *agentPort, i int, s step, version string) agentRun {
	ctx, cancel := context.WithTimeout(r.ctx, time.Minute)
	defer cancel()
	link := &cloudLink{idle: make(chan struct{}, 1)}
	var out agentRun
	var mu sync.Mutex
	var order int64 // the step's order, once handed over (under mu)
	// The sentinel is an order the agent refuses at once (its version
	// does not parse), sent after the step's: the agent takes orders one
	// at a time, so its refusal means the step's order is behind it,
	// whatever became of it (even an order the agent could not record).
	sentinel := int64(1<<40 + i)
	settled := make(chan struct{}, 1)
	cfg := agent.Config{
		Broker:   "tcp://127.0.0.1:1",
		Identity: agent.IdentityConfig{ProductKey: "seq", DeviceName: r.f.name, DeviceSecret: "seq"},
		// The runner's cloud sends unsigned orders (signed ones are
		// core/agent's tests): said, so the agent is not in the
		// migration mode of a device.yaml from before signed orders.
		SignedOrders: new(bool),
	}
	if !s.healthy {
		cfg.HealthCheck.Command = healthFails
	}
	a, err := agent.New(agent.Options{
		Config: cfg, Port: pl, Keys: r.f.keys, HTTPClient: r.f.http,
		Dial: func(_ context.Context, cc cloud.Config) (agent.Link, error) {
			link.onOrder = cc.OnOrder
			return link, nil
		},
		OnEvent: func(ev agent.Event) {
			mu.Lock()
			defer mu.Unlock()
			switch ev.Kind {
			case event.RolledBack:
				out.rolledBack = append(out.rolledBack, ev.Version)
			case event.Refused:
				if ev.Order == order && order != 0 {
					out.refusedOwn = out.refusedOwn || strings.HasPrefix(ev.Message, "not retried") || strings.HasPrefix(ev.Message, "already running")
					out.refused = true
				}
				fallthrough
			case event.Confirmed, event.Failed:
				if ev.Order != 0 && ev.Order == r.heldID {
					out.heldEnded = true
				}
				if ev.Order != 0 && ev.Order == order {
					out.ended = true
				}
			}
			if ev.Kind == event.Refused && ev.Order == sentinel {
				// Said before the sentinel's own failure report goes
				// out: what the link counted is the order's.
				link.mu.Lock()
				out.failed = link.failed
				link.mu.Unlock()
				settled <- struct{}{}
			}
		},
		Engine: engine.Options{ChunkSize: 1024, CheckpointEvery: 2048, Retries: -1, RetryBackoff: time.Millisecond},
	})
	if err != nil {
		panic(err) // options this file gets wrong
	}
	ran := make(chan error, 1)
	go func() { ran <- a.Run(ctx) }()
	select {
	case <-link.idle:
	case <-ran:
		// Stopped before it waited for orders (its port failed).
		return out
	}
	if s.kind == stepAgentOrder {
		path, size := r.imagePath(s.img, version)
		o := &cloud.Order{ID: int64(i + 1), Data: cloud.OrderData{Version: version, URL: path, Size: size}}
		if pl.live() {
			r.agentResets[version] = 0 // a new order starts afresh, as the agent's guard does
		}
		mu.Lock()
		order = o.ID
		out.taken = true
		mu.Unlock()
		// Failures reported so far were of the order the agent held
		// before: count this order's alone.
		link.mu.Lock()
		link.failed = 0
		link.mu.Unlock()
		link.onOrder(o, nil)
		link.onOrder(&cloud.Order{ID: sentinel, Data: cloud.OrderData{Version: "sentinel", URL: path, Size: size}}, nil)
		select {
		case <-settled:
		case <-ran:
			link.mu.Lock()
			out.failed = link.failed
			link.mu.Unlock()
			return out
		}
	}
	cancel()
	<-ran
	mu.Lock()
	defer mu.Unlock()
	if s.kind != stepAgentOrder {
		out.failed = 0 // no order of the step's to count for
	}
	return out
}

// agentStep runs agent step i, s, and checks what it claims. installed
// says whether a boot request for the order's image was accepted.
func (r *runner) agentStep(pl devicePort, i int, s step, version string, im *model.Image) (v *model.Violation, installed bool) {
	ap := &agentPort{devicePort: pl, r: r, img: im}
	res := r.runAgent(ap, i, s, version)
	v, installed = r.checkAgent(ap, res, s, im), ap.installed
	if res.heldEnded {
		r.agentOrder, r.heldID = nil, 0
	}
	if s.kind == stepAgentOrder && !res.refused && !res.ended && res.taken {
		// Taken in hand and not finished: the agent holds it.
		r.agentOrder, r.heldID = im, int64(i+1)
	}
	return v, installed
}

func (r *runner) checkAgent(ap *agentPort, res agentRun, s step, im *model.Image) *model.Violation {
	if ap.v != nil {
		return ap.v
	}
	if r.dev.PoweredOff() {
		return nil
	}
	if s.kind == stepAgentOrder && res.ended && !ap.installed && !res.refusedOwn && im != nil {
		// The order ended without a boot request for its image: refused
		// or failed before it; the model says whether it had to be.
		if v := r.m.Install(*im, false); v != nil {
			return v
		}
	}
	if res.failed > 1 {
		return &model.Violation{Rule: "report-once", Detail: fmt.Sprintf("the agent reported %d failures for one order", res.failed)}
	}
	obs, err := r.observe()
	if err != nil {
		return &model.Violation{Rule: "status", Detail: err.Error()}
	}
	if obs.EngineState != "downloading" && obs.EngineState != "verifying" {
		// The agent finishes what the engine left, a download the user
		// started included: whatever it made of it, nothing is left
		// for a resume.
		if v := r.m.Resume(false, ""); v != nil {
			return v
		}
	}
	for _, v := range res.rolledBack {
		if !r.f.layout.Scheme.Reverts() {
			return &model.Violation{Rule: "claim-rollback", Detail: fmt.Sprintf("the agent said it rolled back to %s on a %s board", v, r.f.layout.Scheme)}
		}
		if v != obs.Running {
			return &model.Violation{Rule: "claim-rollback", Detail: fmt.Sprintf("the agent said it rolled back to %s, but %s runs", v, obs.Running)}
		}
	}
	return nil
}

// imagePath returns the path of an agent order's image and its size.
func (r *runner) imagePath(k imageKind, version string) (string, int64) {
	path, err := r.f.image(k, version)
	if err != nil {
		panic(err) // the fixture's own failure, not the device's
	}
	fi, err := os.Stat(path)
	if err != nil {
		panic(err)
	}
	return path, fi.Size()
}
