package client

import "testing"

// TestRequestIDsOrderedByTime: ids made later sort after earlier ones (so
// the cluster's request index grows at its end), and never repeat.
func TestRequestIDsOrderedByTime(t *testing.T) {
	seen := map[string]bool{}
	prev := newRequestID()
	for range 2000 {
		id := newRequestID()
		if len(id) != 32 || seen[id] {
			t.Fatalf("request id %q: length %d, repeated %v", id, len(id), seen[id])
		}
		seen[id] = true
		if id[:12] < prev[:12] {
			t.Fatalf("request id %s made after %s sorts before it", id, prev)
		}
		prev = id
	}
}
