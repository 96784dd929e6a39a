package server

import (
	"bytes"
	"fmt"
	"strings"
	"testing"

	cairnv1 "github.com/cairndb/cairn/api/cairn/v1"
	"github.com/cairndb/cairn/fsm"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/structpb"
)

// Limits over gRPC, run as a subtest of TestAPI (api_test.go).

// testLimits checks each limit: the precise error (code, field, limit)
// and that the refused request changed nothing.
func testLimits(t *testing.T, c *testCluster) {
	f, l := some(t, c)
	ctx := testCtx(t)
	mustPutNamespace(t, l, "limits")
	if _, err := l.namespaces().PutNamespace(ctx, &cairnv1.PutNamespaceRequest{Namespace: "quota",
		Settings: &cairnv1.NamespaceSettings{MaxObjectBytes: 64}}); err != nil {
		t.Fatal(err)
	}
	mustPutKey(t, f, "quota", "obj", "k", strings.Repeat("q", 20)) // 1 + 22 bytes

	longKey := strings.Repeat("k", fsm.MaxKeyBytes+1)
	longObject := strings.Repeat("o", fsm.MaxObjectNameBytes+1)
	longNamespace := strings.Repeat("n", fsm.MaxNamespaceBytes+1)
	overValue := bytes.Repeat([]byte{1}, DefaultConfig().MaxValueBytes+1)
	bin := func(v []byte) *cairnv1.PutKeyRequest_BinaryValue {
		return &cairnv1.PutKeyRequest_BinaryValue{BinaryValue: v}
	}
	manyKeys := make([]string, 129)
	for i := range manyKeys {
		manyKeys[i] = fmt.Sprint(i)
	}

	cases := []struct {
		name  string
		call  func() error
		code  codes.Code
		parts []string
		// absent is a key of (ns, object) that must not exist afterwards.
		ns, object, absent string
	}{
		{"key of 2049 bytes", func() error {
			_, err := f.objects().PutKey(ctx, &cairnv1.PutKeyRequest{Namespace: "limits", Object: "obj", Key: longKey, Content: bin([]byte("v"))})
			return err
		}, codes.InvalidArgument, []string{"key", "2049", "2048"}, "limits", "obj", longKey[:2048]},
		{"read of a key of 2049 bytes", func() error {
			_, err := f.objects().GetKey(ctx, &cairnv1.GetKeyRequest{Namespace: "limits", Object: "obj", Key: longKey})
			return err
		}, codes.InvalidArgument, []string{"key", "2048"}, "", "", ""},
		{"delete of a key of 2049 bytes", func() error {
			_, err := f.objects().DeleteKey(ctx, &cairnv1.DeleteKeyRequest{Namespace: "limits", Object: "obj", Key: longKey})
			return err
		}, codes.InvalidArgument, []string{"key", "2048"}, "", "", ""},
		{"empty key", func() error {
			_, err := f.objects().PutKey(ctx, &cairnv1.PutKeyRequest{Namespace: "limits", Object: "obj", Content: bin([]byte("v"))})
			return err
		}, codes.InvalidArgument, []string{"key", "empty"}, "", "", ""},
		{"object name of 513 bytes", func() error {
			_, err := f.objects().PutKey(ctx, &cairnv1.PutKeyRequest{Namespace: "limits", Object: longObject, Key: "k", Content: bin([]byte("v"))})
			return err
		}, codes.InvalidArgument, []string{"object", "513", "512"}, "limits", longObject[:512], "k"},
		{"namespace name of 129 bytes", func() error {
			_, err := f.namespaces().PutNamespace(ctx, &cairnv1.PutNamespaceRequest{Namespace: longNamespace})
			return err
		}, codes.InvalidArgument, []string{"namespace", "129", "128"}, "", "", ""},
		{"namespace name with a space", func() error {
			_, err := f.namespaces().PutNamespace(ctx, &cairnv1.PutNamespaceRequest{Namespace: "a b"})
			return err
		}, codes.InvalidArgument, []string{"namespace", "a b"}, "", "", ""},
		{"binary value over MaxValueBytes", func() error {
			_, err := l.objects().PutKey(ctx, &cairnv1.PutKeyRequest{Namespace: "limits", Object: "obj", Key: "big", Content: bin(overValue)})
			return err
		}, codes.InvalidArgument, []string{"value", "1048577", "1048576"}, "limits", "obj", "big"},
		{"JSON value over MaxValueBytes", func() error {
			_, err := f.objects().PutKey(ctx, &cairnv1.PutKeyRequest{Namespace: "limits", Object: "obj", Key: "big-json",
				Content: &cairnv1.PutKeyRequest_Value{Value: structpb.NewStringValue(strings.Repeat("j", 1<<20))}})
			return err
		}, codes.InvalidArgument, []string{"value", "1048578", "1048576"}, "limits", "obj", "big-json"},
		{"batch get of 129 keys", func() error {
			_, err := f.objects().BatchGet(ctx, &cairnv1.BatchGetRequest{Namespace: "limits", Object: "obj", Keys: manyKeys})
			return err
		}, codes.InvalidArgument, []string{"keys", "129", "128"}, "", "", ""},
		{"batch write of 129 keys", func() error {
			_, err := f.objects().BatchWrite(ctx, &cairnv1.BatchWriteRequest{Namespace: "limits", Object: "obj", Deletes: manyKeys})
			return err
		}, codes.InvalidArgument, []string{"129", "128"}, "", "", ""},
		{"read in an unknown namespace", func() error {
			_, err := f.objects().GetKey(ctx, &cairnv1.GetKeyRequest{Namespace: "no-such-ns", Object: "obj", Key: "k"})
			return err
		}, codes.NotFound, []string{"namespace", "no-such-ns"}, "", "", ""},
		{"write in an unknown namespace", func() error {
			_, err := f.objects().PutKey(ctx, &cairnv1.PutKeyRequest{Namespace: "no-such-ns", Object: "obj", Key: "k", Content: bin([]byte("v"))})
			return err
		}, codes.NotFound, []string{"namespace", "no-such-ns"}, "", "", ""},
		{"unknown namespace", func() error {
			_, err := f.namespaces().GetNamespace(ctx, &cairnv1.GetNamespaceRequest{Namespace: "no-such-ns"})
			return err
		}, codes.NotFound, []string{"namespace", "no-such-ns"}, "", "", ""},
		{"write over the object quota", func() error {
			_, err := f.objects().PutKey(ctx, &cairnv1.PutKeyRequest{Namespace: "quota", Object: "obj", Key: "more", Content: bin(make([]byte, 40))})
			return err
		}, codes.ResourceExhausted, []string{"max_object_bytes", "64", "67"}, "quota", "obj", "more"},
		{"batch over the object quota", func() error {
			_, err := l.objects().BatchWrite(ctx, &cairnv1.BatchWriteRequest{Namespace: "quota", Object: "fresh",
				Puts: []*cairnv1.KeyPut{putOf("a", "small"), putOf("b", strings.Repeat("b", 70))}})
			return err
		}, codes.ResourceExhausted, []string{"max_object_bytes", "64"}, "quota", "fresh", "a"},
	}
	for _, tc := range cases {
		before := c.mustStateHash(t)
		err := tc.call()
		wantCode(t, err, tc.code, tc.parts...)
		if after := c.mustStateHash(t); !bytes.Equal(before, after) {
			t.Errorf("%s: the refused request changed the state", tc.name)
		}
		if tc.absent != "" {
			if _, err := l.FSM.Get(tc.ns, tc.object, tc.absent); err == nil {
				t.Errorf("%s: key %.20q... exists after the refusal", tc.name, tc.absent)
			}
		}
	}

	// Up to the limits, writes pass.
	exact := bytes.Repeat([]byte{2}, DefaultConfig().MaxValueBytes)
	err := retryUnavailable(t, "PutKey of 1 MiB", func() error {
		_, err := f.objects().PutKey(ctx, &cairnv1.PutKeyRequest{Namespace: "limits", Object: strings.Repeat("o", 512),
			Key: strings.Repeat("k", 2048), Content: bin(exact), RequestId: "limits-exact"})
		return err
	})
	if err != nil {
		t.Fatalf("PutKey of a 512-byte object name, 2048-byte key and 1 MiB value: %v", err)
	}
	got := mustGetKey(t, l, "limits", strings.Repeat("o", 512), strings.Repeat("k", 2048), "")
	if !bytes.Equal(got.GetBinaryValue(), exact) {
		t.Fatalf("1 MiB value read back as %d bytes", len(got.GetBinaryValue()))
	}
	// The quota counts what an object holds after the write: a write that
	// shrinks it passes.
	if _, err := f.objects().PutKey(ctx, &cairnv1.PutKeyRequest{Namespace: "quota", Object: "obj", Key: "k", Content: bin(make([]byte, 63))}); err != nil {
		t.Fatalf("PutKey to exactly the quota: %v", err)
	}
}
