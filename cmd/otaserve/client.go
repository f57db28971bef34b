package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/otaport/otaport/core/cloud"
	"github.com/otaport/otaport/fleet/api"
)

// conn is the CLI's link to a running otaserve.
type conn struct {
	base  string
	token string
	json  bool
	out   io.Writer
}

// clientFlags adds the flags every client command shares.
func clientFlags(fs *flag.FlagSet) func() (*conn, error) {
	server := fs.String("server", os.Getenv("OTASERVE_URL"), "otaserve URL (env OTASERVE_URL; default: DATA/url, else http://127.0.0.1:8080)")
	token := fs.String("token", os.Getenv("OTASERVE_TOKEN"), "operator token (env OTASERVE_TOKEN; default: DATA/token)")
	data := fs.String("data", defaultData, "data directory of a local otaserve, to find its URL and token")
	asJSON := fs.Bool("json", false, "print JSON for scripts instead of tables")
	return func() (*conn, error) {
		c := &conn{base: *server, token: *token, json: *asJSON}
		if c.base == "" {
			if b, err := os.ReadFile(filepath.Join(*data, "url")); err == nil {
				c.base = strings.TrimSpace(string(b))
			} else {
				c.base = "http://127.0.0.1:8080"
			}
		}
		if c.token == "" {
			b, err := os.ReadFile(filepath.Join(*data, "token"))
			if err != nil {
				return nil, fmt.Errorf("no operator token: pass --token, set OTASERVE_TOKEN, or run where %s exists (%w)", filepath.Join(*data, "token"), err)
			}
			c.token = strings.TrimSpace(string(b))
		}
		c.base = strings.TrimSuffix(c.base, "/")
		return c, nil
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
	resp, err := http.DefaultClient.Do(req)
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

func client(group string, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return usagef("%s: missing subcommand", group)
	}
	name := group + " " + args[0]
	fs := flag.NewFlagSet("otaserve "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	connect := clientFlags(fs)
	parse := func(nargs int, argName string) (*conn, error) {
		if err := fs.Parse(args[1:]); err != nil {
			return nil, err
		}
		if fs.NArg() != nargs {
			if nargs == 0 {
				return nil, usagef("%s: unexpected argument %q", name, fs.Arg(0))
			}
			return nil, usagef("%s: give %s", name, argName)
		}
		c, err := connect()
		if c != nil {
			c.out = stdout
		}
		return c, err
	}
	switch name {
	case "device add":
		pk := fs.String("product", "", "product key")
		dn := fs.String("name", "", "device name")
		secret := fs.String("secret", "", "device secret (generated and printed once if absent)")
		board := fs.String("board", "", "board the device's images are built for")
		grp := fs.String("group", "", "group, for campaign targets")
		c, err := parse(0, "")
		if err != nil {
			return err
		}
		var d api.Device
		if err := c.postJSON("/devices", api.AddDevice{ProductKey: *pk, DeviceName: *dn, DeviceSecret: *secret, Board: *board, Group: *grp}, &d); err != nil {
			return err
		}
		if c.json {
			return c.printJSON(d)
		}
		fmt.Fprintf(c.out, "added %s (board %s)\n", d.Key(), d.Board)
		if *secret == "" {
			fmt.Fprintf(c.out, "device secret (shown once): %s\n", d.DeviceSecret)
		}
		return nil
	case "device list":
		c, err := parse(0, "")
		if err != nil {
			return err
		}
		var ds []api.Device
		if err := c.call(http.MethodGet, "/devices", "", nil, &ds); err != nil {
			return err
		}
		if c.json {
			return c.printJSON(ds)
		}
		var rows [][]string
		for _, d := range ds {
			rows = append(rows, []string{d.ProductKey, d.DeviceName, d.Board, dash(d.Group), dash(d.Version), string(d.State), when(d.LastSeen), dash(d.LastError)})
		}
		return c.table("PRODUCT\tDEVICE\tBOARD\tGROUP\tVERSION\tSTATE\tLAST SEEN\tLAST ERROR", rows)
	case "device get", "device delete":
		c, err := parse(1, "PK/DN")
		if err != nil {
			return err
		}
		path, err := devicePath(name, fs.Arg(0))
		if err != nil {
			return err
		}
		if args[0] == "delete" {
			if err := c.call(http.MethodDelete, path, "", nil, nil); err != nil {
				return err
			}
			fmt.Fprintf(c.out, "deleted %s: its sign-in is revoked\n", fs.Arg(0))
			return nil
		}
		var d api.Device
		if err := c.call(http.MethodGet, path, "", nil, &d); err != nil {
			return err
		}
		if c.json {
			return c.printJSON(d)
		}
		return c.table("PRODUCT\tDEVICE\tBOARD\tGROUP\tVERSION\tSTATE\tLAST SEEN\tLAST ERROR",
			[][]string{{d.ProductKey, d.DeviceName, d.Board, dash(d.Group), dash(d.Version), string(d.State), when(d.LastSeen), dash(d.LastError)}})
	case "image upload":
		board := fs.String("board", "", "board the image is built for")
		version := fs.String("version", "", "expected version (checked against the image header)")
		c, err := parse(1, "the image FILE")
		if err != nil {
			return err
		}
		f, err := os.Open(fs.Arg(0))
		if err != nil {
			return err
		}
		defer f.Close()
		q := url.Values{"board": {*board}}
		if *version != "" {
			q.Set("version", *version)
		}
		var img api.Image
		if err := c.call(http.MethodPost, "/images?"+q.Encode(), "application/octet-stream", f, &img); err != nil {
			return fmt.Errorf("upload %s: %w", fs.Arg(0), err)
		}
		if c.json {
			return c.printJSON(img)
		}
		fmt.Fprintf(c.out, "image %d: %s for %s, %d bytes, sha256 %s, signed %s\n", img.ID, img.Version, img.Board, img.Size, img.SHA256, img.SignatureType)
		return nil
	case "image list":
		c, err := parse(0, "")
		if err != nil {
			return err
		}
		var imgs []api.Image
		if err := c.call(http.MethodGet, "/images", "", nil, &imgs); err != nil {
			return err
		}
		if c.json {
			return c.printJSON(imgs)
		}
		var rows [][]string
		for _, i := range imgs {
			rows = append(rows, []string{strconv.FormatUint(i.ID, 10), i.Version, i.Board, strconv.FormatInt(i.Size, 10),
				i.SHA256[:min(12, len(i.SHA256))], i.SignatureType, strconv.FormatUint(uint64(i.SecurityCounter), 10), when(i.Uploaded)})
		}
		return c.table("ID\tVERSION\tBOARD\tSIZE\tSHA256\tSIGNATURE\tSEC-CNT\tUPLOADED", rows)
	case "image delete", "campaign delete":
		c, err := parse(1, "the "+group+" ID")
		if err != nil {
			return err
		}
		if err := c.call(http.MethodDelete, "/"+group+"s/"+url.PathEscape(fs.Arg(0)), "", nil, nil); err != nil {
			return err
		}
		fmt.Fprintf(c.out, "deleted %s %s\n", group, fs.Arg(0))
		return nil
	case "campaign create":
		var imageIDs idList
		fs.Var(&imageIDs, "image", "image `ID` (see image list); repeat it for a target of several boards, one image per board")
		target := fs.String("target", "", "product=PK, group=G or devices=pk/dn1,pk/dn2")
		waves := fs.String("waves", "100%", "cumulative wave sizes, counts or percentages: 1,10%,100%")
		success := fs.Int("success", 80, "a wave succeeds when this percentage of its devices finished")
		errPct := fs.Int("error", 20, "the campaign pauses when more than this percentage of a wave failed")
		c, err := parse(0, "")
		if err != nil {
			return err
		}
		t, err := parseTarget(*target)
		if err != nil {
			return err
		}
		var camp api.Campaign
		req := api.CreateCampaign{ImageIDs: imageIDs, Target: t, Waves: *waves, SuccessPercent: *success, ErrorPercent: *errPct}
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
		fmt.Fprintf(c.out, "campaign %d: %s to %d devices in %d waves, %s\n", camp.ID, versions(camp.Images), n, len(camp.Waves), camp.State)
		return nil
	case "campaign list":
		c, err := parse(0, "")
		if err != nil {
			return err
		}
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
			rows = append(rows, []string{strconv.FormatUint(cp.ID, 10), strings.Join(ids, ","), versions(cp.Images),
				cp.State, strconv.Itoa(len(cp.Waves)), targetString(cp.Target), dash(cp.Reason)})
		}
		return c.table("ID\tIMAGE\tVERSION\tSTATE\tWAVES\tTARGET\tREASON", rows)
	case "campaign status":
		c, err := parse(1, "the campaign ID")
		if err != nil {
			return err
		}
		var st api.Status
		if err := c.call(http.MethodGet, "/campaigns/"+url.PathEscape(fs.Arg(0)), "", nil, &st); err != nil {
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
		fmt.Fprintf(c.out, "\nthresholds: success >= %d%%, error > %d%%\n\n", cp.SuccessPercent, cp.ErrorPercent)
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
			rows = append(rows, []string{p.Device, strconv.Itoa(p.Wave + 1), p.State, step, dash(p.FromVersion), dash(p.Reason)})
		}
		return c.table("DEVICE\tWAVE\tSTATE\tSTEP\tFROM\tREASON", rows)
	case "campaign pause", "campaign resume", "campaign cancel":
		c, err := parse(1, "the campaign ID")
		if err != nil {
			return err
		}
		var cp api.Campaign
		if err := c.postJSON("/campaigns/"+url.PathEscape(fs.Arg(0))+"/"+args[0], struct{}{}, &cp); err != nil {
			return err
		}
		if c.json {
			return c.printJSON(cp)
		}
		fmt.Fprintf(c.out, "campaign %d: %s\n", cp.ID, cp.State)
		return nil
	}
	return usagef("unknown command %q", name)
}

// devicePath turns a PK/DN argument of command cmd into the device's API
// path.
func devicePath(cmd, arg string) (string, error) {
	pk, dn, ok := strings.Cut(arg, "/")
	if !ok {
		return "", usagef("%s: %q: give productKey/deviceName", cmd, arg)
	}
	return "/devices/" + url.PathEscape(pk) + "/" + url.PathEscape(dn), nil
}

// parseTarget reads --target: product=PK, group=G or devices=pk/a,pk/b.
func parseTarget(s string) (api.Target, error) {
	k, v, ok := strings.Cut(s, "=")
	if !ok || v == "" {
		return api.Target{}, usagef("--target %q: give product=PK, group=G or devices=pk/dn1,pk/dn2", s)
	}
	switch k {
	case "product":
		return api.Target{Product: v}, nil
	case "group":
		return api.Target{Group: v}, nil
	case "devices":
		return api.Target{Devices: strings.Split(v, ",")}, nil
	}
	return api.Target{}, usagef("--target %q: %q is not product, group or devices", s, k)
}

// idList is a repeatable flag of IDs.
type idList []uint64

func (l *idList) String() string {
	var out []string
	for _, id := range *l {
		out = append(out, strconv.FormatUint(id, 10))
	}
	return strings.Join(out, ",")
}

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
