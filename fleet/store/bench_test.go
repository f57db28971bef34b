package store

import (
	"fmt"
	"testing"
)

// BenchmarkStore compares the backends on what the fleet does most: a
// device's report (one Write updating one device), the campaign service's
// batch (100 devices in one Write), a campaign of 1,000 devices created, and
// a listing of 1,000 devices.
//
//	go test ./fleet/store -run '^$' -bench Store -benchtime 2s
func BenchmarkStore(b *testing.B) {
	for _, be := range []struct {
		name string
		db   func(b *testing.B) string
	}{
		{"bbolt", func(b *testing.B) string { return b.TempDir() + "/fleet.db" }},
		{"postgres", func(b *testing.B) string { return pg.DB(b) }},
	} {
		b.Run(be.name, func(b *testing.B) {
			s := open(b, be.db(b))
			defer s.Close()
			const devices = 1000
			err := s.Write(func(w *Writer) error {
				for i := range devices {
					d := Device{ProductKey: "pk", DeviceName: fmt.Sprintf("dev%04d", i), Board: "b", State: DeviceIdle}
					if err := put(w.tx, tableDevices, nameOf(d.Key()), d); err != nil {
						return err
					}
				}
				return nil
			})
			if err != nil {
				b.Fatal(err)
			}
			inc := func(d *Device) error { d.OrderCounter++; return nil }
			b.Run("update-1", func(b *testing.B) {
				for i := 0; b.Loop(); i++ {
					if err := s.UpdateDevice("pk", fmt.Sprintf("dev%04d", i%devices), inc); err != nil {
						b.Fatal(err)
					}
				}
			})
			b.Run("update-100-in-one-write", func(b *testing.B) {
				for i := 0; b.Loop(); i++ {
					err := s.Write(func(w *Writer) error {
						for j := range 100 {
							if err := w.UpdateDevice("pk", fmt.Sprintf("dev%04d", (i*100+j)%devices), inc); err != nil {
								return err
							}
						}
						return nil
					})
					if err != nil {
						b.Fatal(err)
					}
				}
			})
			b.Run("update-100-prefetched", func(b *testing.B) {
				for i := 0; b.Loop(); i++ {
					err := s.Write(func(w *Writer) error {
						keys := make([]string, 100)
						for j := range keys {
							keys[j] = DeviceKey("pk", fmt.Sprintf("dev%04d", (i*100+j)%devices))
						}
						if err := w.PrefetchDevices(keys); err != nil {
							return err
						}
						for _, k := range keys {
							pk, dn, _ := SplitDeviceKey(k)
							if err := w.UpdateDevice(pk, dn, inc); err != nil {
								return err
							}
						}
						return nil
					})
					if err != nil {
						b.Fatal(err)
					}
				}
			})
			b.Run("add-campaign-of-1000", func(b *testing.B) {
				ps := make([]Progress, devices)
				for i := range ps {
					ps[i] = Progress{Device: fmt.Sprintf("pk/dev%04d", i), State: ProgressPending}
				}
				for b.Loop() {
					if _, err := s.AddCampaign(Campaign{State: CampaignRunning}, ps); err != nil {
						b.Fatal(err)
					}
				}
			})
			b.Run("list-1000", func(b *testing.B) {
				for b.Loop() {
					if ds, err := s.Devices(); err != nil || len(ds) != devices {
						b.Fatal(len(ds), err)
					}
				}
			})
		})
	}
}
