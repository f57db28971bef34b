package main

import (
	"cmp"
	"context"
	"crypto"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/pflag"

	"github.com/otaport/otaport/cmd/internal/cli"
	"github.com/otaport/otaport/core/engine"
	"github.com/otaport/otaport/core/hal"
	"github.com/otaport/otaport/core/hal/plugin"
	"github.com/otaport/otaport/core/image"
)

// engineCommands returns the commands that drive the upgrade engine
// (install, boot, status, confirm, rollback). Each opens the port plugin on
// the device's flash file (flashFile), which must exist.
func engineCommands() []command {
	return []command{installCommand(), bootCommand(), statusCommand(), confirmCommand(), rollbackCommand(), keysetCommand()}
}

// withEngine opens the plugin on the device's flash (which must exist: see
// flashFile) and runs fn with an engine over it.
func withEngine(ctx context.Context, e *env, cmd string, opts engine.Options, fn func(*plugin.Client, *engine.Engine) error) error {
	file, err := e.flashFile(cmd, false)
	e.flash = file
	if err != nil {
		return err
	}
	// The keys of device.yaml's module are its simulated bootloader's,
	// as the agent gives them.
	extra, err := bootKeyEnv(e.keys, e.encKey)
	if err != nil {
		return err
	}
	c, err := openPlugin(ctx, e, file, extra...)
	if err != nil {
		return err
	}
	defer c.Close()
	// The engine says what it does through the observer; its log is for
	// warnings, and everything with -v.
	opts.Logger = e.warn
	eng, err := engine.New(c, c, opts)
	if err != nil {
		return err
	}
	return fn(c, eng)
}

func installCommand() command {
	var f struct {
		keys           []string
		digest         string
		size           cli.Size
		version        string
		allowDowngrade bool
		ca             string
		resume         bool
		permanent      bool
		readTimeout    time.Duration
		retries        int
		encKey         string
	}
	return command{
		name:  "install",
		args:  "--key pub.pem SOURCE",
		short: "download, verify and install an image (file or http(s) URL); reboot to apply",
		flags: func(fs *pflag.FlagSet) {
			fs.StringArrayVar(&f.keys, "key", nil, "public key `file` (PEM) the image must be signed with; repeat for several; env OTARUN_KEY")
			fs.StringVar(&f.digest, "digest", "", "digest of the whole file the order announced: sha256:HEX or md5:HEX")
			fs.Var(&f.size, "size", "size of the file the order announced: 123456, 0x1e240, 512KiB")
			fs.StringVar(&f.version, "expect-version", "", "version the order announced (1.2.3+4); another one is refused")
			fs.BoolVar(&f.allowDowngrade, "allow-downgrade", false, "accept an image not newer than the running one (the security counter is still checked)")
			fs.StringVar(&f.ca, "ca", "", "CA certificate file (PEM) to trust for an https:// source")
			fs.BoolVar(&f.resume, "resume", false, "continue the interrupted install instead of starting one (no SOURCE)")
			fs.BoolVar(&f.permanent, "permanent", false, "boot the image for good at the next reboot, without a trial")
			fs.DurationVar(&f.readTimeout, "read-timeout", engine.DefaultReadTimeout, "give up a transfer that delivers no byte for this long (it is retried)")
			fs.IntVar(&f.retries, "retries", engine.DefaultRetries, "retries in a row of a failed transfer before the install stops (0: none)")
			fs.StringVar(&f.encKey, "enc-key", "", "the device's private key `PRIV.pem` for encrypted images (otaimg sign --encrypt): X25519, P-256 or RSA-2048 PEM, or a base64 AES-KW key; also the simulated bootloader's on an MCUboot board")
		},
		modules: oneModule,
		run: func(ctx context.Context, e *env, args []string) error {
			switch {
			case f.resume && len(args) > 0:
				return cli.Usagef("--resume continues the interrupted install with its own source: give no SOURCE (got %q)", args[0])
			case !f.resume && len(args) != 1:
				return cli.Usagef("give one SOURCE (a file or an http(s):// URL), or --resume")
			}
			keys, err := verificationKeys(f.keys, e)
			if err != nil {
				return err
			}
			var caPEM []byte
			if f.ca != "" {
				if caPEM, err = os.ReadFile(f.ca); err != nil {
					return fmt.Errorf("--ca: %w", err)
				}
			}
			client, err := engine.NewHTTPClient(caPEM)
			if err != nil {
				return fmt.Errorf("--ca %s: %w", f.ca, err)
			}
			retries := f.retries
			if retries == 0 {
				retries = -1
			}
			obs, finish := newProgress(e)
			defer finish()
			if f.encKey != "" {
				e.encKey = f.encKey
			}
			var decKey any
			if e.encKey != "" {
				if decKey, err = image.ReadDecryptionKey(e.encKey); err != nil {
					return fmt.Errorf("--enc-key: %w", err)
				}
			}
			opts := engine.Options{
				DecryptKey:     decKey,
				Keys:           keys,
				AllowDowngrade: f.allowDowngrade,
				HTTPClient:     client,
				Observer:       obs,
				Retries:        retries,
				ReadTimeout:    f.readTimeout,
			}
			src := ""
			if len(args) == 1 {
				src = args[0]
				if !strings.Contains(src, "://") {
					// The engine keeps the source for a resume, which
					// may run from another directory.
					if src, err = filepath.Abs(src); err != nil {
						return err
					}
				}
			}
			return withEngine(ctx, e, "install", opts, func(c *plugin.Client, eng *engine.Engine) error {
				var err error
				if f.resume {
					err = eng.Resume(ctx)
				} else {
					err = eng.Install(ctx, engine.Source{URL: src, Digest: f.digest, Size: int64(f.size.Bytes), Version: f.version, Permanent: f.permanent})
				}
				finish()
				if err != nil {
					return err
				}
				st, err := eng.Status(ctx)
				if err != nil {
					return err
				}
				if e.opts.json {
					return nil
				}
				// Until the reboot the port still runs the old slot, so
				// its update slot is the one the image went to.
				info, err := c.Describe(ctx)
				if err != nil {
					return err
				}
				slot, err := info.UpdateSlot()
				if err != nil {
					return err
				}
				fmt.Fprintf(e.stdout, "installed %s in %s: reboot to apply (otarun boot)\n", st.Image, slot.Name)
				return nil
			})
		},
	}
}

func bootCommand() command {
	return command{
		name:    "boot",
		short:   "power the simulated device on: run the bootloader, then the engine's recovery",
		modules: oneModule,
		run: func(ctx context.Context, e *env, args []string) error {
			if len(args) > 0 {
				return cli.Usagef("boot takes no arguments")
			}
			return withEngine(ctx, e, "boot", engine.Options{}, func(c *plugin.Client, eng *engine.Engine) error {
				res, err := c.Reboot(ctx)
				if err != nil {
					return fmt.Errorf("boot: %w", err)
				}
				st, err := eng.Recover(ctx)
				if err != nil {
					return err
				}
				if e.opts.json {
					return writeJSON(e.stdout, struct {
						Boot   hal.RebootResult `json:"boot"`
						Status engine.Status    `json:"status"`
					}{res, st})
				}
				fmt.Fprintf(e.stdout, "booted %s %s (%s)\n", res.Slot, res.Version, res.Action)
				if res.Detail != "" {
					fmt.Fprintf(e.stdout, "bootloader: %s\n", res.Detail)
				}
				info, err := c.Describe(ctx)
				if err != nil {
					return err
				}
				fmt.Fprintf(e.stdout, "state: %s%s\n", st.State, stateHint(st, info))
				return nil
			})
		},
	}
}

// stateHint is what to do next in a state, for people. info is the port's
// description, which says what the bootloader will do with a trial.
func stateHint(st engine.Status, info hal.Info) string {
	switch st.State {
	case engine.Testing:
		return " (" + trialHint(st, info) + ")"
	case engine.Installed:
		return " (reboot to apply: otarun boot)"
	case engine.Downloading, engine.Verifying:
		return fmt.Sprintf(" (interrupted at byte %d: otarun install --resume)", st.Offset)
	case engine.RolledBack, engine.Failed:
		if st.LastError != "" {
			return ": " + st.LastError
		}
	}
	return ""
}

// trialHint says what happens to an image on trial, as the bootloader will
// do it: a dual-bank board boots it boot_attempts times unconfirmed and
// returns to the old image at the reboot after (a swap board boots it once
// and swaps back at the next); a single-bank board has copied it over the
// old one and has nothing to return to.
func trialHint(st engine.Status, info hal.Info) string {
	keep := "otarun confirm keeps it"
	if !info.Layout.Scheme.Reverts() {
		return fmt.Sprintf("image %s on trial: %s; a single-bank board kept no copy of %s, so no reboot returns to it", st.Image, keep, st.Previous)
	}
	attempts, count := info.Layout.BootAttempts, info.Boot.BootCount
	if !info.Boot.Trial || attempts < 1 || count < 1 || count > attempts {
		return fmt.Sprintf("image %s on trial: %s", st.Image, keep)
	}
	when := "the next reboot"
	if left := attempts - count; left > 0 {
		when = "the " + ordinal(left+1) + " reboot from now"
	}
	return fmt.Sprintf("image %s on trial, boot %d of %d: %s; unconfirmed, %s returns to %s", st.Image, count, attempts, keep, when, st.Previous)
}

// ordinal writes n as 2nd, 3rd, 4th.
func ordinal(n int) string {
	switch {
	case n%100 >= 11 && n%100 <= 13:
		return fmt.Sprintf("%dth", n)
	case n%10 == 1:
		return fmt.Sprintf("%dst", n)
	case n%10 == 2:
		return fmt.Sprintf("%dnd", n)
	case n%10 == 3:
		return fmt.Sprintf("%drd", n)
	}
	return fmt.Sprintf("%dth", n)
}

func statusCommand() command {
	return command{
		name:    "status",
		short:   "print the slots, their versions, the engine's state and its last error",
		modules: everyModule,
		run: func(ctx context.Context, e *env, args []string) error {
			if len(args) > 0 {
				return cli.Usagef("status takes no arguments")
			}
			if len(e.modules) > 0 {
				return statusModules(ctx, e)
			}
			return withEngine(ctx, e, "status", engine.Options{}, func(c *plugin.Client, eng *engine.Engine) error {
				st, err := eng.Status(ctx)
				if err != nil {
					return err
				}
				if e.opts.json {
					return writeJSON(e.stdout, struct {
						Flash string `json:"flash"`
						engine.Status
					}{e.flash, st})
				}
				info, err := c.Describe(ctx)
				if err != nil {
					return err
				}
				printStatus(e.stdout, e.flash, st, info)
				return nil
			})
		},
	}
}

func printStatus(w io.Writer, flashFile string, st engine.Status, info hal.Info) {
	run := st.RunningVersion
	if run == "" {
		run = "none"
	}
	fmt.Fprintf(w, "flash:    %s\n", flashFile)
	fmt.Fprintf(w, "board:    %s (%s)\n", st.Board, st.Scheme)
	fmt.Fprintf(w, "running:  %s %s", st.RunningSlot, run)
	if st.Trial {
		fmt.Fprint(w, " (trial)")
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "state:    %s%s\n", st.State, stateHint(st, info))
	if st.Image != "" {
		fmt.Fprintf(w, "image:    %s", st.Image)
		if st.Source != "" {
			fmt.Fprintf(w, " from %s", st.Source)
		}
		fmt.Fprintln(w)
	}
	if st.LastError != "" && st.State != engine.Failed && st.State != engine.RolledBack {
		fmt.Fprintf(w, "error:    %s\n", st.LastError)
	}
	if st.KeySet != 0 {
		fmt.Fprintf(w, "keys:     key set version %d\n", st.KeySet)
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SLOT\tVERSION\tBOOTABLE\tACTIVE\tPENDING\tCONFIRMED")
	for _, s := range st.Slots {
		v := s.Version
		if v == "" {
			v = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%v\t%v\t%v\t%v\n", s.Name, v, s.Bootable, s.Active, s.Pending, s.Confirmed)
	}
	tw.Flush()
}

func confirmCommand() command {
	return command{
		name:    "confirm",
		short:   "mark the running image good (after its health check)",
		modules: oneModule,
		run: func(ctx context.Context, e *env, args []string) error {
			if len(args) > 0 {
				return cli.Usagef("confirm takes no arguments")
			}
			return withEngine(ctx, e, "confirm", engine.Options{}, func(c *plugin.Client, eng *engine.Engine) error {
				if err := eng.Confirm(ctx); err != nil {
					return err
				}
				return printResult(ctx, e, c, eng, "confirmed")
			})
		},
	}
}

// verificationKeys reads the keys a command checks images with: --key,
// else device.yaml's, else OTARUN_KEY.
func verificationKeys(files []string, e *env) ([]crypto.PublicKey, error) {
	if len(files) == 0 {
		files = e.keys
	}
	if len(files) == 0 {
		for _, k := range strings.Split(os.Getenv("OTARUN_KEY"), ",") {
			if k = strings.TrimSpace(k); k != "" {
				files = append(files, k)
			}
		}
	}
	if len(files) == 0 {
		return nil, cli.Usagef("no verification key: pass --key pub.pem (the public half of the signing key: otaimg getpub --key key.pem)")
	}
	keys, err := image.ReadPublicKeys(files)
	if err != nil {
		return nil, fmt.Errorf("--key: %w", err)
	}
	return keys, nil
}

func keysetCommand() command {
	var files []string
	return command{
		name:  "keyset",
		args:  "--key pub.pem SET.json",
		short: "take a key set (otaimg keyset sign) as the agent does: checked against the device's own, kept in params",
		flags: func(fs *pflag.FlagSet) {
			fs.StringArrayVar(&files, "key", nil, "public key `file` (PEM) the device was provisioned with, which the first set must be signed by; env OTARUN_KEY")
		},
		modules: oneModule,
		run: func(ctx context.Context, e *env, args []string) error {
			if len(args) != 1 {
				return cli.Usagef("keyset takes one key set file")
			}
			keys, err := verificationKeys(files, e)
			if err != nil {
				return err
			}
			raw, err := os.ReadFile(args[0])
			if err != nil {
				return err
			}
			return withEngine(ctx, e, "keyset", engine.Options{Keys: keys}, func(c *plugin.Client, eng *engine.Engine) error {
				s, err := eng.ApplyKeySet(ctx, raw)
				if err != nil {
					return fmt.Errorf("%s: %w", args[0], err)
				}
				fmt.Fprintf(e.stdout, "key set version %d taken: %d image keys, %d revoked\n", s.Version, len(s.ImageKeys), len(s.Revoked))
				return nil
			})
		},
	}
}

func rollbackCommand() command {
	return command{
		name:    "rollback",
		short:   "give up the new image: cancel a pending install, or return to the previous image at the next boot",
		modules: oneModule,
		run: func(ctx context.Context, e *env, args []string) error {
			if len(args) > 0 {
				return cli.Usagef("rollback takes no arguments")
			}
			return withEngine(ctx, e, "rollback", engine.Options{}, func(c *plugin.Client, eng *engine.Engine) error {
				before, err := eng.Status(ctx)
				if err != nil {
					return err
				}
				if err := eng.Rollback(ctx); err != nil {
					if errors.Is(err, hal.ErrUnsupported) {
						return fmt.Errorf("%w: install the old version again (otarun install --allow-downgrade)", err)
					}
					return err
				}
				what := "rolled back"
				if before.State == engine.Downloading || before.State == engine.Verifying {
					// Nothing was rolled back: the download was dropped
					// and the state of before it stands.
					what = "dropped the interrupted install of " + cmp.Or(before.Image, before.Source)
				}
				return printResult(ctx, e, c, eng, what)
			})
		},
	}
}

// printResult prints the status after a command that changed it.
func printResult(ctx context.Context, e *env, c *plugin.Client, eng *engine.Engine, what string) error {
	st, err := eng.Status(ctx)
	if err != nil {
		return err
	}
	if e.opts.json {
		return writeJSON(e.stdout, st)
	}
	info, err := c.Describe(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "%s: %s %s runs, state %s%s\n", what, st.RunningSlot, st.RunningVersion, st.State, stateHint(st, info))
	return nil
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
