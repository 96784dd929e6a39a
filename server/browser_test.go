package server

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// browserPage opens an EventSource on a cairn watch, from another origin,
// and reports every message it gets back to the page's server.
const browserPage = `<!doctype html>
<html><body><script>
let queue = Promise.resolve(); // reports arrive in the order they were made
const report = (line) => { queue = queue.then(() => fetch('/report', {method: 'POST', body: line})); };
const es = new EventSource(%q);
es.onmessage = (e) => report('change ' + e.lastEventId + ' ' + e.data);
es.addEventListener('created', (e) => report('created ' + e.lastEventId));
es.addEventListener('progress', (e) => report('progress ' + e.lastEventId));
es.onerror = () => report('error');
</script></body></html>`

// chromium finds the browser the test drives (Debian's chromium package;
// .ci/run installs it).
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Fatal("this test needs Chromium: apt-get install chromium")
	return ""
}

// TestBrowserEventSource: a page on another origin opens an EventSource
// on a watch (CORS allows its origin), receives changes, reconnects after
// the node serving it restarts, and continues with Last-Event-ID without
// a gap or a duplicate.
func TestBrowserEventSource(t *testing.T) {
	browser := chromium(t)
	var mu sync.Mutex
	var reports []string
	page := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/report" {
			b, _ := io.ReadAll(r.Body)
			mu.Lock()
			reports = append(reports, string(b))
			mu.Unlock()
			return
		}
		w.Header().Set("Content-Type", "text/html")
		fmt.Fprintf(w, browserPage, r.URL.Query().Get("watch"))
	}))
	defer page.Close()

	c := mustStartCluster(t, 3, clusterOptions{Configure: func(_ string, cfg *NodeConfig) { cfg.Server.CORSOrigins = []string{page.URL} }})
	f := c.followers(t)[0]
	mustPutNamespace(t, f, "br")
	first := mustPutKey(t, f, "br", "room", "k0", 0).Revision
	watchURL := fmt.Sprintf("http://%s/v1/namespaces/br/objects/room:watch?start_revision=%d&progress_interval_ms=300", f.Server.HTTPAddr(), first)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cmd := exec.CommandContext(ctx, browser, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
		"--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--user-data-dir="+t.TempDir(), "--remote-debugging-port=0",
		page.URL+"/?watch="+urlQueryEscape(watchURL))
	cmd.Env = append(os.Environ(), "TMPDIR="+t.TempDir()) // Chromium's scratch files go with the test
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		cancel()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("chromium output:\n%s", out.String())
		}
	}()

	changes := func() []uint64 {
		mu.Lock()
		defer mu.Unlock()
		var revs []uint64
		for _, r := range reports {
			if f := strings.Fields(r); len(f) > 1 && f[0] == "change" {
				n, _ := strconv.ParseUint(f[1], 10, 64)
				revs = append(revs, n)
			}
		}
		return revs
	}
	want := []uint64{first}
	for i := 1; i < 5; i++ {
		want = append(want, mustPutKey(t, f, "br", "room", fmt.Sprintf("k%d", i), i).Revision)
	}
	waitFor(t, 30*time.Second, "the page to receive the first changes", func() bool { return len(changes()) >= len(want) })
	// Let a progress message carry the stream's position, then restart the
	// node under the stream.
	waitFor(t, 10*time.Second, "a progress message", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(reports) > 0 && strings.HasPrefix(reports[len(reports)-1], "progress")
	})
	raftAddr, grpcAddr, httpAddr := f.Node.RaftAddr(), f.Server.GRPCAddr(), f.Server.HTTPAddr()
	f.stop()
	other := c.running()[0]
	for i := 5; i < 8; i++ {
		want = append(want, mustPutKey(t, other, "br", "room", fmt.Sprintf("k%d", i), i).Revision)
	}
	c.mustRestart(t, f, raftAddr, grpcAddr, httpAddr)
	waitFor(t, 30*time.Second, "the page to reconnect and receive the rest", func() bool { return len(changes()) >= len(want) })
	if got := changes(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("the page received revisions %v, want %v", got, want)
	}
	mu.Lock()
	defer mu.Unlock()
	if !strings.Contains(strings.Join(reports, "\n"), "error") {
		t.Fatalf("the stream never broke: %q", reports)
	}
}

// TestCORS: preflight and simple requests from a configured origin get
// CORS headers; other origins get none.
func TestCORS(t *testing.T) {
	c := mustStartCluster(t, 1, clusterOptions{Configure: func(_ string, cfg *NodeConfig) { cfg.Server.CORSOrigins = []string{"http://app.example"} }})
	n := c.leader(t)
	do := func(method, origin string) *http.Response {
		t.Helper()
		req, _ := http.NewRequest(method, "http://"+n.Server.HTTPAddr()+"/v1/namespaces", nil)
		req.Header.Set("Origin", origin)
		if method == http.MethodOptions {
			req.Header.Set("Access-Control-Request-Method", "GET")
			req.Header.Set("Access-Control-Request-Headers", "authorization")
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	pre := do(http.MethodOptions, "http://app.example")
	if pre.StatusCode != http.StatusNoContent || pre.Header.Get("Access-Control-Allow-Origin") != "http://app.example" ||
		!strings.Contains(pre.Header.Get("Access-Control-Allow-Headers"), "Authorization") {
		t.Fatalf("preflight: %d %v", pre.StatusCode, pre.Header)
	}
	if get := do(http.MethodGet, "http://app.example"); get.StatusCode != http.StatusOK || get.Header.Get("Access-Control-Allow-Origin") != "http://app.example" {
		t.Fatalf("GET from an allowed origin: %d %v", get.StatusCode, get.Header)
	}
	if get := do(http.MethodGet, "http://evil.example"); get.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Fatalf("GET from another origin got CORS headers: %v", get.Header)
	}
	if pre := do(http.MethodOptions, "http://evil.example"); pre.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Fatalf("preflight from another origin got CORS headers: %v", pre.Header)
	}
}

func urlQueryEscape(s string) string {
	r := strings.NewReplacer("%", "%25", "&", "%26", "?", "%3F", "=", "%3D", "#", "%23", "+", "%2B", " ", "%20")
	return r.Replace(s)
}
