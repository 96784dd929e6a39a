package client

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"iter"

	cairnv1 "github.com/cairndb/cairn/api/cairn/v1"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/structpb"
)

// KeyValue is one stored key.
type KeyValue struct {
	Key string
	// Value is the JSON text of a JSON value, or the bytes of a binary one.
	Value []byte
	// JSON says which.
	JSON           bool
	CreateRevision uint64
	ModRevision    uint64
}

// Decode unmarshals a JSON value into v.
func (kv KeyValue) Decode(v any) error {
	if !kv.JSON {
		return fmt.Errorf("client: key %q holds a binary value, not JSON", kv.Key)
	}
	return json.Unmarshal(kv.Value, v)
}

// Value returns what a put stores: []byte is stored as binary,
// json.RawMessage as the JSON document it holds, anything else as its JSON
// encoding.
func toContent(v any) (*structpb.Value, []byte, bool, error) {
	switch x := v.(type) {
	case []byte:
		return nil, x, true, nil
	case json.RawMessage:
		var doc any
		if err := json.Unmarshal(x, &doc); err != nil {
			return nil, nil, false, fmt.Errorf("client: value is not JSON: %w", err)
		}
		pv, err := structpb.NewValue(doc)
		return pv, nil, false, err
	default:
		b, err := json.Marshal(v)
		if err != nil {
			return nil, nil, false, fmt.Errorf("client: value: %w", err)
		}
		return toContent(json.RawMessage(b))
	}
}

func fromAPI(kv *cairnv1.KeyValue) (KeyValue, error) {
	out := KeyValue{Key: kv.Key, CreateRevision: kv.CreateRevision, ModRevision: kv.ModRevision}
	switch c := kv.Content.(type) {
	case *cairnv1.KeyValue_Value:
		b, err := compactJSON(c.Value)
		if err != nil {
			return out, err
		}
		out.Value, out.JSON = b, true
	case *cairnv1.KeyValue_BinaryValue:
		out.Value = c.BinaryValue
	}
	return out, nil
}

// WriteOption adjusts a write.
type WriteOption func(*writeOptions)

type writeOptions struct {
	requestID string
	expected  *uint64
}

// WithRequestID sets the write's request id (by default each call draws a
// random one, kept across its retries).
func WithRequestID(id string) WriteOption { return func(o *writeOptions) { o.requestID = id } }

// IfModRevision makes a put or delete conditional: it happens only if the
// key's mod_revision is rev (0: the key must not exist); otherwise the
// call fails with ErrCompareFailed and nothing changes.
func IfModRevision(rev uint64) WriteOption { return func(o *writeOptions) { o.expected = &rev } }

func writeOpts(opts []WriteOption) writeOptions {
	o := writeOptions{}
	for _, f := range opts {
		f(&o)
	}
	if o.requestID == "" {
		o.requestID = newRequestID()
	}
	return o
}

// ReadOption adjusts a read.
type ReadOption func(*readOptions)

type readOptions struct {
	consistency  string
	maxStaleness uint64
}

// Serializable reads from the node's own state without asking the
// leader: fastest, possibly stale.
func Serializable() ReadOption { return func(o *readOptions) { o.consistency = "serializable" } }

// MaxStalenessMs bounds a serializable read: a node that has not heard
// from the leader for longer refuses it (ErrUnavailable).
func MaxStalenessMs(ms uint64) ReadOption { return func(o *readOptions) { o.maxStaleness = ms } }

func readOpts(opts []ReadOption) readOptions {
	o := readOptions{}
	for _, f := range opts {
		f(&o)
	}
	return o
}

// PutResult is a put's answer.
type PutResult struct {
	Revision uint64
	Created  bool
	// Replayed is set when the request id had already been applied: this
	// is the first answer, and nothing was applied again.
	Replayed bool
}

// Put stores value under key (see toContent for how values are stored).
func (c *Client) Put(ctx context.Context, ns, object, key string, value any, opts ...WriteOption) (PutResult, error) {
	o := writeOpts(opts)
	pv, bin, isBinary, err := toContent(value)
	if err != nil {
		return PutResult{}, err
	}
	req := &cairnv1.PutKeyRequest{Namespace: ns, Object: object, Key: key, RequestId: o.requestID, ExpectedModRevision: o.expected}
	if isBinary {
		req.Content = &cairnv1.PutKeyRequest_BinaryValue{BinaryValue: bin}
	} else {
		req.Content = &cairnv1.PutKeyRequest_Value{Value: pv}
	}
	var resp *cairnv1.PutKeyResponse
	err = c.call(ctx, func(ctx context.Context, conn *grpc.ClientConn) (err error) {
		resp, err = c.objects(conn).PutKey(ctx, req)
		return err
	})
	if err != nil {
		return PutResult{}, err
	}
	return PutResult{Revision: resp.Revision, Created: resp.Created, Replayed: resp.Header.GetReplayed()}, nil
}

// Get reads one key; a missing key is ErrNotFound.
func (c *Client) Get(ctx context.Context, ns, object, key string, opts ...ReadOption) (KeyValue, error) {
	o := readOpts(opts)
	var resp *cairnv1.GetKeyResponse
	err := c.call(ctx, func(ctx context.Context, conn *grpc.ClientConn) (err error) {
		resp, err = c.objects(conn).GetKey(ctx, &cairnv1.GetKeyRequest{Namespace: ns, Object: object, Key: key,
			Consistency: o.consistency, MaxStalenessMs: o.maxStaleness})
		return err
	})
	if err != nil {
		return KeyValue{}, err
	}
	kv := &cairnv1.KeyValue{Key: resp.Key, CreateRevision: resp.CreateRevision, ModRevision: resp.ModRevision}
	switch c := resp.Content.(type) {
	case *cairnv1.GetKeyResponse_Value:
		kv.Content = &cairnv1.KeyValue_Value{Value: c.Value}
	case *cairnv1.GetKeyResponse_BinaryValue:
		kv.Content = &cairnv1.KeyValue_BinaryValue{BinaryValue: c.BinaryValue}
	}
	return fromAPI(kv)
}

// Delete deletes one key and reports whether it existed.
func (c *Client) Delete(ctx context.Context, ns, object, key string, opts ...WriteOption) (deleted bool, revision uint64, err error) {
	o := writeOpts(opts)
	var resp *cairnv1.DeleteKeyResponse
	err = c.call(ctx, func(ctx context.Context, conn *grpc.ClientConn) (err error) {
		resp, err = c.objects(conn).DeleteKey(ctx, &cairnv1.DeleteKeyRequest{Namespace: ns, Object: object, Key: key,
			RequestId: o.requestID, ExpectedModRevision: o.expected})
		return err
	})
	if err != nil {
		return false, 0, err
	}
	return resp.Deleted, resp.Revision, nil
}

// BatchGet reads up to 128 keys of one object; missing keys are left out.
func (c *Client) BatchGet(ctx context.Context, ns, object string, keys []string, opts ...ReadOption) ([]KeyValue, error) {
	o := readOpts(opts)
	var resp *cairnv1.BatchGetResponse
	err := c.call(ctx, func(ctx context.Context, conn *grpc.ClientConn) (err error) {
		resp, err = c.objects(conn).BatchGet(ctx, &cairnv1.BatchGetRequest{Namespace: ns, Object: object, Keys: keys,
			Consistency: o.consistency, MaxStalenessMs: o.maxStaleness})
		return err
	})
	if err != nil {
		return nil, err
	}
	out := make([]KeyValue, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		v, err := fromAPI(kv)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, nil
}

// Put is one put of a BatchWrite.
type Put struct {
	Key   string
	Value any
}

// BatchWrite deletes then puts keys of one object atomically (at most 128
// in all).
func (c *Client) BatchWrite(ctx context.Context, ns, object string, puts []Put, deletes []string, opts ...WriteOption) (*cairnv1.BatchWriteResponse, error) {
	o := writeOpts(opts)
	req := &cairnv1.BatchWriteRequest{Namespace: ns, Object: object, Deletes: deletes, RequestId: o.requestID}
	for _, p := range puts {
		pv, bin, isBinary, err := toContent(p.Value)
		if err != nil {
			return nil, fmt.Errorf("client: put %q: %w", p.Key, err)
		}
		kp := &cairnv1.KeyPut{Key: p.Key}
		if isBinary {
			kp.Content = &cairnv1.KeyPut_BinaryValue{BinaryValue: bin}
		} else {
			kp.Content = &cairnv1.KeyPut_Value{Value: pv}
		}
		req.Puts = append(req.Puts, kp)
	}
	var resp *cairnv1.BatchWriteResponse
	err := c.call(ctx, func(ctx context.Context, conn *grpc.ClientConn) (err error) {
		resp, err = c.objects(conn).BatchWrite(ctx, req)
		return err
	})
	return resp, err
}

// ListOptions select keys for Keys.
type ListOptions struct {
	Prefix, Start, StartAfter, End string
	Reverse, KeysOnly              bool
	// PageSize is how many keys one call fetches: 1-1000, 100 when 0.
	PageSize uint32
}

// Keys walks an object's keys in order (or reverse), a page at a time,
// yielding each key or the error that ended the walk.
func (c *Client) Keys(ctx context.Context, ns, object string, lo ListOptions, opts ...ReadOption) iter.Seq2[KeyValue, error] {
	o := readOpts(opts)
	return func(yield func(KeyValue, error) bool) {
		token := ""
		for {
			var resp *cairnv1.ListKeysResponse
			err := c.call(ctx, func(ctx context.Context, conn *grpc.ClientConn) (err error) {
				resp, err = c.objects(conn).ListKeys(ctx, &cairnv1.ListKeysRequest{
					Namespace: ns, Object: object, Prefix: lo.Prefix, Start: lo.Start, StartAfter: lo.StartAfter, End: lo.End,
					Reverse: lo.Reverse, KeysOnly: lo.KeysOnly, Limit: lo.PageSize, PageToken: token,
					Consistency: o.consistency, MaxStalenessMs: o.maxStaleness,
				})
				return err
			})
			if err != nil {
				yield(KeyValue{}, err)
				return
			}
			for _, kv := range resp.Kvs {
				v, err := fromAPI(kv)
				if !yield(v, err) || err != nil {
					return
				}
			}
			if resp.NextPageToken == "" {
				return
			}
			token = resp.NextPageToken
		}
	}
}

// Txn runs a transaction. req.RequestId is set when empty.
func (c *Client) Txn(ctx context.Context, req *cairnv1.TxnRequest) (*cairnv1.TxnResponse, error) {
	if req.RequestId == "" {
		req.RequestId = newRequestID()
	}
	var resp *cairnv1.TxnResponse
	err := c.call(ctx, func(ctx context.Context, conn *grpc.ClientConn) (err error) {
		resp, err = c.objects(conn).Txn(ctx, req)
		return err
	})
	return resp, err
}

// compactJSON encodes a JSON value compactly, object keys sorted (protojson
// varies its spacing from build to build).
func compactJSON(v *structpb.Value) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v.AsInterface()); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}
