package fsm

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	raftcmdv1 "github.com/cairndb/cairn/api/cairn/raftcmd/v1"
	bolt "go.etcd.io/bbolt"
)

// mappedRSS returns the resident bytes of this process's mappings of path
// (from /proc/self/smaps).
func mappedRSS(t *testing.T, path string) int64 {
	t.Helper()
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var total int64
	in := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		fields := strings.Fields(line)
		if len(fields) >= 5 && strings.Contains(fields[0], "-") {
			in = len(fields) >= 6 && fields[len(fields)-1] == path
			continue
		}
		if in && len(fields) == 3 && fields[0] == "Rss:" {
			kb, _ := strconv.ParseInt(fields[1], 10, 64)
			total += kb << 10
		}
	}
	return total
}

// TestOpenLeavesMappingCold: opening a database visits every page (the
// freelist is rebuilt), and the node must not keep them all resident:
// after Open the map of a 40 MB database holds at most a few MB.
func TestOpenLeavesMappingCold(t *testing.T) {
	dir := t.TempDir()
	f := openSynced(t, dir)
	fillForty(t, f)
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, dbFile)
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	g := openSynced(t, dir)
	if got := mappedRSS(t, path); got > st.Size()/8 {
		t.Fatalf("after Open %d bytes of the %d-byte database stay resident", got, st.Size())
	}
	mustGet(t, g, "ns", "o39", "k0999") // pages fault back in
}

// TestReleaseMappingWhileOpen: pages that reads fault in while the
// database is open leave the process's RSS after ReleaseMapping, and the
// data reads the same afterwards.
func TestReleaseMappingWhileOpen(t *testing.T) {
	dir := t.TempDir()
	f := openSynced(t, dir)
	fillForty(t, f)
	path := filepath.Join(dir, dbFile)
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.view(func(tx *bolt.Tx) error { // touch every page
		return tx.ForEach(func(_ []byte, b *bolt.Bucket) error { return touchBucket(b) })
	}); err != nil {
		t.Fatal(err)
	}
	before := mappedRSS(t, path)
	if before < st.Size()/2 {
		t.Fatalf("reading every key left only %d bytes of the %d-byte database resident", before, st.Size())
	}
	if err := f.ReleaseMapping(); err != nil {
		t.Fatal(err)
	}
	after := mappedRSS(t, path)
	if after > st.Size()/8 || after >= before {
		t.Fatalf("after ReleaseMapping %d bytes of the %d-byte database stay resident (%d before)", after, st.Size(), before)
	}
	mustGet(t, f, "ns", "o39", "k0999")
	mustApply(t, f, cmdBatch("ns", "o00", []*raftcmdv1.KeyPut{kput("after", "v")}))
	mustGet(t, f, "ns", "o00", "after")
}

// touched keeps the reads of touchBucket from being optimised away.
var touched byte

// touchBucket reads every value of b and of its nested buckets.
func touchBucket(b *bolt.Bucket) error {
	return b.ForEach(func(k, v []byte) error {
		if v == nil {
			return touchBucket(b.Bucket(k))
		}
		for i := 0; i < len(v); i += 4096 {
			touched += v[i]
		}
		return nil
	})
}

// fillForty writes 40 MB into f: namespace ns, objects o00..o39 of 1,000
// keys k0000..k0999 with 1,000-byte values.
func fillForty(t *testing.T, f *FSM) {
	t.Helper()
	mustApply(t, f, cmdPutNamespace("ns", 0))
	value := strings.Repeat("v", 1000)
	for o := range 40 {
		var puts []*raftcmdv1.KeyPut
		for k := range 1000 {
			puts = append(puts, kput(fmt.Sprintf("k%04d", k), value))
		}
		mustApply(t, f, cmdBatch("ns", fmt.Sprintf("o%02d", o), puts))
	}
}
