// Package pgtest is test support: a real PostgreSQL server, from the
// distribution's package, started once per test package in a temporary
// directory and shared by its tests, each of which gets a database of its
// own (CREATE DATABASE is cheap; a server start is not).
//
// PostgreSQL refuses to run as root, and tests run as root in CI: the
// server's directory then belongs to an unprivileged user (nobody, or
// otaport-pgtest, made when missing), and initdb and postgres run as that
// user (setpriv). A test is skipped when the programs are missing, unless
// CI=true, where it fails: CI installs them (.ci/run).
//
// It is not a way to reach a PostgreSQL the tests did not start.
package pgtest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/otaport/otaport/internal/loopbacktest"
)

// Server is a PostgreSQL server for one test package. Its zero value is
// ready: the server starts at the first DB call, and Stop (from TestMain)
// stops it.
type Server struct {
	once  sync.Once
	err   error // why the server could not start
	dir   string
	port  int
	cmd   *exec.Cmd
	exit  chan struct{}
	mu    sync.Mutex
	count int
}

// unprivileged is the user the server runs as when the tests run as root.
const unprivileged = "otaport-pgtest"

// BinDir finds the directory of initdb and postgres: Debian's
// /usr/lib/postgresql/<version>/bin (the highest version), or PATH.
func BinDir() (string, error) {
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return version(dirs[i]) > version(dirs[j]) })
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "postgres")); err == nil {
			return d, nil
		}
	}
	if p, err := exec.LookPath("postgres"); err == nil {
		return filepath.Dir(p), nil
	}
	return "", ErrNotInstalled
}

func version(binDir string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(binDir)))
	return n
}

// DB makes a new, empty database on the shared server and returns its URL;
// the database is dropped when the test ends. It skips the test when
// PostgreSQL is not installed and CI is not set, and fails it otherwise.
func (s *Server) DB(t testing.TB) string {
	t.Helper()
	if err := s.Start(); err != nil {
		if errors.Is(err, ErrNotInstalled) && os.Getenv("CI") != "true" {
			t.Skipf("PostgreSQL tests skipped: %v", err)
		}
		t.Fatalf("start PostgreSQL: %v", err)
	}
	url, drop, err := s.Create()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := drop(); err != nil {
			t.Error(err)
		}
	})
	return url
}

// ErrNotInstalled is the error of Start when PostgreSQL's programs are not
// installed.
var ErrNotInstalled = errors.New("PostgreSQL's initdb and postgres are not installed (apt-get install postgresql)")

// Start starts the server if it has not started yet; DB calls it. It is
// for callers that have no testing.TB (a testscript's Setup), which must
// skip or fail as DB does.
func (s *Server) Start() error {
	s.once.Do(func() { s.err = s.start() })
	return s.err
}

// Create makes a new, empty database on the started server and returns
// its URL and the function that drops it.
func (s *Server) Create() (url string, drop func() error, err error) {
	s.mu.Lock()
	s.count++
	name := fmt.Sprintf("t%d", s.count)
	s.mu.Unlock()
	admin := func(sql string) error {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, s.url("postgres"))
		if err != nil {
			return fmt.Errorf("connect to the test PostgreSQL: %w", err)
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, sql); err != nil {
			return fmt.Errorf("%s: %w", sql, err)
		}
		return nil
	}
	if err := admin("CREATE DATABASE " + name); err != nil {
		return "", nil, err
	}
	// FORCE ends the sessions a server under test left open.
	return s.url(name), func() error { return admin("DROP DATABASE " + name + " WITH (FORCE)") }, nil
}

func (s *Server) url(db string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", s.port, db)
}

// start runs initdb and postgres in a new directory on a free loopback
// port, and waits until the server takes connections.
func (s *Server) start() error {
	bin, err := BinDir()
	if err != nil {
		return err
	}
	if s.dir, err = os.MkdirTemp("", "pgtest-"); err != nil {
		return err
	}
	data := filepath.Join(s.dir, "data")
	var asUser []string // the command prefix that drops root
	if os.Geteuid() == 0 {
		uid, gid, err := userIDs()
		if err != nil {
			return err
		}
		if err := os.Chown(s.dir, uid, gid); err != nil {
			return err
		}
		asUser = []string{"setpriv", "--reuid=" + strconv.Itoa(uid), "--regid=" + strconv.Itoa(gid), "--clear-groups",
			// Set again after the change of user, which clears it: a test
			// binary that dies takes its server along.
			"--pdeathsig", "KILL", "--"}
	}
	run := func(name string, args ...string) *exec.Cmd {
		argv := append(append(asUser[:len(asUser):len(asUser)], filepath.Join(bin, name)), args...)
		cmd := exec.Command(argv[0], argv[1:]...)
		// The server's own messages go to its log file; initdb's to
		// the error of start.
		cmd.Dir = s.dir
		return cmd
	}
	initdb := run("initdb", "-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C", "--no-sync")
	if out, err := initdb.CombinedOutput(); err != nil {
		return fmt.Errorf("initdb: %w\n%s", err, out)
	}
	if s.port, err = loopbacktest.Port(); err != nil {
		return err
	}
	// No Unix socket (its directory would need to be the user's too), no
	// fsync: a test's database does not outlive the test.
	s.cmd = run("postgres", "-D", data, "-p", strconv.Itoa(s.port), "-c", "listen_addresses=127.0.0.1",
		"-c", "unix_socket_directories=", "-c", "fsync=off", "-c", "synchronous_commit=off",
		"-c", "full_page_writes=off", "-c", "max_connections=200", "-c", "logging_collector=off")
	logf, err := os.Create(filepath.Join(s.dir, "postgres.log"))
	if err != nil {
		return err
	}
	defer logf.Close()
	s.cmd.Stdout, s.cmd.Stderr = logf, logf
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := s.cmd.Start(); err != nil {
		return fmt.Errorf("start postgres: %w", err)
	}
	s.exit = make(chan struct{})
	go func() { _ = s.cmd.Wait(); close(s.exit) }()
	deadline := time.Now().Add(60 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		conn, err := pgx.Connect(ctx, s.url("postgres"))
		cancel()
		if err == nil {
			conn.Close(context.Background())
			return nil
		}
		select {
		case <-s.exit:
			log, _ := os.ReadFile(logf.Name())
			return fmt.Errorf("postgres exited: %s", strings.TrimSpace(string(log)))
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("postgres did not take connections within a minute: %w", err)
		}
	}
}

// userIDs returns the unprivileged user's ids: nobody's, or those of a
// system user made for the purpose when there is no nobody.
func userIDs() (uid, gid int, err error) {
	u, err := user.Lookup("nobody")
	if err != nil {
		if u, err = user.Lookup(unprivileged); err != nil {
			if out, err := exec.Command("useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", unprivileged).CombinedOutput(); err != nil {
				return 0, 0, fmt.Errorf("no user nobody, and useradd %s: %w: %s", unprivileged, err, out)
			}
			if u, err = user.Lookup(unprivileged); err != nil {
				return 0, 0, err
			}
		}
	}
	uid, err = strconv.Atoi(u.Uid)
	if err == nil {
		gid, err = strconv.Atoi(u.Gid)
	}
	return uid, gid, err
}

// Stop stops the server, if it started, and removes its directory. Call it
// from TestMain after m.Run.
func (s *Server) Stop() {
	if s.cmd != nil && s.cmd.Process != nil {
		// SIGINT is PostgreSQL's fast shutdown: sessions are ended.
		_ = s.cmd.Process.Signal(syscall.SIGINT)
		select {
		case <-s.exit:
		case <-time.After(30 * time.Second):
			_ = s.cmd.Process.Kill()
			<-s.exit
		}
	}
	if s.dir != "" {
		_ = os.RemoveAll(s.dir)
	}
}
