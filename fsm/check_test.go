package fsm

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestDamagedDatabaseSetAside: a state database that CheckDatabase finds
// damaged (here truncated, as a full disk or a bad copy might leave it) is
// never opened: Open moves it aside as state.db.damaged, names the file and
// the damage, and starts empty for the caller to rebuild; an intact one is
// opened as it is.
func TestDamagedDatabaseSetAside(t *testing.T) {
	dir := t.TempDir()
	f := mustOpen(t, dir)
	mustApply(t, f, cmdPutNamespace("n", 0), cmdPut("n", "o", "k", "v"))
	applied := f.AppliedIndex()
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, dbFile)
	c, err := CheckDatabase(path)
	if err != nil || c.Keys == 0 || c.RecoveredMeta {
		t.Fatalf("CheckDatabase of an intact file: %+v %v", c, err)
	}
	if g := mustOpen(t, dir); g.Rebuilt() || g.AppliedIndex() != applied {
		t.Fatalf("intact database: rebuilt %v, applied %d, want %d", g.Rebuilt(), g.AppliedIndex(), applied)
	} else if err := g.Close(); err != nil {
		t.Fatal(err)
	}

	if err := os.Truncate(path, 4*4096); err != nil {
		t.Fatal(err)
	}
	if _, err := CheckDatabase(path); !errors.Is(err, ErrDamaged) || !strings.Contains(err.Error(), path+": truncated") {
		t.Fatalf("CheckDatabase of a truncated file: %v", err)
	}
	g := mustOpen(t, dir)
	if !g.Rebuilt() || !strings.Contains(g.RebuildReason(), path+": truncated") || g.AppliedIndex() != 0 {
		t.Fatalf("damaged database: rebuilt %v (%q), applied %d", g.Rebuilt(), g.RebuildReason(), g.AppliedIndex())
	}
	if _, err := os.Stat(path + damagedSuffix); err != nil {
		t.Fatalf("the damaged file was not kept: %v", err)
	}
}
