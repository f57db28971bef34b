package main

import (
	"bytes"
	"cmp"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/otaport/otaport/cmd/internal/cli"
	"github.com/otaport/otaport/core/cloud"
	"github.com/otaport/otaport/core/image"
	"github.com/otaport/otaport/fleet/api"
	"github.com/otaport/otaport/fleet/pki"
)

// conn is the CLI's link to a running otaserve.
type conn struct {
	base  string
	token string
	json  bool
	out   io.Writer
	http  *http.Client
}

// clientFlags are the flags every client command shares, set on the
// device, image and campaign commands for all of theirs.
type clientFlags struct {
	server, token, data, ca string
	json                    bool
}

func (f *clientFlags) register(fs *pflag.FlagSet) {
	fs.StringVar(&f.server, "server", "", "otaserve URL (env OTASERVE_URL; default: DATA/url, else https://127.0.0.1:8080)")
	fs.StringVar(&f.token, "token", "", "API token (env OTASERVE_TOKEN; default: DATA/token, the bootstrap admin token)")
	fs.StringVar(&f.data, "data", defaultData, "data directory of a local otaserve, to find its URL, token and CA")
	fs.StringVar(&f.ca, "ca", "", "PEM `file` of the CA of otaserve's certificate (env OTASERVE_CA; default: DATA/ca.pem when it exists, and the system's)")
	fs.BoolVar(&f.json, "json", false, "print JSON for scripts instead of tables")
}

// connect finds the server and the token: the flags, else the environment,
// else what a local otaserve run wrote to its data directory.
func (f *clientFlags) connect(out io.Writer) (*conn, error) {
	c := &conn{base: cmp.Or(f.server, os.Getenv("OTASERVE_URL")), token: cmp.Or(f.token, os.Getenv("OTASERVE_TOKEN")), json: f.json, out: out}
	if c.base == "" {
		if b, err := os.ReadFile(filepath.Join(f.data, "url")); err == nil {
			c.base = strings.TrimSpace(string(b))
		} else {
			c.base = "https://127.0.0.1:8080"
		}
	}
	if c.token == "" {
		b, err := os.ReadFile(filepath.Join(f.data, "token"))
		if err != nil {
			return nil, fmt.Errorf("no API token: pass --token, set OTASERVE_TOKEN, or run where %s exists (%w)", filepath.Join(f.data, "token"), err)
		}
		c.token = strings.TrimSpace(string(b))
	}
	c.base = strings.TrimSuffix(c.base, "/")
	hc, err := f.httpClient()
	if err != nil {
		return nil, err
	}
	c.http = hc
	return c, nil
}

// httpClient trusts the system's CAs and otaserve's own: --ca, else
// OTASERVE_CA, else the fleet CA of a local otaserve's data directory.
func (f *clientFlags) httpClient() (*http.Client, error) {
	file, flag := f.ca, "--ca"
	if file == "" {
		file, flag = os.Getenv("OTASERVE_CA"), "OTASERVE_CA"
	}
	if file == "" {
		local := filepath.Join(f.data, pki.CertFile)
		if _, err := os.Stat(local); err != nil {
			return http.DefaultClient, nil
		}
		file, flag = local, "--data"
	}
	pem, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", flag, err)
	}
	pool, err := x509.SystemCertPool()
	if err != nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s %s: no PEM certificate in it", flag, file)
	}
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	return &http.Client{Transport: t}, nil
}

// clientGroup returns a group of client commands (device, image, campaign)
// that share one set of client flags; each member is made by a function of
// those flags.
func clientGroup(use, short string, members ...func(*clientFlags) *cobra.Command) *cobra.Command {
	f := &clientFlags{}
	cmds := make([]*cobra.Command, 0, len(members))
	for _, m := range members {
		cmds = append(cmds, m(f))
	}
	g := cli.Group(use, short, cmds...)
	f.register(g.PersistentFlags())
	return g
}

// clientCommand is a client command: run gets the connection and the
// arguments that args let through.
func clientCommand(f *clientFlags, use, short string, args cobra.PositionalArgs, run func(c *conn, args []string) error) *cobra.Command {
	return &cobra.Command{
		Use:   use,
		Short: short,
		Args:  args,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := f.connect(cmd.OutOrStdout())
			if err != nil {
				return err
			}
			return run(c, args)
		},
	}
}

// call sends a request to the API and decodes the answer into out.
func (c *conn) call(method, path, ctype string, body io.Reader, out any) error {
	req, err := http.NewRequest(method, c.base+api.Prefix+path, body)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("reach otaserve at %s (--server): %w", c.base, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	if resp.StatusCode/100 != 2 {
		var e api.Error
		if json.Unmarshal(data, &e) == nil && e.Error != "" {
			return fmt.Errorf("%s", e.Error)
		}
		return fmt.Errorf("%s %s: %s", method, path, resp.Status)
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			return fmt.Errorf("%s %s: decode answer: %w", method, path, err)
		}
	}
	return nil
}

func (c *conn) postJSON(path string, v, out any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return c.call(http.MethodPost, path, "application/json", bytes.NewReader(b), out)
}

func (c *conn) printJSON(v any) error {
	enc := json.NewEncoder(c.out)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// table prints rows aligned in columns for people.
func (c *conn) table(header string, rows [][]string) error {
	tw := tabwriter.NewWriter(c.out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, header)
	for _, r := range rows {
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	return tw.Flush()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func when(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.Local().Format("2006-01-02 15:04:05")
}

func deviceCommand() *cobra.Command {
	return clientGroup("device", "add, list, show and delete devices, issue their certificates", deviceAdd, deviceList, deviceGet, deviceDelete, deviceCert)
}

func imageCommand() *cobra.Command {
	return clientGroup("image", "upload, list and delete firmware images", imageUpload, imageList, deleteByID("image", "delete an image no campaign uses"))
}

func campaignCommand() *cobra.Command {
	return clientGroup("campaign", "create campaigns, follow them, pause, resume, cancel or delete them",
		campaignCreate, campaignList, campaignStatus, campaignAction("pause"), campaignAction("resume"), campaignAction("cancel"),
		deleteByID("campaign", "delete an ended campaign"))
}

func deviceAdd(f *clientFlags) *cobra.Command {
	var pk, dn, secret, board, grp string
	var modules []string
	cmd := clientCommand(f, "add --product PK --name DN --board B [--module NAME=BOARD]... [--group G] [--secret S]", "register a device", cli.NoArgs, func(c *conn, _ []string) error {
		req := api.AddDevice{ProductKey: pk, DeviceName: dn, DeviceSecret: secret, Board: board, Group: grp}
		for _, m := range modules {
			name, mb, ok := strings.Cut(m, "=")
			if !ok || name == "" || mb == "" {
				return cli.Usagef("--module %q: want NAME=BOARD, e.g. --module wifi=esp32-devkitc", m)
			}
			req.Modules = append(req.Modules, api.ModuleSpec{Name: name, Board: mb})
		}
		var d api.Device
		if err := c.postJSON("/devices", req, &d); err != nil {
			return err
		}
		if c.json {
			return c.printJSON(d)
		}
		fmt.Fprintf(c.out, "added %s (board %s)\n", d.Key(), d.Board)
		if secret == "" {
			fmt.Fprintf(c.out, "device secret (shown once): %s\n", d.DeviceSecret)
		}
		return nil
	})
	fs := cmd.Flags()
	fs.StringVar(&pk, "product", "", "product key")
	fs.StringVar(&dn, "name", "", "device name")
	fs.StringVar(&secret, "secret", "", "device secret (generated and printed once if absent)")
	fs.StringVar(&board, "board", "", "board the device's images are built for (its default module's)")
	fs.StringArrayVar(&modules, "module", nil, "another module of the device and its board, `NAME=BOARD` (repeatable): --module wifi=esp32-devkitc")
	fs.StringVar(&grp, "group", "", "group, for campaign targets")
	return cmd
}

// deviceHeader is the header of the device tables; deviceRow a row.
// BOARD, VERSION and STATE are the default module's; MODULES the others'.
const deviceHeader = "PRODUCT\tDEVICE\tBOARD\tGROUP\tVERSION\tSTATE\tMODULES\tLAST SEEN\tLAST ERROR"

func deviceRow(d api.Device) []string {
	state := d.State
	if d.PossiblyFrozen {
		// What the device said of itself: it hears no release statement.
		state += ",possibly-frozen"
	}
	if d.UnsignedOrders {
		// It still takes unsigned orders: a device.yaml from before them.
		state += ",unsigned-orders"
	}
	if d.PlainSignIn {
		state += ",plain"
	}
	version := dash(d.Version)
	if d.KeySet > 0 {
		version += fmt.Sprintf(" (keys v%d)", d.KeySet) // the key set it holds
	}
	return []string{d.ProductKey, d.DeviceName, d.Board, dash(d.Group), version, state, moduleSummary(d.Modules), when(d.LastSeen), dash(d.LastError)}
}

// moduleSummary lists the modules besides the default one as
// "wifi=2.1.0(idle)", "-" for a device of one module.
func moduleSummary(ms []api.Module) string {
	var out []string
	for _, m := range ms {
		if m.Name == "default" {
			continue
		}
		out = append(out, fmt.Sprintf("%s=%s(%s)", m.Name, dash(m.Version), m.State))
	}
	if len(out) == 0 {
		return "-"
	}
	return strings.Join(out, ",")
}

func deviceList(f *clientFlags) *cobra.Command {
	return clientCommand(f, "list", "list the devices", cli.NoArgs, func(c *conn, _ []string) error {
		var ds []api.Device
		if err := c.call(http.MethodGet, "/devices", "", nil, &ds); err != nil {
			return err
		}
		if c.json {
			return c.printJSON(ds)
		}
		var rows [][]string
		for _, d := range ds {
			rows = append(rows, deviceRow(d))
		}
		return c.table(deviceHeader, rows)
	})
}

func deviceGet(f *clientFlags) *cobra.Command {
	return clientCommand(f, "get PK/DN", "show one device", cli.ExactArgs(1, "PK/DN"), func(c *conn, args []string) error {
		path, err := devicePath(args[0])
		if err != nil {
			return err
		}
		var d api.Device
		if err := c.call(http.MethodGet, path, "", nil, &d); err != nil {
			return err
		}
		if c.json {
			return c.printJSON(d)
		}
		return c.table(deviceHeader, [][]string{deviceRow(d)})
	})
}

func deviceDelete(f *clientFlags) *cobra.Command {
	return clientCommand(f, "delete PK/DN", "delete a device and revoke its sign-in", cli.ExactArgs(1, "PK/DN"), func(c *conn, args []string) error {
		path, err := devicePath(args[0])
		if err != nil {
			return err
		}
		if err := c.call(http.MethodDelete, path, "", nil, nil); err != nil {
			return err
		}
		if c.json {
			pk, dn, _ := strings.Cut(args[0], "/")
			return c.printJSON(deleted{Deleted: "device", ProductKey: pk, DeviceName: dn})
		}
		fmt.Fprintf(c.out, "deleted %s: its sign-in is revoked\n", args[0])
		return nil
	})
}

func deviceCert(f *clientFlags) *cobra.Command {
	var keyFile, out, caOut string
	var days int
	cmd := clientCommand(f, "cert PK/DN --key KEY.pem --out CERT.pem [--ca-out CA.pem]",
		"issue a device its client certificate, for the broker's certificate sign-in", cli.ExactArgs(1, "PK/DN"), func(c *conn, args []string) error {
			path, err := devicePath(args[0])
			if err != nil {
				return err
			}
			if keyFile == "" || out == "" {
				return cli.Usagef("give --key (the device's key, made if missing) and --out (where the certificate goes)")
			}
			pk, dn, _ := strings.Cut(args[0], "/")
			key, made, err := deviceKey(keyFile)
			if err != nil {
				return err
			}
			csr, err := pki.NewRequest(key, pk, dn)
			if err != nil {
				return err
			}
			var cert api.Certificate
			if err := c.postJSON(path+"/certificate", api.CertificateRequest{CSR: string(csr), ValidDays: days}, &cert); err != nil {
				return err
			}
			if err := os.WriteFile(out, []byte(cert.Certificate), 0o644); err != nil {
				return fmt.Errorf("--out: %w", err)
			}
			if caOut != "" {
				if err := os.WriteFile(caOut, []byte(cert.CA), 0o644); err != nil {
					return fmt.Errorf("--ca-out: %w", err)
				}
			}
			if c.json {
				return c.printJSON(cert)
			}
			if made {
				fmt.Fprintf(c.out, "made the device's key: %s (readable by this user only; it goes on the device and nowhere else)\n", keyFile)
			}
			fmt.Fprintf(c.out, "issued %s its certificate, valid until %s: %s\n", args[0], cert.NotAfter.Local().Format("2006-01-02"), out)
			return nil
		})
	fs := cmd.Flags()
	fs.StringVar(&keyFile, "key", "", "the device's private key, PEM (made, P-256, when the file does not exist)")
	fs.StringVar(&out, "out", "", "where to write the certificate, PEM")
	fs.StringVar(&caOut, "ca-out", "", "where to write the fleet CA's certificate, PEM (what devices pin, and what an external broker checks device certificates against)")
	fs.IntVar(&days, "valid-days", 0, "days the certificate lasts (default two years)")
	return cmd
}

// deviceKey reads the private key in file, or makes a P-256 key there
// when the file does not exist.
func deviceKey(file string) (key crypto.Signer, made bool, err error) {
	data, err := os.ReadFile(file)
	if errors.Is(err, fs.ErrNotExist) {
		k, err := image.GenerateKey(image.KeyECDSAP256)
		if err != nil {
			return nil, false, err
		}
		pemBytes, err := image.MarshalPrivateKeyPEM(k)
		if err != nil {
			return nil, false, err
		}
		// O_EXCL: a key that appeared meanwhile is not overwritten.
		f, err := os.OpenFile(file, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return nil, false, fmt.Errorf("--key: %w", err)
		}
		if _, err := f.Write(pemBytes); err != nil {
			f.Close()
			return nil, false, fmt.Errorf("--key: %w", err)
		}
		if err := f.Close(); err != nil {
			return nil, false, fmt.Errorf("--key: %w", err)
		}
		return k, true, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("--key: %w", err)
	}
	if b, _ := pem.Decode(data); b == nil {
		return nil, false, fmt.Errorf("--key %s: no PEM key in it; give the device's private key, or a path that does not exist to make one", file)
	}
	k, err := image.LoadPrivateKey(data)
	if err != nil {
		return nil, false, fmt.Errorf("--key %s: %w", file, err)
	}
	return k, false, nil
}

// deleted is what a delete prints with --json: the API answers a delete
// with no body, so the command says what it deleted, in the API's names.
type deleted struct {
	// Deleted is device, image or campaign.
	Deleted    string `json:"deleted"`
	ProductKey string `json:"product_key,omitempty"`
	DeviceName string `json:"device_name,omitempty"`
	// ID is the image's or campaign's; IDs start at 1.
	ID uint64 `json:"id,omitempty"`
}

// devicePath turns a PK/DN argument into the device's API path.
func devicePath(arg string) (string, error) {
	pk, dn, ok := strings.Cut(arg, "/")
	if !ok {
		return "", cli.Usagef("%q: give productKey/deviceName", arg)
	}
	return "/devices/" + url.PathEscape(pk) + "/" + url.PathEscape(dn), nil
}

func imageUpload(f *clientFlags) *cobra.Command {
	var board, version, deltaFrom, keyPath string
	cmd := clientCommand(f, "upload --board B [--version V] [--delta-from VERSION --key KEY.pem] FILE",
		"upload a signed image or delta image, checked on arrival; with --delta-from, also the delta to it from a stored version", cli.ExactArgs(1, "the image FILE"), func(c *conn, args []string) error {
			if deltaFrom != "" {
				if keyPath == "" {
					return cli.Usagef("--delta-from %s: give --key KEY.pem, the private key that signs the board's images: the delta image is made and signed here, since otaserve holds public keys only", deltaFrom)
				}
				return c.uploadWithDelta(args[0], board, version, deltaFrom, keyPath)
			}
			if keyPath != "" {
				return cli.Usagef("--key signs the delta image --delta-from makes; without --delta-from, the image is uploaded as signed")
			}
			file, err := os.Open(args[0])
			if err != nil {
				return err
			}
			defer file.Close()
			img, err := c.upload(args[0], file, board, version)
			if err != nil {
				return err
			}
			if c.json {
				return c.printJSON(img)
			}
			printImage(c.out, img)
			return nil
		})
	fs := cmd.Flags()
	fs.StringVar(&board, "board", "", "board the image is built for")
	fs.StringVar(&version, "version", "", "expected version (checked against the image header)")
	fs.StringVar(&deltaFrom, "delta-from", "", "also make and upload the delta image from the stored image of this `VERSION` of the board (devices that run it are sent the delta)")
	fs.StringVarP(&keyPath, "key", "k", "", "private key (PEM) that signs the delta image of --delta-from, the one the board's images are signed with")
	return cmd
}

func imageList(f *clientFlags) *cobra.Command {
	return clientCommand(f, "list", "list the images", cli.NoArgs, func(c *conn, _ []string) error {
		var imgs []api.Image
		if err := c.call(http.MethodGet, "/images", "", nil, &imgs); err != nil {
			return err
		}
		if c.json {
			return c.printJSON(imgs)
		}
		var rows [][]string
		for _, i := range imgs {
			delta := "-"
			if i.DeltaTarget != 0 {
				delta = fmt.Sprintf("%d->%d", i.DeltaBase, i.DeltaTarget) // the image IDs it goes between
			}
			rows = append(rows, []string{strconv.FormatUint(i.ID, 10), i.Version, i.Board, strconv.FormatInt(i.Size, 10),
				i.SHA256[:min(12, len(i.SHA256))], i.SignatureType, strconv.FormatUint(uint64(i.SecurityCounter), 10), when(i.Uploaded), delta})
		}
		return c.table("ID\tVERSION\tBOARD\tSIZE\tSHA256\tSIGNATURE\tSEC-CNT\tUPLOADED\tDELTA", rows)
	})
}

// deleteByID returns the delete command of group (image, campaign), whose
// members the API names /GROUPs/ID.
func deleteByID(group, short string) func(*clientFlags) *cobra.Command {
	return func(f *clientFlags) *cobra.Command {
		return clientCommand(f, "delete ID", short, cli.ExactArgs(1, "the "+group+" ID"), func(c *conn, args []string) error {
			if err := c.call(http.MethodDelete, "/"+group+"s/"+url.PathEscape(args[0]), "", nil, nil); err != nil {
				return err
			}
			if c.json {
				// The server took the ID, so it is a number.
				id, err := strconv.ParseUint(args[0], 10, 64)
				if err != nil {
					return fmt.Errorf("%s %q deleted, but the ID is not a number: %w", group, args[0], err)
				}
				return c.printJSON(deleted{Deleted: group, ID: id})
			}
			fmt.Fprintf(c.out, "deleted %s %s\n", group, args[0])
			return nil
		})
	}
}

func campaignCreate(f *clientFlags) *cobra.Command {
	var (
		imageIDs        idList
		target, waves   string
		module          string
		success, errPct int
	)
	cmd := clientCommand(f, "create --image ID [--image ID]... --target product=PK|group=G|devices=pk/a,pk/b [--module NAME] [--waves 1,10%,100%] [--success 80] [--error 20]",
		"start a campaign: an image (one per board) to a target, in waves", cli.NoArgs, func(c *conn, _ []string) error {
			t, err := parseTarget(target)
			if err != nil {
				return err
			}
			var camp api.Campaign
			req := api.CreateCampaign{ImageIDs: imageIDs, Target: t, Module: module, Waves: waves, SuccessPercent: success, ErrorPercent: errPct}
			if err := c.postJSON("/campaigns", req, &camp); err != nil {
				return err
			}
			if c.json {
				return c.printJSON(camp)
			}
			n := 0
			for _, w := range camp.Waves {
				n += len(w.Devices)
			}
			of := ""
			if camp.Module != "default" {
				of = "module " + camp.Module + " of "
			}
			fmt.Fprintf(c.out, "campaign %d: %s to %s%d devices in %d waves, %s\n", camp.ID, versions(camp.Images), of, n, len(camp.Waves), camp.State)
			return nil
		})
	fs := cmd.Flags()
	fs.Var(&imageIDs, "image", "image `ID` (see image list); repeat it for a target of several boards, one image per board")
	fs.StringVar(&target, "target", "", "product=PK, group=G or devices=pk/dn1,pk/dn2")
	fs.StringVar(&module, "module", "default", "the module of the target devices to upgrade (the images are for its board)")
	fs.StringVar(&waves, "waves", "100%", "cumulative wave sizes, counts or percentages: 1,10%,100%")
	fs.IntVar(&success, "success", 80, "a wave succeeds when this percentage of its devices finished")
	fs.IntVar(&errPct, "error", 20, "the campaign pauses when more than this percentage of a wave failed")
	return cmd
}

func campaignList(f *clientFlags) *cobra.Command {
	return clientCommand(f, "list", "list the campaigns", cli.NoArgs, func(c *conn, _ []string) error {
		var cs []api.Campaign
		if err := c.call(http.MethodGet, "/campaigns", "", nil, &cs); err != nil {
			return err
		}
		if c.json {
			return c.printJSON(cs)
		}
		var rows [][]string
		for _, cp := range cs {
			var ids []string
			for _, img := range cp.Images {
				ids = append(ids, strconv.FormatUint(img.ID, 10))
			}
			rows = append(rows, []string{strconv.FormatUint(cp.ID, 10), strings.Join(ids, ","), versions(cp.Images), cp.Module,
				cp.State, strconv.Itoa(len(cp.Waves)), targetString(cp.Target), dash(cp.Reason)})
		}
		return c.table("ID\tIMAGE\tVERSION\tMODULE\tSTATE\tWAVES\tTARGET\tREASON", rows)
	})
}

func campaignStatus(f *clientFlags) *cobra.Command {
	return clientCommand(f, "status ID", "show a campaign's waves and devices", cli.ExactArgs(1, "the campaign ID"), func(c *conn, args []string) error {
		var st api.Status
		if err := c.call(http.MethodGet, "/campaigns/"+url.PathEscape(args[0]), "", nil, &st); err != nil {
			return err
		}
		if c.json {
			return c.printJSON(st)
		}
		cp := st.Campaign
		fmt.Fprintf(c.out, "campaign %d: %s to %s, %s", cp.ID, describeImages(cp.Images), targetString(cp.Target), cp.State)
		if cp.Reason != "" {
			fmt.Fprintf(c.out, ": %s", cp.Reason)
		}
		fmt.Fprintf(c.out, "\nthresholds: success >= %d%%, error > %d%%\n", cp.SuccessPercent, cp.ErrorPercent)
		if b := st.Bytes; b.Full > 0 {
			fmt.Fprintf(c.out, "bytes: %d ordered of %d in full images (%.1f %%), %d devices on delta images\n", b.Sent, b.Full, 100*float64(b.Sent)/float64(b.Full), b.Deltas)
		}
		fmt.Fprintln(c.out)
		var rows [][]string
		for _, w := range st.Waves {
			rows = append(rows, []string{strconv.Itoa(w.Index), w.Spec, w.State, strconv.Itoa(w.Total), strconv.Itoa(w.Pending),
				strconv.Itoa(w.Running), strconv.Itoa(w.Finished), strconv.Itoa(w.Failed), strconv.Itoa(w.Canceled)})
		}
		if err := c.table("WAVE\tSPEC\tSTATE\tTOTAL\tPENDING\tRUNNING\tFINISHED\tFAILED\tCANCELED", rows); err != nil {
			return err
		}
		fmt.Fprintln(c.out)
		rows = nil
		for _, p := range st.Devices {
			step := "-"
			if p.Progressed {
				step = cloud.Step(strconv.Itoa(p.Step)).Label()
			}
			sent := "-"
			if p.Delta != 0 {
				sent = "delta " + strconv.FormatUint(p.Delta, 10)
			} else if p.Orders > 0 {
				sent = "full"
			}
			rows = append(rows, []string{p.Device, strconv.Itoa(p.Wave + 1), p.State, step, dash(p.FromVersion), sent, dash(p.Reason)})
		}
		return c.table("DEVICE\tWAVE\tSTATE\tSTEP\tFROM\tSENT\tREASON", rows)
	})
}

// campaignAction returns the command that pauses, resumes or cancels a
// campaign (action is the API's verb).
func campaignAction(action string) func(*clientFlags) *cobra.Command {
	return func(f *clientFlags) *cobra.Command {
		return clientCommand(f, action+" ID", action+" a campaign", cli.ExactArgs(1, "the campaign ID"), func(c *conn, args []string) error {
			var cp api.Campaign
			if err := c.postJSON("/campaigns/"+url.PathEscape(args[0])+"/"+action, struct{}{}, &cp); err != nil {
				return err
			}
			if c.json {
				return c.printJSON(cp)
			}
			fmt.Fprintf(c.out, "campaign %d: %s\n", cp.ID, cp.State)
			return nil
		})
	}
}

// parseTarget reads --target: product=PK, group=G or devices=pk/a,pk/b.
func parseTarget(s string) (api.Target, error) {
	k, v, ok := strings.Cut(s, "=")
	if !ok || v == "" {
		return api.Target{}, cli.Usagef("--target %q: give product=PK, group=G or devices=pk/dn1,pk/dn2", s)
	}
	switch k {
	case "product":
		return api.Target{Product: v}, nil
	case "group":
		return api.Target{Group: v}, nil
	case "devices":
		return api.Target{Devices: strings.Split(v, ",")}, nil
	}
	return api.Target{}, cli.Usagef("--target %q: %q is not product, group or devices", s, k)
}

// idList is the repeatable --image of campaign create.
type idList []uint64

func (l *idList) String() string {
	var out []string
	for _, id := range *l {
		out = append(out, strconv.FormatUint(id, 10))
	}
	return strings.Join(out, ",")
}

func (l *idList) Type() string { return "ID" }

func (l *idList) Set(v string) error {
	id, err := strconv.ParseUint(v, 10, 64)
	if err != nil {
		return fmt.Errorf("%q is not an image ID (a number, see image list)", v)
	}
	*l = append(*l, id)
	return nil
}

// versions lists a campaign's distinct image versions.
func versions(imgs []api.CampaignImage) string {
	var out []string
	for _, img := range imgs {
		if !slices.Contains(out, img.Version) {
			out = append(out, img.Version)
		}
	}
	return strings.Join(out, ",")
}

// describeImages says what a campaign sends: "image 1 (1.1.0+0)" for one
// board, "images 1 (1.1.0+0 for b1), 2 (1.1.0+0 for b2)" for several.
func describeImages(imgs []api.CampaignImage) string {
	if len(imgs) == 1 {
		return fmt.Sprintf("image %d (%s)", imgs[0].ID, imgs[0].Version)
	}
	var out []string
	for _, img := range imgs {
		out = append(out, fmt.Sprintf("%d (%s for %s)", img.ID, img.Version, img.Board))
	}
	return "images " + strings.Join(out, ", ")
}

func targetString(t api.Target) string {
	switch {
	case t.Product != "":
		return "product=" + t.Product
	case t.Group != "":
		return "group=" + t.Group
	}
	return "devices=" + strings.Join(t.Devices, ",")
}
