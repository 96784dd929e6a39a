package server

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"

	raftcmdv1 "github.com/cairndb/cairn/api/cairn/raftcmd/v1"
	cairnv1 "github.com/cairndb/cairn/api/cairn/v1"
	"github.com/cairndb/cairn/fsm"
	"google.golang.org/protobuf/types/known/structpb"
)

// encodeValue turns a request's value (a JSON document or bytes) into what
// is stored. JSON is stored compact, with object keys sorted.
func encodeValue(field string, v *structpb.Value, bin []byte, isBinary bool) ([]byte, raftcmdv1.ValueEncoding, error) {
	if isBinary {
		if bin == nil {
			bin = []byte{}
		}
		return bin, raftcmdv1.ValueEncoding_VALUE_ENCODING_BINARY, nil
	}
	if v == nil {
		return nil, 0, invalidf("%s: one of value (a JSON document) or binary_value (bytes) is required", field)
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false) // store "<" as one byte, not six
	if err := enc.Encode(v.AsInterface()); err != nil {
		return nil, 0, invalidf("%s.value: %v", field, err)
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), raftcmdv1.ValueEncoding_VALUE_ENCODING_JSON, nil
}

// decodeValue turns a stored value back into a JSON document or bytes.
func decodeValue(kv fsm.KeyValue) (*structpb.Value, []byte, error) {
	if kv.Encoding != raftcmdv1.ValueEncoding_VALUE_ENCODING_JSON {
		return nil, kv.Value, nil
	}
	var doc any
	if err := json.Unmarshal(kv.Value, &doc); err != nil {
		return nil, nil, fmt.Errorf("server: stored JSON of key %q: %w", kv.Key, err)
	}
	v, err := structpb.NewValue(doc)
	if err != nil {
		return nil, nil, fmt.Errorf("server: stored JSON of key %q: %w", kv.Key, err)
	}
	return v, nil, nil
}

func toAPIKeyValue(kv fsm.KeyValue, keysOnly bool) (*cairnv1.KeyValue, error) {
	out := &cairnv1.KeyValue{Key: kv.Key, CreateRevision: kv.CreateRevision, ModRevision: kv.ModRevision}
	if keysOnly {
		return out, nil
	}
	v, bin, err := decodeValue(kv)
	if err != nil {
		return nil, err
	}
	if v != nil {
		out.Content = &cairnv1.KeyValue_Value{Value: v}
	} else {
		out.Content = &cairnv1.KeyValue_BinaryValue{BinaryValue: bin}
	}
	return out, nil
}

func toAPINamespace(ns *raftcmdv1.Namespace) *cairnv1.Namespace {
	return &cairnv1.Namespace{
		Name:           ns.GetName(),
		Settings:       &cairnv1.NamespaceSettings{MaxObjectBytes: ns.GetSettings().GetMaxObjectBytes(), Alarms: toAPIAlarmSettings(ns.GetSettings())},
		CreateRevision: ns.GetCreateRevision(),
		ModRevision:    ns.GetModRevision(),
		ObjectCount:    ns.GetObjectCount(),
		Alarms:         toAPIAlarmCounts(ns.GetAlarms()),
	}
}

func toAPIObject(o fsm.ObjectInfo) *cairnv1.ObjectInfo {
	return &cairnv1.ObjectInfo{
		Name: o.Name, Revision: o.Revision, CreateRevision: o.CreateRevision,
		KeyCount: o.Keys, Bytes: o.Bytes, Shard: uint32(o.Shard), AlarmCount: o.Alarms,
	}
}

// Page tokens are opaque to clients: a kind letter and the last name or
// key returned, base64url-encoded.
func pageToken(kind byte, last string) string {
	return base64.RawURLEncoding.EncodeToString(append([]byte{kind}, last...))
}

func parsePageToken(kind byte, token string) (string, error) {
	if token == "" {
		return "", nil
	}
	b, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(token, "="))
	if err != nil || len(b) < 2 || b[0] != kind {
		return "", invalidf("page_token is not one this listing returned")
	}
	return string(b[1:]), nil
}

// listLimit validates a listing's limit field.
func listLimit(limit uint32) (int, error) {
	switch {
	case limit == 0:
		return DefaultListLimit, nil
	case limit > MaxListLimit:
		return 0, invalidf("limit is %d, the maximum is %d", limit, MaxListLimit)
	}
	return int(limit), nil
}
