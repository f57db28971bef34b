package campaign

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/otaport/otaport/fleet/store"
)

// Deleting is the service's business because a campaign that runs holds
// devices and images: each delete checks the active campaigns and writes
// under the service's lock, so no campaign can start with what is being
// deleted.

// DeleteDevice removes a device from the registry and returns its record.
// It is refused (ErrState) while the device has an order in an active
// campaign: cancel that campaign first. Revoking the device's sign-in at
// the broker is the caller's (fleet wires the embedded broker).
func (s *Service) DeleteDevice(ctx context.Context, pk, dn string) (store.Device, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	key := store.DeviceKey(pk, dn)
	if err := ctx.Err(); err != nil {
		return store.Device{}, fmt.Errorf("delete device %s: %w", key, err)
	}
	for _, id := range s.activeIDs() {
		m := s.active[id]
		if p, ok := m.Device(key); ok && !p.State.Terminal() {
			return store.Device{}, fmt.Errorf("delete device %s: it is %s in campaign %d (%s): cancel that campaign first: %w",
				key, p.State, id, m.c.State, ErrState)
		}
	}
	var d store.Device
	err := s.cfg.Store.Write(func(w *store.Writer) (err error) {
		d, err = w.DeleteDevice(pk, dn)
		return err
	})
	if err != nil {
		return store.Device{}, err
	}
	s.log.Info("device deleted", "device", key)
	return d, nil
}

// AddImage records an uploaded image. A delta image whose target an active
// campaign sends is offered to that campaign's devices from its next orders
// on.
func (s *Service) AddImage(ctx context.Context, img store.Image) (store.Image, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := ctx.Err(); err != nil {
		return store.Image{}, fmt.Errorf("add image %s for %s: %w", img.Version, img.Board, err)
	}
	img, err := s.cfg.Store.AddImage(img)
	if err != nil {
		return store.Image{}, err
	}
	if img.IsDelta() {
		for _, cid := range s.activeIDs() {
			if _, ok := s.images[cid][img.DeltaTarget]; !ok {
				continue
			}
			m := s.active[cid]
			ds := maps.Clone(m.deltas)
			if ds == nil {
				ds = map[uint64][]store.Image{}
			}
			ds[img.DeltaTarget] = append(slices.Clone(ds[img.DeltaTarget]), img)
			m.SetDeltas(ds)
		}
	}
	return img, nil
}

// DeleteImage removes an image record and returns it, with whether another
// record shares its file (which must then stay). It is refused (ErrState)
// while an active campaign uses the image (or it is a delta image of one
// the campaign sends), naming the campaign, and for a full image while
// delta images go to or from it: delete them first.
func (s *Service) DeleteImage(ctx context.Context, id uint64) (img store.Image, shared bool, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := ctx.Err(); err != nil {
		return store.Image{}, false, fmt.Errorf("delete image %d: %w", id, err)
	}
	for _, cid := range s.activeIDs() {
		if s.usesImage(cid, id) {
			return store.Image{}, false, fmt.Errorf("delete image %d: campaign %d (%s) uses it: cancel that campaign or wait for it to finish: %w",
				id, cid, s.active[cid].c.State, ErrState)
		}
	}
	imgs, err := s.cfg.Store.Images()
	if err != nil {
		return store.Image{}, false, fmt.Errorf("delete image %d: %w", id, err)
	}
	var linked []string
	for _, d := range imgs {
		if d.IsDelta() && (d.DeltaTarget == id || d.DeltaBase == id) {
			linked = append(linked, strconv.FormatUint(d.ID, 10))
		}
	}
	if len(linked) > 0 {
		return store.Image{}, false, fmt.Errorf("delete image %d: delta images %s go from or to it: delete them first: %w", id, strings.Join(linked, ", "), ErrState)
	}
	err = s.cfg.Store.Write(func(w *store.Writer) (err error) {
		img, shared, err = w.DeleteImage(id)
		return err
	})
	if err != nil {
		return store.Image{}, false, err
	}
	s.log.Info("image deleted", "image", id, "version", img.Version, "board", img.Board)
	return img, shared, nil
}

// DeleteCampaign removes a finished or canceled campaign with its devices'
// progress. An active one (running or paused) is refused (ErrState): cancel
// it first.
func (s *Service) DeleteCampaign(ctx context.Context, id uint64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("delete campaign %d: %w", id, err)
	}
	if m, ok := s.active[id]; ok {
		return fmt.Errorf("delete campaign %d: it is %s: cancel it first: %w", id, m.c.State, ErrState)
	}
	err := s.cfg.Store.Write(func(w *store.Writer) error { return w.DeleteCampaign(id) })
	if err != nil {
		return err
	}
	s.log.Info("campaign deleted", "campaign", id)
	return nil
}
