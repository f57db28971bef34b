package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"text/tabwriter"

	"github.com/otaport/otaport/core/hal"
)

func infoCommand() command {
	return command{
		name:  "info",
		short: "print the board as the plugin describes it (layout, boot state)",
		run: func(ctx context.Context, e *env, args []string) error {
			// The board's layout needs no device: with none at the
			// flash file, the plugin describes a scratch one, and info
			// says so rather than show a blank device.
			file, err := e.flashFile("info", false)
			missing, scratch := file, errors.Is(err, errMissingFlash)
			if scratch {
				dir, derr := os.MkdirTemp("", "otarun-info-")
				if derr != nil {
					return derr
				}
				defer os.RemoveAll(dir)
				file, err = filepath.Join(dir, "scratch.flash"), nil
			}
			if err != nil {
				return err
			}
			c, err := openPlugin(ctx, e, file)
			if err != nil {
				return err
			}
			defer c.Close()
			info, err := c.Describe(ctx)
			if err != nil {
				return fmt.Errorf("describe: %w", err)
			}
			if scratch {
				info.Boot = hal.BootState{}
			}
			if e.opts.json {
				enc := json.NewEncoder(e.stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(info)
			}
			if scratch {
				fmt.Fprintf(e.stdout, "flash:      none (%s does not exist: the board only, no device; otarun provision makes one)\n", missing)
			} else {
				fmt.Fprintf(e.stdout, "flash:      %s\n", file)
			}
			printInfo(e.stdout, info)
			return nil
		},
	}
}

func printInfo(w io.Writer, info hal.Info) {
	l := info.Layout
	fmt.Fprintf(w, "board:      %s\n", l.Board)
	if l.Vendor != "" || l.SoC != "" {
		fmt.Fprintf(w, "soc:        %s %s\n", l.Vendor, l.SoC)
	}
	fmt.Fprintf(w, "scheme:     %s\n", l.Scheme)
	if b := l.Bootloader; b != (hal.Bootloader{}) {
		fmt.Fprintf(w, "bootloader: %s\n", b)
	}
	fmt.Fprintf(w, "flash:      %s at 0x%08x, write align %d, erased 0x%02X\n", humanSize(l.Flash.Size), l.Flash.Base, l.Flash.WriteAlign, l.Flash.EraseValue)
	fmt.Fprintf(w, "sectors:   ")
	for _, s := range l.Flash.Sectors {
		fmt.Fprintf(w, " %dx%s", s.Count, humanSize(s.Size))
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "signature:  %s\n", l.Signature)
	if len(info.Capabilities) > 0 {
		fmt.Fprintf(w, "capabilities: %v\n", info.Capabilities)
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "PARTITION\tOFFSET\tADDRESS\tSIZE")
	for _, p := range l.Partitions {
		fmt.Fprintf(tw, "%s\t0x%06x\t0x%08x\t%s\n", p.Name, p.Offset, l.Flash.Base+p.Offset, humanSize(p.Size))
	}
	tw.Flush()
	if len(info.Boot.Slots) > 0 {
		fmt.Fprintln(w)
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "SLOT\tVERSION\tBOOTABLE\tACTIVE\tPENDING\tCONFIRMED")
		for _, s := range info.Boot.Slots {
			v := s.Version
			if v == "" {
				v = "-"
			}
			fmt.Fprintf(tw, "%s\t%s\t%v\t%v\t%v\t%v\n", s.Name, v, s.Bootable, s.Active, s.Pending, s.Confirmed)
		}
		tw.Flush()
	}
}

// humanSize prints a byte count the way board files write it.
func humanSize(n uint64) string {
	switch {
	case n >= 1<<30 && n%(1<<30) == 0:
		return fmt.Sprintf("%dGiB", n>>30)
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%dMiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%dKiB", n>>10)
	}
	return fmt.Sprintf("%dB", n)
}
