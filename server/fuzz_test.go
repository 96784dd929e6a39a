package server

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
)

// FuzzPageToken: any token either parses or is refused with
// InvalidArgument; tokens the server writes always parse back.
func FuzzPageToken(f *testing.F) {
	f.Add("k", "msgs/0001")
	f.Add("o", "room-1")
	f.Add("r", "é/ü ✓")
	f.Fuzz(func(t *testing.T, kind, last string) {
		if kind == "" || last == "" {
			return
		}
		k := kind[0]
		got, err := parsePageToken(k, pageToken(k, last))
		if err != nil || got != last {
			t.Fatalf("round trip of %q: %q, %v", last, got, err)
		}
		if _, err := parsePageToken('k', last); err != nil && !strings.Contains(err.Error(), "page_token") {
			t.Fatalf("bad token error does not name page_token: %v", err)
		}
	})
}

// FuzzKeyPathFix: for any key, escaping it per segment, or escaping it
// whole (so that '/' becomes %2F), reaches the handler as the same key.
func FuzzKeyPathFix(f *testing.F) {
	for _, k := range []string{"a", "a/b", "x%2Fy", "sp ace/ü", "k:v", "%", "a//b", "/lead", "trail/"} {
		f.Add(k)
	}
	f.Fuzz(func(t *testing.T, key string) {
		if key == "" || strings.ContainsAny(key, "\x00?#") || !isPrintableUTF8(key) {
			return
		}
		var got []string
		h := keyPathFix(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
			got = append(got, r.URL.Path)
		}))
		whole := "/v1/namespaces/n/objects/o/keys/" + url.PathEscape(key)
		var segs []string
		for _, s := range strings.Split(key, "/") {
			segs = append(segs, url.PathEscape(s))
		}
		perSegment := "/v1/namespaces/n/objects/o/keys/" + strings.Join(segs, "/")
		for _, raw := range []string{whole, perSegment} {
			u, err := url.Parse("http://x" + raw)
			if err != nil {
				return
			}
			h.ServeHTTP(httptest.NewRecorder(), &http.Request{Method: http.MethodGet, URL: u, Header: http.Header{}})
		}
		want := "/v1/namespaces/n/objects/o/keys/" + key
		for _, p := range got {
			if p != want {
				t.Fatalf("key %q reached the handler as path %q, want %q", key, p, want)
			}
		}
	})
}

func isPrintableUTF8(s string) bool {
	for _, r := range s {
		if r == 0xFFFD || r < 0x20 {
			return false
		}
	}
	return true
}
