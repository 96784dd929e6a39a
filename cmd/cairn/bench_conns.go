package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"

	cairnv1 "github.com/cairndb/cairn/api/cairn/v1"
	"github.com/cairndb/cairn/client"
	"google.golang.org/grpc/codes"
)

// benchConn is one connection of `cairn bench` to one node: the Go client
// over gRPC, or plain HTTP/JSON to the REST gateway. Its methods are safe
// for concurrent use by the workers that share it. Values are ASCII
// letters and digits (so they travel in a JSON string unescaped).
type benchConn interface {
	// put writes value under key of object.
	put(ctx context.Context, object, key string, value []byte) error
	// get reads key and returns its mod_revision.
	get(ctx context.Context, object, key string, serializable bool) (uint64, error)
	// casPut writes value under key if the key's mod_revision is rev, in a
	// transaction, and reports whether the compare held.
	casPut(ctx context.Context, object, key string, rev uint64, value []byte) (bool, error)
	// setAlarm sets alarm name of object to fire at fireAt.
	setAlarm(ctx context.Context, object, name string, fireAt time.Time) error
	// watch follows object's changes: it returns once the stream is open,
	// then calls event with each put's value from another goroutine until
	// ctx ends; done is closed when it stops.
	watch(ctx context.Context, object string, event func(value []byte)) (done <-chan error, err error)
	close()
}

// grpcConn drives the Go client, with one endpoint and no retries: the
// bench counts an unavailable node as errors instead of hiding it.
type grpcConn struct {
	c  *client.Client
	ns string
}

func newGRPCConn(cfg client.Config, endpoint, ns string) (*grpcConn, error) {
	cfg.Endpoints = []string{endpoint}
	cfg.RetryFor = time.Nanosecond
	c, err := client.New(cfg)
	if err != nil {
		return nil, err
	}
	return &grpcConn{c: c, ns: ns}, nil
}

func (g *grpcConn) put(ctx context.Context, object, key string, value []byte) error {
	_, err := g.c.Put(ctx, g.ns, object, key, value)
	return err
}

func (g *grpcConn) get(ctx context.Context, object, key string, serializable bool) (uint64, error) {
	var opts []client.ReadOption
	if serializable {
		opts = append(opts, client.Serializable())
	}
	kv, err := g.c.Get(ctx, g.ns, object, key, opts...)
	return kv.ModRevision, err
}

func (g *grpcConn) casPut(ctx context.Context, object, key string, rev uint64, value []byte) (bool, error) {
	resp, err := g.c.Txn(ctx, &cairnv1.TxnRequest{
		Namespace: g.ns,
		Compares: []*cairnv1.Compare{{Object: object, Key: key, Relation: cairnv1.Relation_RELATION_EQUAL,
			Target: &cairnv1.Compare_ModRevision{ModRevision: rev}}},
		Success: []*cairnv1.TxnOp{{Op: &cairnv1.TxnOp_Put{Put: &cairnv1.PutOp{Object: object, Key: key,
			Content: &cairnv1.PutOp_BinaryValue{BinaryValue: value}}}}},
	})
	if err != nil {
		return false, err
	}
	return resp.Succeeded, nil
}

func (g *grpcConn) setAlarm(ctx context.Context, object, name string, fireAt time.Time) error {
	_, err := g.c.SetAlarm(ctx, g.ns, object, client.AlarmSpec{Name: name, FireAt: fireAt})
	return err
}

func (g *grpcConn) watch(ctx context.Context, object string, event func([]byte)) (<-chan error, error) {
	w, err := g.c.Watch(ctx, &cairnv1.WatchRequest{Namespace: g.ns, Object: object})
	if err != nil {
		return nil, err
	}
	done := make(chan error, 1)
	go func() {
		for {
			resp, err := w.Next(false)
			if err != nil {
				done <- err
				return
			}
			for _, ev := range resp.Events {
				if ev.Type == cairnv1.EventType_EVENT_TYPE_PUT {
					event(ev.GetBinaryValue())
				}
			}
		}
	}()
	return done, nil
}

func (g *grpcConn) close() { _ = g.c.Close() }

// restConn speaks HTTP/1.1 with keep-alive to one node's REST gateway; its
// transport keeps one idle connection per worker, so each worker reuses
// its own TCP connection. Values are sent as JSON strings, the way a REST
// user stores documents.
type restConn struct {
	hc, stream *http.Client
	base       string // scheme://host:port/v1/namespaces/{ns}
	auth       string
}

func newRESTConn(tc *tls.Config, endpoint, ns, token string, timeout time.Duration, idle int) *restConn {
	tr := &http.Transport{
		TLSClientConfig:     tc,
		MaxIdleConns:        idle,
		MaxIdleConnsPerHost: idle,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
	}
	scheme := "http"
	if tc != nil {
		scheme = "https"
	}
	r := &restConn{
		hc:     &http.Client{Transport: tr, Timeout: timeout},
		stream: &http.Client{Transport: tr},
		base:   scheme + "://" + endpoint + "/v1/namespaces/" + url.PathEscape(ns),
	}
	if token != "" {
		r.auth = "Bearer " + token
	}
	return r
}

// restError is a REST call answered with a status other than 200.
type restError struct {
	status int
	code   codes.Code // from the body's gRPC code; Unknown when it had none
	msg    string
	// retryAfter is the server's retry hint (overload): the body's
	// RetryInfo, or else the Retry-After header; 0 without either.
	retryAfter time.Duration
}

func (e *restError) Error() string { return fmt.Sprintf("HTTP %d: %s", e.status, e.msg) }

// do sends one request and decodes a 200 answer into out (nil: discard;
// a *bytes.Buffer: copy).
func (r *restConn) do(ctx context.Context, hc *http.Client, method, u string, body []byte, out any) (*http.Response, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if r.auth != "" {
		req.Header.Set("Authorization", r.auth)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		e := &restError{status: resp.StatusCode, code: codes.Unknown, msg: string(b)}
		if secs, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil {
			e.retryAfter = time.Duration(secs) * time.Second
		}
		var st struct {
			Code    *int   `json:"code"`
			Message string `json:"message"`
			Details []struct {
				// A google.rpc.RetryInfo's, by its proto name (the
				// gateway's) or its JSON name.
				RetryDelay     string `json:"retry_delay"`
				RetryDelayJSON string `json:"retryDelay"`
			} `json:"details"`
		}
		if json.Unmarshal(b, &st) == nil && st.Code != nil {
			e.code, e.msg = codes.Code(*st.Code), st.Message
			for _, d := range st.Details {
				if delay, err := time.ParseDuration(d.RetryDelay + d.RetryDelayJSON); err == nil {
					e.retryAfter = delay
				}
			}
		}
		return nil, e
	}
	if hc == r.stream {
		return resp, nil
	}
	defer resp.Body.Close()
	switch out := out.(type) {
	case nil:
		_, err = io.Copy(io.Discard, resp.Body)
		return nil, err
	case *bytes.Buffer:
		_, err = out.ReadFrom(resp.Body)
		return nil, err
	}
	return nil, json.NewDecoder(resp.Body).Decode(out)
}

func (r *restConn) keyURL(object, key string) string {
	return r.base + "/objects/" + url.PathEscape(object) + "/keys/" + url.PathEscape(key)
}

// jsonString appends the JSON string of an ASCII letters-and-digits value.
func jsonString(b, value []byte) []byte {
	b = append(b, '"')
	b = append(b, value...)
	return append(b, '"')
}

func (r *restConn) put(ctx context.Context, object, key string, value []byte) error {
	body := make([]byte, 0, len(value)+16)
	body = jsonString(append(body, `{"value":`...), value)
	_, err := r.do(ctx, r.hc, http.MethodPut, r.keyURL(object, key), append(body, '}'), nil)
	return err
}

func (r *restConn) get(ctx context.Context, object, key string, serializable bool) (uint64, error) {
	u := r.keyURL(object, key)
	if serializable {
		u += "?consistency=serializable"
	}
	var body bytes.Buffer
	if _, err := r.do(ctx, r.hc, http.MethodGet, u, nil, &body); err != nil {
		return 0, err
	}
	// Only mod_revision is wanted, and no value the bench wrote (letters
	// and digits) can contain its name: find it instead of decoding the
	// whole answer, so that the bench spends its CPU on requests.
	// (protojson may put a space after the colon.)
	b := body.Bytes()
	const field = `"mod_revision"`
	i := bytes.Index(b, []byte(field))
	if i < 0 {
		return 0, fmt.Errorf("GET %s: no mod_revision in %.200q", u, body.Bytes())
	}
	b = bytes.TrimLeft(b[i+len(field):], ": \"")
	n := 0
	for n < len(b) && '0' <= b[n] && b[n] <= '9' {
		n++
	}
	return strconv.ParseUint(string(b[:n]), 10, 64)
}

func (r *restConn) casPut(ctx context.Context, object, key string, rev uint64, value []byte) (bool, error) {
	body := fmt.Appendf(nil, `{"compares":[{"object":%q,"key":%q,"relation":"RELATION_EQUAL","mod_revision":"%d"}],`+
		`"success":[{"put":{"object":%q,"key":%q,"value":`, object, key, rev, object, key)
	body = append(jsonString(body, value), "}}]}"...)
	var resp struct {
		Succeeded bool `json:"succeeded"`
	}
	_, err := r.do(ctx, r.hc, http.MethodPost, r.base+":txn", body, &resp)
	return resp.Succeeded, err
}

func (r *restConn) setAlarm(ctx context.Context, object, name string, fireAt time.Time) error {
	body := fmt.Appendf(nil, `{"fire_at":%q}`, fireAt.UTC().Format(time.RFC3339Nano))
	_, err := r.do(ctx, r.hc, http.MethodPut, r.base+"/objects/"+url.PathEscape(object)+"/alarms/"+url.PathEscape(name), body, nil)
	return err
}

// watch reads the gateway's stream: one JSON document a line, the first
// one (sent when the watch is registered) marked created.
func (r *restConn) watch(ctx context.Context, object string, event func([]byte)) (<-chan error, error) {
	resp, err := r.do(ctx, r.stream, http.MethodGet, r.base+"/objects/"+url.PathEscape(object)+":watch", nil, nil)
	if err != nil {
		return nil, err
	}
	type line struct {
		Result *struct {
			Events []struct {
				Type  string          `json:"type"`
				Value json.RawMessage `json:"value"`
			} `json:"events"`
		} `json:"result"`
		Error json.RawMessage `json:"error"`
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 8<<20)
	if !sc.Scan() {
		resp.Body.Close()
		return nil, fmt.Errorf("watch %s: stream ended before it was created: %w", object, errors.Join(sc.Err(), io.ErrUnexpectedEOF))
	}
	done := make(chan error, 1)
	go func() {
		defer resp.Body.Close()
		for sc.Scan() {
			var l line
			if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
				done <- fmt.Errorf("watch %s: %w", object, err)
				return
			}
			if l.Error != nil {
				done <- fmt.Errorf("watch %s: %s", object, l.Error)
				return
			}
			if l.Result == nil {
				continue
			}
			for _, ev := range l.Result.Events {
				if ev.Type == "EVENT_TYPE_PUT" && len(ev.Value) >= 2 {
					event(ev.Value[1 : len(ev.Value)-1]) // the JSON string's letters
				}
			}
		}
		done <- errors.Join(sc.Err(), io.EOF)
	}()
	return done, nil
}

func (r *restConn) close() { r.hc.CloseIdleConnections() }
