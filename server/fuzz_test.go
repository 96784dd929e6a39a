package server

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	cairnv1 "github.com/cairndb/cairn/api/cairn/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
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

// FuzzInvalidUTF8Field: for any bytes sent as a request, the search for a
// string that is not UTF-8 never fails on its own, names a field exactly
// when protobuf refuses the bytes for such a string, and answers
// InvalidArgument.
func FuzzInvalidUTF8Field(f *testing.F) {
	types := []protoreflect.MessageType{
		(&cairnv1.PutKeyRequest{}).ProtoReflect().Type(),
		(&cairnv1.BatchWriteRequest{}).ProtoReflect().Type(),
		(&cairnv1.TxnRequest{}).ProtoReflect().Type(),
	}
	f.Add(byte(0), []byte("\x1a\x04bad\xff"))
	f.Add(byte(1), []byte("\x1a\x05\x0a\x03\xff\xfe\xfd"))
	f.Add(byte(2), []byte("\x0a\x02ok"))
	f.Add(byte(0), []byte{0x1a, 0x7f, 'k'})
	f.Fuzz(func(t *testing.T, which byte, b []byte) {
		mt := types[int(which)%len(types)]
		field := invalidUTF8Field(mt.Descriptor(), b)
		err := proto.Unmarshal(b, mt.New().Interface())
		utf8Err := err != nil && strings.Contains(err.Error(), "invalid UTF-8")
		if (field != "") != utf8Err {
			t.Fatalf("%s: field %q, protobuf: %v", mt.Descriptor().FullName(), field, err)
		}
		if err != nil {
			// The codec answers with the marker it leaves in the message.
			c := newRequestCodec()
			m := mt.New().Interface()
			if uerr := c.Unmarshal(mem.BufferSlice{mem.SliceBuffer(b)}, m); uerr != nil {
				t.Fatalf("the codec's Unmarshal failed: %v", uerr)
			}
			if got := c.undecodable(m); status.Code(got) != codes.InvalidArgument || status.Convert(got).Message() != invalidRequest(mt.Descriptor(), b, err) {
				t.Fatalf("answer %v, want InvalidArgument %q", got, invalidRequest(mt.Descriptor(), b, err))
			}
		} else {
			c := newRequestCodec()
			m := mt.New().Interface()
			if uerr := c.Unmarshal(mem.BufferSlice{mem.SliceBuffer(b)}, m); uerr != nil || c.undecodable(m) != nil {
				t.Fatalf("a request protobuf decodes: codec %v, answer %v", uerr, c.undecodable(m))
			}
		}
	})
}
