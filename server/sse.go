package server

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	cairnv1 "github.com/cairndb/cairn/api/cairn/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
)

// Server-Sent Events: GET on a watch route with Accept: text/event-stream
// streams the same responses as the gRPC Watch, one SSE message each,
// served from this node's history. Each message's id is its revision, so
// a browser's EventSource resumes after a reconnect with Last-Event-ID
// and misses nothing. Changes are plain "message" events; the first
// message is an event named "created", idle reports are "progress", and a
// stream that must end sends an "error" event first.

// isSSE reports whether r asks for the event-stream form of a watch.
func isSSE(r *http.Request) bool {
	return r.Method == http.MethodGet && strings.HasSuffix(r.URL.EscapedPath(), ":watch") &&
		strings.Contains(r.Header.Get("Accept"), "text/event-stream")
}

var sseJSON = protojson.MarshalOptions{UseProtoNames: true, EmitUnpopulated: true}

// serveSSE answers a watch as Server-Sent Events. It calls this node's own
// gRPC Watch, so authentication and authorization are the gRPC API's:
// the bearer token comes from the Authorization header or, because a
// browser's EventSource cannot set headers, from the access_token query
// parameter (never logged).
func (s *Server) serveSSE(w http.ResponseWriter, r *http.Request) {
	req, err := sseRequest(r)
	if err != nil {
		writeHTTPError(w, toStatus(err))
		return
	}
	flusher, ok := w.(http.Flusher)
	if !ok {
		writeHTTPError(w, toStatus(errors.New("server: streaming is not supported by this connection")))
		return
	}
	ctx := r.Context()
	auth := r.Header.Get("Authorization")
	if auth == "" && r.URL.Query().Get("access_token") != "" {
		auth = "Bearer " + r.URL.Query().Get("access_token")
	}
	if auth != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, "authorization", auth)
	}
	stream, err := cairnv1.NewWatchServiceClient(s.selfConn).Watch(ctx, req)
	if err != nil {
		writeHTTPError(w, err)
		return
	}
	started := false
	for {
		resp, err := stream.Recv()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, io.EOF) {
				return
			}
			if !started {
				writeHTTPError(w, err)
				return
			}
			b, _ := sseJSON.Marshal(status.Convert(err).Proto())
			_, _ = fmt.Fprintf(w, "event: error\ndata: %s\n\n", b)
			flusher.Flush()
			return
		}
		b, err := sseJSON.Marshal(resp)
		if err != nil {
			return
		}
		if !started {
			h := w.Header()
			h.Set("Content-Type", "text/event-stream")
			h.Set("Cache-Control", "no-cache")
			h.Set("X-Accel-Buffering", "no")
			w.WriteHeader(http.StatusOK)
			started = true
		}
		event := ""
		switch {
		case resp.Created:
			event = "event: created\n"
		case resp.Progress:
			event = "event: progress\n"
		}
		if _, err := fmt.Fprintf(w, "%sid: %d\ndata: %s\n\n", event, resp.Revision, b); err != nil {
			return
		}
		flusher.Flush()
	}
}

// sseRequest reads a WatchRequest from a watch route's path and query,
// and Last-Event-ID.
func sseRequest(r *http.Request) (*cairnv1.WatchRequest, error) {
	path := strings.TrimSuffix(r.URL.EscapedPath(), ":watch")
	segs := strings.Split(strings.TrimPrefix(path, "/"), "/")
	req := &cairnv1.WatchRequest{}
	var err error
	switch {
	case len(segs) == 3 && segs[0] == "v1" && segs[1] == "namespaces":
		req.Namespace, err = url.PathUnescape(segs[2])
	case len(segs) == 5 && segs[0] == "v1" && segs[1] == "namespaces" && segs[3] == "objects":
		if req.Namespace, err = url.PathUnescape(segs[2]); err == nil {
			req.Object, err = url.PathUnescape(segs[4])
		}
	default:
		return nil, invalidf("not a watch route: %s", r.URL.Path)
	}
	if err != nil {
		return nil, invalidf("path: %v", err)
	}
	q := r.URL.Query()
	req.Prefix, req.ObjectPrefix = q.Get("prefix"), q.Get("object_prefix")
	req.NoValues = q.Get("no_values") == "true"
	if v := q.Get("start_revision"); v != "" {
		if req.StartRevision, err = strconv.ParseUint(v, 10, 64); err != nil {
			return nil, invalidf("start_revision %q is not a revision", v)
		}
	}
	if v := q.Get("progress_interval_ms"); v != "" {
		n, err := strconv.ParseUint(v, 10, 32)
		if err != nil {
			return nil, invalidf("progress_interval_ms %q is not a number", v)
		}
		req.ProgressIntervalMs = uint32(n)
	}
	// A reconnecting EventSource says what it saw last; that wins over the
	// start_revision of the URL it reconnects to.
	if v := r.Header.Get("Last-Event-ID"); v != "" {
		last, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return nil, invalidf("Last-Event-ID %q is not a revision", v)
		}
		req.StartRevision = last + 1
	}
	return req, nil
}

// writeHTTPError writes a status error as the gateway does: JSON with the
// code and message, and the matching HTTP status.
func writeHTTPError(w http.ResponseWriter, err error) {
	st := status.Convert(err)
	b, _ := sseJSON.Marshal(st.Proto())
	if st.Code() == codes.Unauthenticated {
		w.Header().Set("WWW-Authenticate", "Bearer")
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(httpStatusFromCode(st))
	_, _ = w.Write(append(b, '\n'))
}
