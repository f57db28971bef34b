// Package firmware keeps firmware images content-addressed by their SHA-256
// (in a directory, or in a store several otaserve processes share: Blobs),
// checks them on upload (MCUboot structure, hash and signature with
// the operator's public keys), and serves them to devices over HTTP(S) with
// Range requests so that an interrupted download resumes where it stopped.
//
// It is not the image catalog (fleet/store records versions and boards) and
// does not decide who may download: the URL a campaign sends is the whole
// capability, as with the platform's storage URLs.
package firmware

import (
	"bytes"
	"context"
	"crypto"
	"crypto/md5"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"time"

	"github.com/otaport/otaport/core/image"
)

var (
	// ErrTooLarge is returned by Put when the upload exceeds its size limit.
	ErrTooLarge = errors.New("image too large")
	// ErrRefused is wrapped by every error of Check about the image itself
	// (structure, hash, signature, size) rather than about the server.
	ErrRefused = errors.New("image refused")
)

// Blob is a stored file.
type Blob struct {
	SHA256 string // lower-case hex; the file's name and its HTTP ETag
	MD5    string // lower-case hex, for devices that only know the first protocol
	Size   int64
	// Path is the file on disk; empty when the blob is in shared Blobs.
	Path string
}

// Blobs keeps checked uploads by SHA-256 where several otaserve processes
// reach them (fleet/store's PostgreSQL blobs). The bytes under a name never
// change.
type Blobs interface {
	// Save keeps the size bytes of r under sum; bytes already kept under
	// sum stay as they are.
	Save(ctx context.Context, sum string, r io.Reader, size int64) error
	// Open returns the blob for reading and seeking, without reading it
	// whole, and when it was saved; an error wrapping fs.ErrNotExist when
	// there is none.
	Open(ctx context.Context, sum string) (io.ReadSeekCloser, time.Time, error)
	// Stat returns the blob's size and when it was saved without reading
	// its bytes (a replica asks it before it serves its local copy); an
	// error wrapping fs.ErrNotExist when there is none.
	Stat(ctx context.Context, sum string) (int64, time.Time, error)
	// Remove deletes the blob; one already gone is not an error.
	Remove(ctx context.Context, sum string) error
}

// Store is the firmware store: a directory of blobs named by their
// SHA-256, or, with shared Blobs, a directory where uploads wait for their
// check before they go to the Blobs.
type Store struct {
	dir    string
	shared Blobs  // nil: the blobs are the files of dir
	cache  *cache // local copies of shared blobs; nil without
}

// uploadPattern names the temporary file of an upload in progress.
const uploadPattern = ".upload-*"

// NewStore opens (creating if needed) the blob directory dir. Uploads left
// half done by a process that died are removed: the caller is the only
// otaserve on its data directory (the fleet store's lock), so none of them
// can be in progress.
func NewStore(dir string) (*Store, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("open firmware store %s: %w", dir, err)
	}
	left, err := filepath.Glob(filepath.Join(dir, uploadPattern))
	if err != nil {
		return nil, fmt.Errorf("open firmware store %s: %w", dir, err)
	}
	for _, f := range left {
		if err := os.Remove(f); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("open firmware store %s: remove an interrupted upload: %w", dir, err)
		}
	}
	return &Store{dir: dir}, nil
}

// NewSharedStore is NewStore whose blobs are kept in shared rather than in
// dir, which holds uploads while they are received and checked, and, in
// dir/cache, local copies of the blobs downloaded, at most cacheSize bytes
// (DefaultCacheSize is a fair start; 0 keeps none and removes those left).
// Another process on the same dir gets dir/cache.1, and so on; Close lets
// the next process have the directory.
// Downloads are then served from a file, and each blob is read from shared
// once per process rather than once per download.
func NewSharedStore(dir string, shared Blobs, cacheSize int64) (*Store, error) {
	s, err := NewStore(dir)
	if err != nil {
		return nil, err
	}
	s.shared = shared
	if cacheSize <= 0 {
		if err := removeCaches(dir); err != nil {
			return nil, err
		}
		return s, nil
	}
	if s.cache, err = newCache(dir, cacheSize, shared); err != nil {
		return nil, err
	}
	return s, nil
}

// Close lets another process take this one's cache directory; the store
// is not used after.
func (s *Store) Close() error {
	if s.cache == nil {
		return nil
	}
	return s.cache.lock.Close()
}

var sumPattern = regexp.MustCompile(`^[0-9a-f]{64}$`)

// Path is where the blob with this SHA-256 lives (whether or not it exists).
func (s *Store) Path(sum string) string { return filepath.Join(s.dir, sum) }

// Open opens a stored blob for reading, with the time it was stored. sum
// must be lower-case hex.
func (s *Store) Open(ctx context.Context, sum string) (io.ReadSeekCloser, time.Time, error) {
	if !sumPattern.MatchString(sum) {
		return nil, time.Time{}, fmt.Errorf("open firmware %q: not a lower-case hex SHA-256: %w", sum, os.ErrNotExist)
	}
	if s.shared != nil {
		open := s.shared.Open
		if s.cache != nil {
			open = s.cache.open
		}
		r, at, err := open(ctx, sum)
		if err != nil {
			return nil, time.Time{}, fmt.Errorf("open firmware %s: %w", sum, err)
		}
		return r, at, nil
	}
	f, err := os.Open(s.Path(sum))
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("open firmware %s: %w", sum, err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, time.Time{}, fmt.Errorf("open firmware %s: %w", sum, err)
	}
	return f, st.ModTime(), nil
}

// Remove deletes the blob with this SHA-256; a blob already gone is not an
// error. A device downloading it from a file (the directory, or the local
// copy of a shared blob) keeps its open file to the end; from shared Blobs,
// its next read fails. The local copies of the other processes on shared
// Blobs are removed at their next Open of the blob.
func (s *Store) Remove(ctx context.Context, sum string) error {
	if !sumPattern.MatchString(sum) {
		return fmt.Errorf("remove firmware %q: not a lower-case hex SHA-256", sum)
	}
	if s.shared != nil {
		if err := s.shared.Remove(ctx, sum); err != nil {
			return fmt.Errorf("remove firmware %s: %w", sum, err)
		}
		if s.cache != nil {
			return s.cache.remove(sum)
		}
		return nil
	}
	if err := os.Remove(s.Path(sum)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove firmware %s: %w", sum, err)
	}
	return nil
}

// Put copies r into the store. check runs on the complete file before it is
// given its name, so a refused upload never becomes visible; a nil check
// accepts anything. maxSize bounds the upload (0: no bound). Putting bytes
// already stored keeps the existing file.
func (s *Store) Put(ctx context.Context, r io.Reader, maxSize int64, check func(f *os.File, size int64) error) (Blob, error) {
	tmp, err := os.CreateTemp(s.dir, uploadPattern)
	if err != nil {
		return Blob{}, fmt.Errorf("store firmware: %w", err)
	}
	defer func() {
		tmp.Close()
		os.Remove(tmp.Name()) // a no-op once renamed
	}()
	hs, hm := sha256.New(), md5.New()
	src := io.Reader(ctxReader{ctx, r})
	if maxSize > 0 {
		src = io.LimitReader(src, maxSize+1)
	}
	n, err := io.Copy(io.MultiWriter(tmp, hs, hm), src)
	if err != nil {
		return Blob{}, fmt.Errorf("store firmware: receive: %w", err)
	}
	if maxSize > 0 && n > maxSize {
		return Blob{}, fmt.Errorf("store firmware: more than %d bytes: %w", maxSize, ErrTooLarge)
	}
	if check != nil {
		if err := check(tmp, n); err != nil {
			return Blob{}, err
		}
	}
	if err := tmp.Sync(); err != nil {
		return Blob{}, fmt.Errorf("store firmware: %w", err)
	}
	b := Blob{SHA256: hex.EncodeToString(hs.Sum(nil)), MD5: hex.EncodeToString(hm.Sum(nil)), Size: n}
	if s.shared != nil {
		if _, err := tmp.Seek(0, io.SeekStart); err != nil {
			return Blob{}, fmt.Errorf("store firmware: %w", err)
		}
		if err := s.shared.Save(ctx, b.SHA256, tmp, n); err != nil {
			return Blob{}, fmt.Errorf("store firmware %s: %w", b.SHA256, err)
		}
		return b, nil
	}
	b.Path = s.Path(b.SHA256)
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return Blob{}, fmt.Errorf("store firmware: %w", err)
	}
	if err := os.Rename(tmp.Name(), b.Path); err != nil {
		return Blob{}, fmt.Errorf("store firmware %s: %w", b.SHA256, err)
	}
	return b, nil
}

type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// Meta is what an upload check learns from a verified image.
type Meta struct {
	Version         string // image.Version.String(), "1.2.3+4"
	SecurityCounter uint32
	// SignatureType is the signing scheme as image.TLVType.KeyType names
	// it ("ecdsa-p256", "ed25519", ...), KeyID the hex SHA-256 of the key
	// that verified it (MCUboot's KEYHASH).
	SignatureType string
	KeyID         string
	// Hash is the lower-case hex of the image's SHA-256 hash TLV: what a
	// device running it reports, what a delta made from it names as base.
	Hash string
	// DeltaBase and DeltaTarget are set for a delta image: the hashes (as
	// Hash) of the full image it is made from and of the one it rebuilds.
	DeltaBase, DeltaTarget string
}

// IsDelta reports whether the checked image is a delta image.
func (m Meta) IsDelta() bool { return m.DeltaTarget != "" }

// meta is what Check reports of a verified image, its key ID apart.
func meta(img *image.Image) Meta {
	m := Meta{Version: img.Version.String(), SecurityCounter: img.SecurityCounter, SignatureType: img.Signature.KeyType(), Hash: hex.EncodeToString(img.Hash)}
	if d := img.Delta; d != nil {
		m.DeltaBase, m.DeltaTarget = hex.EncodeToString(d.BaseHash), hex.EncodeToString(d.TargetHash)
	}
	return m
}

// Check verifies an uploaded file as an MCUboot image signed by one of keys
// (a delta image, core/image's FlagDelta, as well: its own signature, over
// the patch and the TLVs that name its base and target),
// and refuses trailing bytes: the order announces the file's size, and a
// device must not be sent more than the image it installs. At least one key
// is required, so that the fleet never distributes an image no one signed.
// A non-empty algorithm is the one the target board's bootloader checks
// ("ecdsa-p256", ...): the image must carry a signature of that algorithm
// that verifies with one of keys, as the device will require.
func Check(r io.ReaderAt, size int64, keys []crypto.PublicKey, algorithm string) (Meta, error) {
	if len(keys) == 0 {
		return Meta{}, fmt.Errorf("%w: no public key configured to check image signatures: start otaserve with --key PUB.pem", ErrRefused)
	}
	img, err := image.Verify(r, size, keys)
	if errors.Is(err, image.ErrEncrypted) && img != nil {
		return checkEncrypted(img, size, keys, algorithm)
	}
	if err != nil {
		return Meta{}, fmt.Errorf("%w: %w", ErrRefused, err)
	}
	if algorithm != "" && img.Signature.KeyType() != algorithm {
		// Signed by one of our keys, but not with the board's algorithm:
		// say so by name rather than as an unknown key.
		if err := img.CheckAlgorithm(algorithm); err != nil {
			return Meta{}, fmt.Errorf("%w: %w: sign it with the board's %s key", ErrRefused, err, algorithm)
		}
		own := image.KeysOfType(keys, algorithm)
		if len(own) == 0 {
			return Meta{}, fmt.Errorf("%w: the board checks %s signatures and otaserve has no %s public key (it has %s): start otaserve with --key for the board's key",
				ErrRefused, algorithm, algorithm, image.DescribeKeys(keys))
		}
		if img, err = image.Verify(r, size, own); err != nil {
			return Meta{}, fmt.Errorf("%w: its %s signature: %w", ErrRefused, algorithm, err)
		}
	}
	if img.TotalSize != size {
		return Meta{}, fmt.Errorf("%w: the file has %d bytes but the image ends at %d: upload the unpadded image", ErrRefused, size, img.TotalSize)
	}
	m := meta(img)
	if img.Signer != nil {
		kh, err := image.KeyHash(img.Signer)
		if err != nil {
			return Meta{}, fmt.Errorf("%w: hash of the signing key: %w", ErrRefused, err)
		}
		m.KeyID = hex.EncodeToString(kh)
	}
	return m, nil
}

// checkEncrypted is Check of an encrypted image (otaimg sign --encrypt,
// imgtool -E). Its hash and signature cover the plain payload, which only
// the devices can decrypt (the server never holds their key), so the
// server checks what it can: the key TLV, the board's algorithm, a
// signature TLV that names (KEYHASH or PUBKEY) one of keys, and the size.
// Each device verifies the hash and the signature, decrypted, before
// anything is marked bootable.
func checkEncrypted(img *image.Image, size int64, keys []crypto.PublicKey, algorithm string) (Meta, error) {
	if img.Encryption.KeyTLV == 0 {
		return Meta{}, fmt.Errorf("%w: image flags %s: encrypted but no key TLV carries its AES key: sign it again with otaimg sign --encrypt", ErrRefused, img.Header.FlagString())
	}
	if img.Signature == 0 {
		return Meta{}, fmt.Errorf("%w: %w", ErrRefused, image.ErrUnsigned)
	}
	if algorithm != "" {
		if err := img.CheckAlgorithm(algorithm); err != nil {
			return Meta{}, fmt.Errorf("%w: %w: sign it with the board's %s key", ErrRefused, err, algorithm)
		}
		keys = image.KeysOfType(keys, algorithm)
	}
	named := img.KeyHash
	if named == nil && img.PublicKey != nil {
		h := sha256.Sum256(img.PublicKey)
		named = h[:]
	}
	var id string
	for _, k := range keys {
		if kh, err := image.KeyHash(k); err == nil && bytes.Equal(kh, named) {
			id = hex.EncodeToString(kh)
		}
	}
	if id == "" {
		return Meta{}, fmt.Errorf("%w: encrypted image %s names a signing key (key hash %x) that is none of otaserve's (%s): sign it with one of them",
			ErrRefused, img.Version, named[:min(4, len(named))], image.DescribeKeys(keys))
	}
	if img.TotalSize != size {
		return Meta{}, fmt.Errorf("%w: the file has %d bytes but the image ends at %d: upload the unpadded image", ErrRefused, size, img.TotalSize)
	}
	m := meta(img)
	m.KeyID = id
	return m, nil
}

// Handler serves GET and HEAD of /{sha256} from the store, with Range,
// If-Range and If-None-Match handled by http.ServeContent against the strong
// ETag "sha256". Mount it under a prefix with http.StripPrefix.
func Handler(s *Store) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		sum := r.URL.Path
		if len(sum) > 0 && sum[0] == '/' {
			sum = sum[1:]
		}
		f, modTime, err := s.Open(r.Context(), sum)
		if errors.Is(err, fs.ErrNotExist) {
			http.Error(w, "no such firmware", http.StatusNotFound)
			return
		}
		if err != nil {
			http.Error(w, "firmware unreadable", http.StatusInternalServerError)
			return
		}
		defer f.Close()
		var content io.ReadSeeker = f
		if c, ok := f.(*cachedFile); ok {
			// The *os.File itself, which the server sends with sendfile.
			content = c.File
		}
		// The content never changes under a name, so it may be cached
		// forever; the ETag is what makes If-Range resume safe.
		w.Header().Set("ETag", `"`+sum+`"`)
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Cache-Control", "public, max-age=31536000, immutable")
		http.ServeContent(w, r, "", modTime, content)
	})
}
