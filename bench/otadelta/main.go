// Command otadelta is the delta benchmark's driver: it makes and applies raw
// core/delta patches (no image around them) and reports times and memory, so
// bench/delta.sh can set them beside other delta tools.
//
//	otadelta diff OLD NEW PATCH   prints: bytes diff-seconds
//	otadelta apply OLD PATCH NEW  prints: apply-seconds heap-peak-bytes state-bytes checkpoint-bytes
package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/debug"
	"time"

	"github.com/otaport/otaport/core/delta"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "otadelta:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	if len(args) != 4 {
		return errors.New("usage: otadelta diff OLD NEW PATCH | otadelta apply OLD PATCH NEW")
	}
	switch args[0] {
	case "diff":
		return diff(args[1], args[2], args[3])
	case "apply":
		return apply(args[1], args[2], args[3])
	}
	return fmt.Errorf("unknown verb %q: want diff or apply", args[0])
}

func diff(oldPath, newPath, patchPath string) error {
	old, err := os.ReadFile(oldPath)
	if err != nil {
		return err
	}
	nw, err := os.ReadFile(newPath)
	if err != nil {
		return err
	}
	start := time.Now()
	p, err := delta.Encode(old, nw, delta.Options{})
	if err != nil {
		return err
	}
	el := time.Since(start)
	if err := os.WriteFile(patchPath, p, 0o644); err != nil {
		return err
	}
	fmt.Println(len(p), el.Seconds())
	return nil
}

// apply streams the patch from its file and the base through ReadAt, as a
// device would, and reports the heap the apply allocated: the decoder's
// state, not the images, which stay on disk.
func apply(oldPath, patchPath, newPath string) error {
	old, err := os.Open(oldPath)
	if err != nil {
		return err
	}
	defer old.Close()
	pf, err := os.Open(patchPath)
	if err != nil {
		return err
	}
	defer pf.Close()
	out, err := os.Create(newPath)
	if err != nil {
		return err
	}
	defer out.Close()
	debug.SetGCPercent(-1) // nothing is freed: TotalAlloc is the peak
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	start := time.Now()
	err = delta.Apply(context.Background(), pf, old, out)
	el := time.Since(start)
	runtime.ReadMemStats(&after)
	if err != nil {
		return err
	}
	cpMax, err := checkpoints(patchPath, old)
	if err != nil {
		return err
	}
	w := bufio.NewWriter(os.Stdout)
	fmt.Fprintln(w, el.Seconds(), after.TotalAlloc-before.TotalAlloc, delta.StateSize(), cpMax)
	return w.Flush()
}

// checkpoints applies the patch again, into nothing, taking a checkpoint
// after every block, and returns the largest.
func checkpoints(patchPath string, old io.ReaderAt) (int, error) {
	pf, err := os.Open(patchPath)
	if err != nil {
		return 0, err
	}
	defer pf.Close()
	d, err := delta.NewDecoder(bufio.NewReader(pf), old, io.Discard)
	if err != nil {
		return 0, err
	}
	largest := 0
	for {
		err := d.Next(context.Background())
		if err != nil && !errors.Is(err, io.EOF) {
			return 0, err
		}
		cp, cerr := d.Checkpoint()
		if cerr != nil {
			return 0, cerr
		}
		largest = max(largest, len(cp))
		if err != nil {
			return largest, nil
		}
	}
}
