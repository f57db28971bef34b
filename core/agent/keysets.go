package agent

import (
	"context"
	"fmt"
	"time"

	"github.com/otaport/otaport/core/event"
	"github.com/otaport/otaport/core/hal"
	"github.com/otaport/otaport/core/keyset"
)

// Key sets (core/keyset) come on the product's key set topic as a chain,
// oldest first. Each module takes, in order, the sets newer than its own
// through its engine, which checks them against the module's current trust
// and keeps them in the port's params; a module's version reports then say
// which version it holds. A set the port cannot take yet (a trial or a boot
// request is pending, or the running image is signed with a key the set
// drops) is tried again until it is taken or a newer chain comes.

// keySetLink is a Link whose version reports can carry a module's key set
// version; *cloud.Client is one.
type keySetLink interface {
	SetKeySetVersion(module string, v uint64)
}

// keySetRetry is how often a chain that a module could not take yet is
// tried again.
const keySetRetry = 30 * time.Second

// keySetsTurn offers chain to every module, and returns when to offer it
// again: nil when every module is done with it. Run calls it for each chain
// that comes and at each retry.
func (a *Agent) keySetsTurn(ctx context.Context, link Link, chain [][]byte) <-chan time.Time {
	if a.applyKeySets(ctx, link, chain) {
		return nil
	}
	return time.After(keySetRetry)
}

// applyKeySets offers chain to every module; it reports whether every
// module is done with it (took it, or refused it for good).
func (a *Agent) applyKeySets(ctx context.Context, link Link, chain [][]byte) bool {
	done := true
	for _, u := range a.units {
		took, again := u.applyKeySets(ctx, chain)
		done = done && !again
		if took == 0 {
			continue
		}
		if kl, ok := link.(keySetLink); ok {
			kl.SetKeySetVersion(u.module, took)
		}
		select { // the next version report says it
		case u.reconnect <- struct{}{}:
		default:
		}
	}
	return done
}

// applyKeySets takes the sets of chain newer than the module's, in order.
// took is the version taken, 0 when none; again says a set could not be
// taken yet and is worth another try.
func (u *unit) applyKeySets(ctx context.Context, chain [][]byte) (took uint64, again bool) {
	cur, err := u.eng.KeySet(ctx)
	if err != nil {
		u.log.Warn("key set: cannot read the module's", "err", err)
		return 0, true
	}
	var have uint64
	if cur != nil {
		have = cur.Version
	}
	for _, doc := range chain {
		next, err := keyset.Parse(doc)
		if err != nil {
			u.refuseKeySet(err)
			return took, false
		}
		if next.Version <= have {
			continue // taken before: the retained chain comes again at every connection
		}
		if _, err := u.eng.ApplyKeySet(ctx, doc); err != nil {
			u.refuseKeySet(fmt.Errorf("version %d: %w", next.Version, err))
			// The port refuses for now what it may take later, once the
			// trial is confirmed or the running image is replaced.
			return took, hal.CodeOf(err) == hal.CodeBusy || hal.CodeOf(err) == hal.CodeInvalid
		}
		have, took = next.Version, next.Version
		u.emit(Event{Kind: event.KeySet, Message: fmt.Sprintf("key set version %d taken: %d image keys, %d revoked", next.Version, len(next.ImageKeys), len(next.Revoked))})
	}
	return took, false
}

// refuseKeySet reports a refusal, once while it stays the same (a retried
// set is refused again every keySetRetry).
func (u *unit) refuseKeySet(err error) {
	if err.Error() == u.keySetRefused {
		return
	}
	u.keySetRefused = err.Error()
	u.log.Warn("key set refused", "err", err)
	u.emit(Event{Kind: event.KeySet, Message: "refused: " + err.Error()})
}

// keySetVersion is the module's key set version, 0 when it has none.
func (u *unit) keySetVersion(ctx context.Context) uint64 {
	s, err := u.eng.KeySet(ctx)
	if err != nil || s == nil {
		return 0
	}
	return s.Version
}
