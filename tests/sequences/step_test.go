package sequences

import (
	"fmt"
	"math/rand/v2"
	"strings"

	"github.com/otaport/otaport/core/flash"
)

// stepKind is a command a user types.
type stepKind int

const (
	stepInstall stepKind = iota
	stepResume
	stepBoot
	stepConfirm
	stepRollback
	stepStatus
	stepAgentOrder   // the agent starts, takes an order, stops
	stepAgentRestart // the agent starts, finishes what was left, stops
	stepKeySet       // otarun keyset: the next key set of the chain
)

func (k stepKind) String() string {
	return [...]string{"install", "resume", "boot", "confirm", "rollback", "status", "agent-order", "agent-restart", "keyset"}[k]
}

// imageKind is what is wrong, if anything, with an image offered to
// install.
type imageKind int

const (
	imgGood      imageKind = iota // newer, signed, intact, fits
	imgTampered                   // a payload bit flipped after signing
	imgOversized                  // one byte larger than the board takes
	imgWrongKey                   // signed with a key the device does not trust
	imgDowngrade                  // older than anything installed, no --allow-downgrade
	imgEqual                      // the running version, no --allow-downgrade
	imgAllowed                    // older, with --allow-downgrade
	imgWrongAlg                   // signed with a trusted key of another algorithm than the board's
	imgDelta                      // a delta image (otaimg diff) from the factory image to a newer one
)

func (k imageKind) String() string {
	return [...]string{"good", "tampered", "oversized", "wrong-key", "downgrade", "equal-version", "downgrade-allowed", "wrong-algorithm", "delta"}[k]
}

// file is the prefix of the image's file name.
func (k imageKind) file() string {
	return [...]string{"app", "tampered", "big", "wrongkey", "old", "same", "app", "otheralg", "delta"}[k]
}

// step is one command of a sequence. Everything random about it is drawn
// when the sequence is made, so that a step means the same thing when the
// steps around it are removed by shrinking.
type step struct {
	kind    stepKind
	img     imageKind
	version string // for install; "" for imgEqual (the running version)
	// healthy: the agent's health check passes (agent steps).
	healthy bool
	// keySet is the version of the key set a keyset step offers
	// (fixture.keySet).
	keySet int
	cut    cut
}

// cut is a power cut drawn for a step. Where it falls is a fraction of
// the flash operations the command makes, which depend on the device's
// history: a fixed operation number would miss a command that makes fewer
// operations, and a fraction keeps its meaning when shrinking removes
// steps before it.
type cut struct {
	on   bool
	frac float64 // in [0, 1): the cut is at operation 1 + frac*N of N
	when flash.CutWhen
	seed uint64
}

// label is the step's kind for the counts: install:good, boot, ...
func (s step) label() string {
	switch s.kind {
	case stepInstall:
		return "install:" + s.img.String()
	case stepAgentOrder:
		return "agent-order:" + s.img.String() + health(s.healthy)
	case stepAgentRestart:
		return "agent-restart" + health(s.healthy)
	}
	return s.kind.String()
}

func health(ok bool) string {
	if ok {
		return ""
	}
	return ":unhealthy"
}

// versions hands out the versions of a sequence: good and faulty new
// images take 1.0.N, allowed downgrades 0.1.N, refused downgrades 0.0.N,
// each once, so that "installed since" has one meaning per version.
type versions struct{ newer, allowed, older int }

func (v *versions) next(k imageKind) string {
	switch k {
	case imgEqual:
		return ""
	case imgAllowed:
		v.allowed++
		return fmt.Sprintf("0.1.%d+0", v.allowed)
	case imgDowngrade:
		v.older++
		return fmt.Sprintf("0.0.%d+0", v.older)
	}
	v.newer++
	return fmt.Sprintf("1.0.%d+0", v.newer)
}

// share is an image kind drawn with y < upTo of a draw in [0, 100).
type share struct {
	upTo int
	img  imageKind
}

// userImages are what a user offers otarun install; orderImages what the
// cloud orders: mostly good images, some that fail on the device, never an
// allowed downgrade (the agent does not allow downgrades here, as
// device.yaml's default).
var (
	userImages = []share{{40, imgGood}, {45, imgDelta}, {55, imgTampered}, {65, imgOversized}, {70, imgWrongKey}, {75, imgWrongAlg},
		{83, imgDowngrade}, {91, imgEqual}, {100, imgAllowed}}
	orderImages = []share{{65, imgGood}, {70, imgDelta}, {80, imgTampered}, {85, imgWrongKey}, {90, imgWrongAlg}, {95, imgDowngrade}, {100, imgEqual}}
)

// draw draws an image kind by its shares.
func draw(r *rand.Rand, shares []share) imageKind {
	y := r.IntN(100)
	for _, s := range shares {
		if y < s.upTo {
			return s.img
		}
	}
	return shares[len(shares)-1].img
}

// generate draws a sequence of n steps from seed. The weights favour what
// moves the device (installs, boots) and keep one step in three under a
// power cut, a third of those torn.
func generate(seed uint64, n int) []step {
	r := rand.New(rand.NewPCG(seed, 0x5e9))
	var vs versions
	var keySets int
	steps := make([]step, 0, n)
	for range n {
		var s step
		switch x := r.IntN(100); {
		case x < 34:
			s.kind = stepInstall
			s.img = draw(r, userImages)
			s.version = vs.next(s.img)
		case x < 39:
			s.kind = stepResume
		case x < 66:
			s.kind = stepBoot
		case x < 77:
			s.kind = stepConfirm
		case x < 88:
			s.kind = stepRollback
		case x < 92:
			s.kind = stepStatus
		case x < 94:
			s.kind = stepKeySet
			keySets++
			s.keySet = keySets
		case x < 97:
			s.kind = stepAgentOrder
			s.img = draw(r, orderImages)
			s.version = vs.next(s.img)
			s.healthy = r.IntN(5) < 3
		default:
			s.kind = stepAgentRestart
			s.healthy = r.IntN(5) < 3
		}
		if s.kind != stepStatus && r.IntN(3) == 0 {
			// The range a cut is drawn from follows how many flash
			// operations the command makes, so that most cuts land in
			// it: an install of these images a dozen or two, a boot a
			// few (a copy more), a confirm or a rollback one or two.
			// Now and then a wide range reaches a rare long command
			// (the params log compacting, a long copy).
			s.cut = cut{on: true, frac: r.Float64(), when: flash.CutWhen(r.IntN(3)), seed: r.Uint64()}
		}
		steps = append(steps, s)
	}
	return steps
}

// otarun returns the commands that reproduce steps on board b, as a user
// would type them; a power cut, which otarun cannot make, is a comment on
// the command it interrupts, followed by the power-on that comes after it.
func otarun(f *fixture, steps []step, fl *failure) string {
	var b strings.Builder
	fmt.Fprintf(&b, "  # board %s (%s, boot_attempts %d); the device trusts pub.pem (%s, the board's image.signature) and alien.pem (%s)\n",
		f.name, f.layout.Scheme, max(1, f.layout.BootAttempts), f.layout.Signature, f.alienType)
	fmt.Fprintf(&b, "  export OTARUN_PLUGIN=bin/otaport-%s OTAPORT_FLASH=seq.flash OTARUN_KEY=pub.pem,alien.pem\n", f.name)
	fmt.Fprintf(&b, "  otarun provision --flash seq.flash --key pub.pem --key alien.pem %s\n", imageName(imgGood, factoryVersion))
	for i, s := range steps {
		var cmd string
		switch s.kind {
		case stepInstall:
			v := s.version
			if s.img == imgEqual && i < len(fl.equal) {
				v = fl.equal[i]
			}
			flags := ""
			if s.img == imgAllowed {
				flags = "--allow-downgrade "
			}
			cmd = fmt.Sprintf("otarun install %s%s", flags, imageName(s.img, v))
			if s.img != imgGood && s.img != imgAllowed {
				cmd += "   # " + s.img.String()
				switch s.img {
				case imgWrongKey:
					cmd += " (signed with another key)"
				case imgWrongAlg:
					cmd += " (signed with alien.pem)"
				case imgDelta:
					cmd += fmt.Sprintf(" (otaimg diff %s %s)", imageName(imgGood, factoryVersion), imageName(imgGood, v))
				}
			}
		case stepResume:
			cmd = "otarun install --resume"
		case stepKeySet:
			cmd = fmt.Sprintf("otarun keyset %s   # %s", keySetName(s.keySet), keySetDesc(s.keySet))
		case stepAgentOrder, stepAgentRestart:
			cmd = "otarun agent --config device.yaml   # health check " + map[bool]string{true: "passes", false: "fails"}[s.healthy]
			if s.kind == stepAgentOrder {
				v := s.version
				if s.img == imgEqual && i < len(fl.equal) {
					v = fl.equal[i]
				}
				cmd += fmt.Sprintf("; the cloud orders %s (%s); stopped when the order ends", imageName(s.img, v), s.img)
			} else {
				cmd += "; stopped once it waits for orders"
			}
		default:
			cmd = "otarun " + s.kind.String()
		}
		switch {
		case s.cut.on && i < len(fl.fired) && fl.fired[i]:
			cmd += fmt.Sprintf("   # power cut %s flash operation %d (seed %#x), then:\n  otarun boot", s.cut.when, fl.cutAt[i], s.cut.seed)
		case s.cut.on:
			cmd += "   # then the power goes off and on:\n  otarun boot"
		}
		fmt.Fprintf(&b, "  %s\n", cmd)
	}
	b.WriteString("  otarun status\n")
	return b.String()
}
