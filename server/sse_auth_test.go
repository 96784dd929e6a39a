package server

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	cairnv1 "github.com/cairndb/cairn/api/cairn/v1"
	"github.com/cairndb/cairn/auth"
)

// TestWatchSSEAuth: with authentication on, the event-stream watch takes
// the token from the Authorization header or from the access_token query
// parameter (what a browser's EventSource can send), and enforces the
// token's role and namespaces like every other call.
func TestWatchSSEAuth(t *testing.T) {
	pki := mustPKI(t, "sse")
	c := mustStartCluster(t, 3, secureOptions(t, pki, nil))
	f := c.followers(t)[0]
	admin := tokenFor(t, "admin", auth.AllNamespaces)
	if _, err := f.namespaces().PutNamespace(withToken(testCtx(t), admin), &cairnv1.PutNamespaceRequest{Namespace: "sec"}); err != nil {
		t.Fatal(err)
	}
	open := func(token, header string) (int, string) {
		t.Helper()
		u := "http://" + f.Server.HTTPAddr() + "/v1/namespaces/sec/objects/o:watch"
		if token != "" {
			u += "?access_token=" + url.QueryEscape(token)
		}
		ctx, cancel := context.WithTimeout(context.Background(), waitLong)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		req.Header.Set("Accept", "text/event-stream")
		if header != "" {
			req.Header.Set("Authorization", "Bearer "+header)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			b, _ := io.ReadAll(resp.Body)
			return resp.StatusCode, string(b)
		}
		line, _ := bufio.NewReader(resp.Body).ReadString('\n')
		return resp.StatusCode, line
	}
	if code, body := open("", ""); code != http.StatusUnauthorized || !strings.Contains(body, "token") {
		t.Fatalf("no token: HTTP %d %s", code, body)
	}
	req, _ := http.NewRequest(http.MethodGet, "http://"+f.Server.HTTPAddr()+"/v1/namespaces/sec/objects/o:watch", nil)
	req.Header.Set("Accept", "text/event-stream")
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.Header.Get("WWW-Authenticate") != "Bearer" {
		t.Fatalf("no token: %v, WWW-Authenticate %q", err, resp.Header.Get("WWW-Authenticate"))
	} else {
		resp.Body.Close()
	}
	if code, body := open(tokenFor(t, "viewer", "sec"), ""); code != http.StatusOK || !strings.Contains(body, "created") {
		t.Fatalf("access_token of a viewer of the namespace: HTTP %d %q", code, body)
	}
	if code, body := open("", tokenFor(t, "viewer", "sec")); code != http.StatusOK {
		t.Fatalf("Authorization header: HTTP %d %q", code, body)
	}
	if code, body := open(tokenFor(t, "viewer", "other"), ""); code != http.StatusForbidden {
		t.Fatalf("token for another namespace: HTTP %d %s", code, body)
	}
	if code, body := open("not-a-jwt", ""); code != http.StatusUnauthorized || strings.Contains(body, "not-a-jwt") {
		t.Fatalf("bad token: HTTP %d %s", code, body)
	}
}
