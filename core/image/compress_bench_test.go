package image

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// corpusDir is where the firmware pairs for size benchmarks are: env
// OTAPORT_CORPUS, else shared/corpus beside the project's checkout.
func corpusDir(b *testing.B) string {
	b.Helper()
	dir := os.Getenv("OTAPORT_CORPUS")
	if dir == "" {
		dir = filepath.Join("..", "..", "..", "shared", "corpus")
	}
	if _, err := os.Stat(dir); err != nil {
		b.Skipf("no firmware corpus at %s: set OTAPORT_CORPUS to a folder of <pair>/<file>.bin", dir)
	}
	return dir
}

// BenchmarkCompress compresses every firmware file of the corpus as
// otaimg sign --compression does, and reports each size as a share of the
// plain payload beside imgtool's own encoder (liblzma through Python's lzma,
// the same filters and options) and xz -9e of the whole file, where those
// tools are installed. The table is logged once (go test -v); the metrics
// are the mean shares.
func BenchmarkCompress(b *testing.B) {
	dir := corpusDir(b)
	files, _ := filepath.Glob(filepath.Join(dir, "*", "*.bin"))
	if len(files) == 0 {
		b.Skipf("no *.bin under %s", dir)
	}
	type row struct {
		name                           string
		size                           int
		lzma2, thumb, pyLZMA2, pyThumb int
		xz                             int
	}
	var rows []row
	for range b.N {
		rows = rows[:0]
		for _, f := range files {
			body, err := os.ReadFile(f)
			if err != nil {
				b.Fatal(err)
			}
			r := row{name: strings.TrimPrefix(f, dir+string(filepath.Separator)), size: len(body)}
			for _, c := range []struct {
				thumb bool
				n     *int
			}{{false, &r.lzma2}, {true, &r.thumb}} {
				out, err := compressPayload(body, c.thumb)
				if err != nil {
					b.Fatal(err)
				}
				*c.n = len(out) - 2 // the stream, as imgtool counts it
			}
			r.pyLZMA2, r.pyThumb = liblzmaSize(b, f, false), liblzmaSize(b, f, true)
			if out, err := exec.Command("xz", "-9e", "-c", f).Output(); err == nil {
				r.xz = len(out)
			}
			rows = append(rows, r)
		}
	}
	share := func(n, of int) string {
		if n == 0 {
			return "-"
		}
		return fmt.Sprintf("%.1f %%", float64(n)*100/float64(of))
	}
	var sum [5]float64
	var buf bytes.Buffer
	buf.WriteString("\n| file | bytes | otaimg lzma2 | otaimg lzma2armthumb | imgtool lzma2 | imgtool lzma2armthumb | xz -9e |\n|---|---|---|---|---|---|---|\n")
	for _, r := range rows {
		fmt.Fprintf(&buf, "| %s | %d | %s | %s | %s | %s | %s |\n", r.name, r.size, share(r.lzma2, r.size), share(r.thumb, r.size),
			share(r.pyLZMA2, r.size), share(r.pyThumb, r.size), share(r.xz, r.size))
		for i, n := range []int{r.lzma2, r.thumb, r.pyLZMA2, r.pyThumb, r.xz} {
			sum[i] += float64(n) / float64(r.size) * 100 / float64(len(rows))
		}
	}
	b.Log(buf.String())
	b.ReportMetric(sum[0], "lzma2-%")
	b.ReportMetric(sum[1], "armthumb-%")
	if sum[2] > 0 {
		b.ReportMetric(sum[2], "imgtool-lzma2-%")
	}
	if sum[4] > 0 {
		b.ReportMetric(sum[4], "xz-9e-%")
	}
}

// liblzmaSize is the size of the raw stream imgtool writes for file (its
// main.py: preset 9, dict 128 KiB, lc 3, lp 1), 0 without python3.
func liblzmaSize(b *testing.B, file string, thumb bool) int {
	const script = `import lzma, sys
f = [{"id": lzma.FILTER_LZMA2, "preset": 9, "dict_size": 131072, "lc": 3, "lp": 1}]
if sys.argv[2] == "1":
    f.insert(0, {"id": lzma.FILTER_ARMTHUMB})
print(len(lzma.compress(open(sys.argv[1], 'rb').read(), format=lzma.FORMAT_RAW, filters=f)))
`
	arg := "0"
	if thumb {
		arg = "1"
	}
	out, err := exec.Command("python3", "-c", script, file, arg).Output()
	if err != nil {
		return 0
	}
	n, _ := strconv.Atoi(strings.TrimSpace(string(out)))
	return n
}
