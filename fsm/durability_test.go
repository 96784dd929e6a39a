package fsm

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
)

// crash closes f's database the way a killed process leaves it: without
// the sync and the clean mark of Close, and without the batches applied
// since the last commit (Raft applies them again from its log).
func crash(t *testing.T, f *FSM) {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	f.dropPending()
	if err := f.db.Close(); err != nil {
		t.Fatal(err)
	}
	f.db = nil
}

// reboot makes bootID report another boot until the test ends.
func reboot(t *testing.T, id string) {
	t.Helper()
	prev := bootID
	bootID = func() string { return id }
	t.Cleanup(func() { bootID = prev })
}

func openSynced(t *testing.T, dir string) *FSM {
	t.Helper()
	f, err := Open(Options{Dir: dir})
	if err != nil {
		t.Fatalf("Open(%s): %v", dir, err)
	}
	t.Cleanup(func() { _ = f.Close() })
	return f
}

// TestDurabilityTrustAfterCrashOrReboot: commits are not fsynced, so a
// database is trusted after a crash only while the machine has not
// rebooted; after a reboot only a cleanly closed one is. A database that
// may be torn is set aside, never read.
func TestDurabilityTrustAfterCrashOrReboot(t *testing.T) {
	reboot(t, "boot-1")
	cases := []struct {
		name      string
		clean     bool   // closed with Close, not crashed
		nextBoot  string // the boot id at the next open
		wantTrust bool
	}{
		{"crash, same boot", false, "boot-1", true},
		{"crash, reboot", false, "boot-2", false},
		{"crash, boot id unknown", false, "", false},
		{"clean close, reboot", true, "boot-2", true},
		{"clean close, boot id unknown", true, "", true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			reboot(t, "boot-1")
			dir := t.TempDir()
			f := openSynced(t, dir)
			mustApply(t, f, cmdPutNamespace("ns", 0), cmdPut("ns", "o", "k", "v"))
			applied, want := f.AppliedIndex(), mustHash(t, f)
			if tc.clean {
				if err := f.Close(); err != nil {
					t.Fatal(err)
				}
			} else {
				crash(t, f)
			}
			reboot(t, tc.nextBoot)
			g := openSynced(t, dir)
			_, tornErr := os.Stat(filepath.Join(dir, dbFile+tornSuffix))
			if tc.wantTrust {
				if g.Rebuilt() || g.AppliedIndex() != applied || string(mustHash(t, g)) != string(want) || !errors.Is(tornErr, fs.ErrNotExist) {
					t.Fatalf("trusted database reopened with rebuilt=%v applied=%d (want %d), torn file: %v", g.Rebuilt(), g.AppliedIndex(), applied, tornErr)
				}
				return
			}
			if !g.Rebuilt() || g.AppliedIndex() != 0 || tornErr != nil {
				t.Fatalf("untrusted database reopened with rebuilt=%v applied=%d, torn file: %v; want it set aside and an empty state", g.Rebuilt(), g.AppliedIndex(), tornErr)
			}
			if _, err := g.Namespace("ns"); !errors.Is(err, ErrNamespaceNotFound) {
				t.Fatalf("rebuilt FSM still serves the old namespace: %v", err)
			}
		})
	}
}

// TestDurabilityTornFileNeverRead: a database a reboot may have torn is
// set aside even when its pages are garbage, so Open neither fails nor
// serves it.
func TestDurabilityTornFileNeverRead(t *testing.T) {
	reboot(t, "boot-1")
	dir := t.TempDir()
	f := openSynced(t, dir)
	mustApply(t, f, cmdPutNamespace("ns", 0), cmdPut("ns", "o", "k", "v"))
	crash(t, f)
	garbage := make([]byte, 64<<10)
	for i := range garbage {
		garbage[i] = byte(i * 7)
	}
	if err := os.WriteFile(filepath.Join(dir, dbFile), garbage, 0o600); err != nil {
		t.Fatal(err)
	}
	reboot(t, "boot-2")
	g := openSynced(t, dir)
	if !g.Rebuilt() || g.AppliedIndex() != 0 {
		t.Fatalf("Open after a reboot: rebuilt=%v applied=%d", g.Rebuilt(), g.AppliedIndex())
	}
	mustApply(t, g, cmdPutNamespace("ns", 0))
}

// TestDurabilityMarker: the marker round-trips, and a marker that is not
// one is an error rather than a guess.
func TestDurabilityMarker(t *testing.T) {
	for _, m := range []marker{{boot: "b", clean: true}, {boot: "b"}, {boot: ""}} {
		got, err := decodeMarker(m.encode())
		if err != nil || got != m {
			t.Errorf("decode(encode(%+v)) = %+v, %v", m, got, err)
		}
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, markerFile), []byte("something else\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(Options{Dir: dir}); err == nil {
		t.Fatal("Open with an unrecognized marker succeeded")
	}
}
