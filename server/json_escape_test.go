package server

import (
	"strings"
	"testing"

	cairnv1 "github.com/cairndb/cairn/api/cairn/v1"
)

// A JSON value is stored HTML-escaped ('<' as \u003c): 6 bytes instead of
// 1 count against MaxValueBytes and the object quota.
func TestJSONStoredWithoutHTMLEscaping(t *testing.T) {
	c := mustStartCluster(t, 1, clusterOptions{})
	l := c.leader(t)
	mustPutNamespace(t, l, "h")
	mustPutKey(t, l, "h", "o", "k", "<<<<")
	resp, err := l.objects().GetObject(testCtx(t), &cairnv1.GetObjectRequest{Namespace: "h", Object: "o"})
	if err != nil {
		t.Fatal(err)
	}
	if want := uint64(len("k") + len(`"<<<<"`)); resp.Object.Bytes != want {
		t.Errorf("object bytes = %d, want %d (key + compact JSON)", resp.Object.Bytes, want)
	}
	// A 600 KiB document of '<' is refused as over 1 MiB.
	_, err = l.objects().PutKey(testCtx(t), &cairnv1.PutKeyRequest{Namespace: "h", Object: "o", Key: "big",
		Content: &cairnv1.PutKeyRequest_Value{Value: jsonValue(t, strings.Repeat("<", 600<<10))}})
	if err != nil {
		t.Errorf("PutKey of a 600 KiB JSON string: %v", err)
	}
}
