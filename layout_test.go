package cairn_test

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

const module = "github.com/cairndb/cairn"

// layer ranks the module's packages: a package may import only packages
// of a lower rank (test → cmd → server → raftnode → fsm → api).
func layer(pkg string) (int, bool) {
	rel := strings.TrimPrefix(strings.TrimPrefix(pkg, module), "/")
	switch {
	case rel == "" || strings.HasPrefix(rel, "api/"):
		// The root package only embeds generated files (openapi.go).
		return 0, true
	case rel == "fsm" || strings.HasPrefix(rel, "fsm/"):
		return 1, true
	case rel == "auth" || rel == "tlsutil":
		// Leaves: token verification and certificates, for server,
		// raftnode and cmd alike.
		return 1, true
	case rel == "internal/fsync":
		// A leaf: directory syncs for fsm and raftnode/wal alike.
		return 0, true
	case rel == "raftnode/wal":
		// A leaf: Raft's log store, files and hashicorp/raft's interfaces.
		return 1, true
	case rel == "raftnode" || strings.HasPrefix(rel, "raftnode/"):
		return 2, true
	case rel == "server" || strings.HasPrefix(rel, "server/"):
		return 3, true
	case rel == "client" || strings.HasPrefix(rel, "client/"):
		return 3, true
	case strings.HasPrefix(rel, "cmd/"):
		return 4, true
	case strings.HasPrefix(rel, "test/"):
		// Harnesses that drive the whole system from outside.
		return 5, true
	}
	return 0, false
}

// forbidden lists imports a layer must not use, by package prefix.
var forbidden = map[string][]string{
	"fsm":          {"github.com/hashicorp/raft", "google.golang.org/grpc", "net", "math/rand", "crypto/rand", module + "/api/cairn/v1", module + "/api/cairn/peer"},
	"auth":         {"google.golang.org/grpc", "net/http", "github.com/hashicorp/raft", module + "/api"},
	"tlsutil":      {"google.golang.org/grpc", "net/http", "github.com/hashicorp/raft", module + "/api"},
	"raftnode/wal": {"net", "google.golang.org/grpc", module + "/api"},
	"raftnode":     {"net/http", "google.golang.org/grpc", "github.com/grpc-ecosystem", module + "/api/cairn/v1", module + "/api/cairn/peer"},
}

// TestImportsGoOneWay checks the layering of DESIGN.md on every package's
// imports (tests included).
func TestImportsGoOneWay(t *testing.T) {
	out, err := exec.Command("go", "list", "-test", "-f", `{{.ImportPath}}|{{.ForTest}}|{{join .Imports " "}}`, "./...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(nil, 1<<20)
	checked := 0
	for sc.Scan() {
		parts := strings.SplitN(sc.Text(), "|", 3)
		if len(parts) != 3 {
			continue
		}
		pkg := strings.Fields(parts[0])[0] // "p [p.test]" for test variants
		isTest := parts[1] != "" || strings.HasSuffix(pkg, "_test") || strings.HasSuffix(pkg, ".test")
		from, ok := layer(pkg)
		if !ok {
			continue
		}
		checked++
		rel := strings.TrimPrefix(strings.TrimPrefix(pkg, module), "/")
		for _, imp := range strings.Fields(parts[2]) {
			if to, ok := layer(imp); ok && strings.HasPrefix(imp, module) && to > from {
				t.Errorf("%s imports %s: imports must go cmd → server → raftnode → fsm → api", pkg, imp)
			}
			if isTest {
				continue // tests may use randomness, gRPC clients and the like
			}
			for _, bad := range forbidden[rel] {
				if imp == bad || strings.HasPrefix(imp, bad+"/") {
					t.Errorf("%s must not import %s", pkg, imp)
				}
			}
		}
	}
	if checked < 5 {
		t.Fatalf("checked only %d packages", checked)
	}
}

// TestFSMDeterminism scans the state machine's source for what DESIGN.md
// forbids there: clocks, goroutines, randomness.
func TestFSMDeterminism(t *testing.T) {
	files, err := filepath.Glob("fsm/*.go")
	if err != nil || len(files) == 0 {
		t.Fatalf("no fsm sources: %v", err)
	}
	banned := regexp.MustCompile(`\btime\.(Now|Since|Until|After|Tick|NewTimer|NewTicker)\b|^\s*go\s|\bgo func\b|\brand\.`)
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for i, line := range strings.Split(string(b), "\n") {
			code := strings.TrimSpace(line)
			if strings.HasPrefix(code, "//") {
				continue
			}
			if banned.MatchString(line) {
				t.Errorf("%s:%d: nondeterminism in the FSM: %s", f, i+1, code)
			}
		}
	}
}
