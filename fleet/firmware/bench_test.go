package firmware

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
)

// BenchmarkHandler_Download: a device's download of a 1 MiB image, whole,
// from the directory and from PostgreSQL.
//
//	go test ./fleet/firmware -run '^$' -bench Handler -benchtime 2s
func BenchmarkHandler_Download(b *testing.B) {
	for _, be := range []string{"dir", "postgres"} {
		b.Run(be, func(b *testing.B) {
			s := storeOf(b, be)
			data := bytes.Repeat([]byte("firmware"), 1<<17)
			blob, err := s.Put(context.Background(), bytes.NewReader(data), 0, nil)
			if err != nil {
				b.Fatal(err)
			}
			srv := httptest.NewServer(Handler(s))
			defer srv.Close()
			b.SetBytes(int64(len(data)))
			for b.Loop() {
				resp, err := http.Get(srv.URL + "/" + blob.SHA256)
				if err != nil {
					b.Fatal(err)
				}
				n, _ := io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if n != int64(len(data)) {
					b.Fatalf("%d bytes", n)
				}
			}
		})
	}
}
