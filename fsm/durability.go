package fsm

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/cairndb/cairn/internal/fsync"
)

// The state database commits without fsync: an entry is durable once the
// Raft log holds it, and the FSM can always be rebuilt from the newest
// snapshot and the log after it. A process crash loses nothing the FSM
// committed (the kernel's page cache survives it), but a power loss or a
// kernel crash may leave the file torn: bbolt reuses pages freed by
// commits that never reached the disk, so no older committed state can be
// trusted either. This file decides, when the FSM opens, whether its
// database may be torn.
//
// A marker file beside the database records the machine's boot id and
// whether the database was synced and closed cleanly. The database is
// trusted when it was closed cleanly, or when the machine has not
// rebooted since it was opened (same boot id): every commit since then is
// in the page cache or on disk. Otherwise the database is moved aside and
// the FSM starts empty; the caller restores the newest snapshot and Raft
// replays the log after it (Rebuilt reports it). See DESIGN.md, "Apply and
// durability".

const (
	markerFile = "state.marker"
	tornSuffix = ".torn"
)

// bootIDFile names the kernel's id of the current boot.
const bootIDFile = "/proc/sys/kernel/random/boot_id"

// bootID returns the id of the machine's current boot, or "" when the
// system does not tell (the database is then trusted only after a clean
// close). A variable so tests can imitate a reboot.
var bootID = func() string {
	b, err := os.ReadFile(bootIDFile)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// marker is the content of the marker file.
type marker struct {
	boot  string
	clean bool
}

func (m marker) encode() []byte {
	state := "open"
	if m.clean {
		state = "clean"
	}
	return []byte("cairn-state-marker 1\nboot " + m.boot + "\nstate " + state + "\n")
}

func decodeMarker(b []byte) (marker, error) {
	lines := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
	if len(lines) != 3 || lines[0] != "cairn-state-marker 1" || !strings.HasPrefix(lines[1], "boot ") {
		return marker{}, errors.New("unrecognized content")
	}
	m := marker{boot: strings.TrimPrefix(lines[1], "boot ")}
	switch lines[2] {
	case "state clean":
		m.clean = true
	case "state open":
	default:
		return marker{}, errors.New("unrecognized state")
	}
	return m, nil
}

// mayBeTorn reports whether the database in dir may have lost commits to
// a reboot. A database without a marker was written by a build that
// synced every commit.
func mayBeTorn(dir string) (bool, error) {
	b, err := os.ReadFile(filepath.Join(dir, markerFile))
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("fsm: read %s: %w", markerFile, err)
	}
	m, err := decodeMarker(b)
	if err != nil {
		// A marker is written with rename, so it is whole or absent; any
		// other content means the directory is not what we think.
		return false, fmt.Errorf("fsm: %s: %w", filepath.Join(dir, markerFile), err)
	}
	boot := bootID()
	return !m.clean && (boot == "" || m.boot != boot), nil
}

// writeMarker replaces the marker file atomically and durably.
func writeMarker(dir string, m marker) error {
	path := filepath.Join(dir, markerFile)
	tmp := path + ".tmp"
	if err := writeFileSync(tmp, m.encode()); err != nil {
		return fmt.Errorf("fsm: write %s: %w", markerFile, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("fsm: write %s: %w", markerFile, err)
	}
	return fsync.Dir(dir)
}

func writeFileSync(path string, b []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		_ = f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}

// setAsideTorn moves a database that may be torn out of the way (keeping
// the last one for inspection) so the FSM starts empty.
func setAsideTorn(path string) (bool, error) {
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err := os.Rename(path, path+tornSuffix); err != nil {
		return false, fmt.Errorf("fsm: set aside %s: %w", path, err)
	}
	return true, fsync.Dir(filepath.Dir(path))
}
